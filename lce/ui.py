"""The little Streamlit glue the pages share: which database, cached loading, empty states.

Kept apart from ``lce.explore`` so that module stays importable and testable without Streamlit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import streamlit as st

from lce import explore
from warehouse.paths import db_path

T = TypeVar("T")
DB_KEY = "lce_db_path"


@st.cache_data(show_spinner=False, max_entries=512)
def _cached(name: str, stamp: tuple[str, int, int], args: tuple[Any, ...]) -> Any:
    """Keyed by the file's path, mtime and size: a published rebuild invalidates the cache."""
    return getattr(explore, name)(Path(stamp[0]), *args)


def load(func: Callable[..., T], db: Path, *args: Any) -> T:
    """``func(db, *args)`` from ``lce.explore``, cached per database file version."""
    if getattr(explore, func.__name__, None) is not func:
        raise ValueError(f"{func.__name__} is not an lce.explore function")
    return _cached(func.__name__, explore.db_stamp(db), tuple(args))


def sidebar_db() -> None:
    """The warehouse file box: `lce app --db FILE` / LCE_DB / $LCE_HOME/lce.duckdb fill it."""
    with st.sidebar:
        st.text_input(
            "Warehouse file",
            value=str(db_path()),
            key=DB_KEY,
            help="The published DuckDB file, opened read-only. Set by `lce app --db FILE`, "
            "the LCE_DB environment variable, or $LCE_HOME/lce.duckdb.",
        )
        st.caption("Opened read-only with file and network access disabled.")


def current_db() -> Path:
    value = st.session_state.get(DB_KEY)
    return Path(str(value)).expanduser() if value else db_path()


def require_db() -> Path:
    """The page's database, or a clear note and stop when there is no usable one."""
    db = current_db()
    problem = load(explore.check_db, db)
    if problem:
        stop(problem, kind="warning")
    return db


def stop(message: str, kind: str = "info") -> NoReturn:
    """An empty state: one sentence saying what is missing and how to get it, then stop."""
    if kind == "warning":
        st.warning(message)
    else:
        st.info(message)
    st.stop()
    raise RuntimeError("unreachable")  # st.stop raises; this keeps type checkers honest


def evr_by_component(db: Path) -> dict[int, float]:
    frame = load(explore.explained_variance, db)
    return dict(
        zip(
            frame["component"].to_list(),
            frame["explained_variance_ratio"].to_list(),
            strict=True,
        )
    )
