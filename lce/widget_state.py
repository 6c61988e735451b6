"""Widget state the pages reset or share: defaults for a new scope, and the address bar.

Streamlit (1.50 and later) identifies a keyed widget by its key alone, and the browser keeps
what a widget shows across reruns. Deleting the key from ``st.session_state`` resets the value
Python sees for one run but not the browser, which sends its old value back on the next
interaction (streamlit/streamlit#16388): chips of the previous model's categories, the previous
page number, a unit picker still showing the previous model's label. Assigning a value does
reach the browser, so a page resets a widget by assigning its default, never by popping it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import streamlit as st


def reset_on_scope(scope_key: str, scope: Hashable, defaults: Mapping[str, Any]) -> bool:
    """Assign ``defaults`` to their widget keys when ``scope`` (what the widgets' options
    depend on: model, layer, filters) differs from the last run's, and to any key the session
    lost (a widget not drawn on the last run, e.g. after a visit to another page). Call before
    the widgets are drawn, which then take no default of their own. Returns whether the scope
    changed."""
    changed = st.session_state.get(scope_key) != scope
    for key, value in defaults.items():
        if changed or key not in st.session_state:
            st.session_state[key] = value
    st.session_state[scope_key] = scope
    return changed


def refresh(key: str) -> None:
    """Assign a widget its own value again, so the browser redraws it: a selectbox whose option
    labels changed (same unit, another model) otherwise keeps showing the old label."""
    if key in st.session_state:
        st.session_state[key] = st.session_state[key]


def sync_query_params(params: Mapping[str, str], written_key: str) -> None:
    """Show ``params`` in the address bar (the page's selection, so its link can be copied and
    shared) and remember them under ``written_key``, so that the next run can tell its own
    parameters from a link that arrived (see :func:`is_new_link`)."""
    wanted = {k: str(v) for k, v in params.items()}
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)
    st.session_state[written_key] = wanted


def is_new_link(written_key: str, mounted_key: str) -> bool:
    """Whether the address bar's parameters came from outside (a link followed, a URL typed):
    they differ from what the page last wrote, or the page's widgets are not mounted (the
    session arrives from another page, whose link may name the same selection)."""
    return mounted_key not in st.session_state or st.query_params.to_dict() != st.session_state.get(
        written_key
    )
