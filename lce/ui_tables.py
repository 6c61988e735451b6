"""Tables as users read them: readable column labels and one number format on every page.

The frame keeps its identifiers (``n_pairs``, ``model_a``): a download of the table, the SQL
page and exports stay raw; only the header and the number format shown change.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import streamlit as st

from lce.explore.names import column_label, number_format


def table_columns(frame: pl.DataFrame, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """st.dataframe's column_config for ``frame``: ``given`` as the page wrote it, and every
    other column labelled by ``column_label``, floats with ``number_format``."""
    config: dict[str, Any] = dict(given or {})
    for name, dtype in frame.schema.items():
        if name in config:
            if isinstance(config[name], dict) and not config[name].get("label"):
                config[name] = {**config[name], "label": column_label(name)}
            continue
        if dtype.is_float():
            config[name] = st.column_config.NumberColumn(
                column_label(name), format=number_format(name)
            )
        else:
            config[name] = column_label(name)
    return config


def table(
    frame: pl.DataFrame,
    column_config: dict[str, Any] | None = None,
    where: Any = None,
    **kwargs: Any,
) -> Any:
    """st.dataframe (no index) with readable headers and one number format, drawn in ``where``
    (a column, a tab) or on the page."""
    kwargs.setdefault("hide_index", True)
    return (where or st).dataframe(
        frame, column_config=table_columns(frame, column_config), **kwargs
    )
