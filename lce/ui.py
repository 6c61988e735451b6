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


def warehouse_choices() -> list[Path]:
    """The files the sidebar offers: the launch file (`lce app --db FILE`, LCE_DB or
    $LCE_HOME/lce.duckdb) and the other DuckDB files beside it. A free path box would let any
    visitor probe which paths exist on the server; a list of one folder's warehouses does not."""
    launch = db_path().expanduser()
    folder = launch.parent
    others = sorted(p for p in folder.glob("*.duckdb") if p.is_file() and p.name != launch.name)
    return [launch, *others]


def sidebar_db() -> None:
    """The warehouse chooser: the launch file and its sibling warehouses, by name only."""
    choices = warehouse_choices()
    with st.sidebar:
        st.selectbox(
            "Warehouse file",
            [p.name for p in choices],
            key=DB_KEY,
            help="Published DuckDB files in the launch file's folder, opened read-only. The "
            "launch file is set by `lce app --db FILE`, LCE_DB, or $LCE_HOME/lce.duckdb.",
        )
        st.caption("Opened read-only with file and network access disabled.")


def current_db() -> Path:
    launch = db_path().expanduser()
    value = st.session_state.get(DB_KEY)
    # only a name from the list: never a path typed by a visitor
    if value and value in {p.name for p in warehouse_choices()}:
        return launch.parent / str(value)
    return launch


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
