"""The little Streamlit glue the pages share: which database, cached loading, empty states.

Kept apart from ``lce.explore`` so that package stays importable and testable without Streamlit.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import streamlit as st

from lce.explore import images, palette
from lce.explore.db import check_db, db_stamp, is_warehouse
from lce.explore.embedding import explained_variance
from lce.explore.safe_text import escape_figure_data, md
from lce.explore.sql import EXPORT_FORMATS, SqlRefused
from warehouse.paths import db_path

T = TypeVar("T")
DB_KEY = "lce_db_path"
FIGURE_KEY = "lce_figure_format"


@st.cache_data(show_spinner=False, max_entries=512)
def _cached(module: str, name: str, stamp: tuple[str, int, int], args: tuple[Any, ...]) -> Any:
    """Keyed by the function's module and name and the file's path, mtime and size: a published
    rebuild invalidates the cache."""
    return getattr(importlib.import_module(module), name)(Path(stamp[0]), *args)


def load(func: Callable[..., T], db: Path, *args: Any) -> T:
    """``func(db, *args)`` from a module of ``lce.explore``, cached per database file version."""
    module = func.__module__
    if not module.startswith("lce.explore.") or (
        getattr(importlib.import_module(module), func.__name__, None) is not func
    ):
        raise ValueError(f"{func.__name__} is not an lce.explore function")
    return _cached(module, func.__name__, db_stamp(db), tuple(args))


@st.cache_data(show_spinner=False, max_entries=16)
def _tiles(
    stamp: tuple[str, int, int],
    probe: str,
    model: str,
    layer: str,
    units: tuple[int, ...],
    look: str = "outline",
) -> list[dict[str, Any]]:
    tiles = images.unit_tiles(Path(stamp[0]), probe, model, layer, units, look)
    for tile in tiles:
        if tile["pixels"] is not None:
            tile["pixels"] = images.png_bytes(tile["pixels"])
    return tiles


def probe_choices(db: Path, model: str, layer: str) -> list[str]:
    """The probe folders a page may read top images from (``images.probe_choices``): the run's
    own, the warehouse's other runs', and those the server was started with (`lce app --probe`,
    LCE_PROBE_DIR); the first is the default."""
    others = [
        *load(images.recorded_probe_dirs, db),
        *images.served_probe_dirs(os.environ.get("LCE_PROBE_DIR")),
    ]
    return images.probe_choices(load(images.run_probe_dir, db, model, layer), others)


def unit_tiles(
    db: Path, probe: str, model: str, layer: str, units: tuple[int, ...], look: str = "outline"
) -> list[dict[str, Any]]:
    """``lce.explore.images.unit_tiles`` with the images as PNG bytes, cached apart from
    ``load``: a page of 24 units' top images is megabytes, so only the last few pages are kept."""
    return _tiles(db_stamp(db), probe, model, layer, tuple(units), look)


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
        st.radio(
            "Figure download format", palette.FIGURE_FORMATS, horizontal=True, key=FIGURE_KEY,
            format_func=str.upper,
            help="What the camera button of a chart's toolbar downloads: PNG, or SVG to edit "
            "or print at any size. Drawn by your browser.",
        )  # fmt: skip


def figure_config() -> dict[str, Any]:
    """Plotly config of every chart: its camera button downloads the format chosen in the
    sidebar (PNG by default, or SVG)."""
    fmt = st.session_state.get(FIGURE_KEY, "png")
    return palette.figure_config(fmt if fmt in palette.FIGURE_FORMATS else "png")


def plotly_chart(figure: Any, where: Any = st, **kwargs: Any) -> Any:
    """st.plotly_chart (in the container ``where``) with the sidebar's download format (figures
    as SVG or PNG) and the names in its data shown as text (``escape_figure_data``): every chart
    of the explorer goes through here."""
    return where.plotly_chart(escape_figure_data(figure), config=figure_config(), **kwargs)


def full_export(
    label: str,
    key: str,
    make: Callable[[str], tuple[bytes, int]],
    file_stem: str,
    identity: str = "",
) -> None:
    """A format choice and a button that runs the export (not on every rerun: a full result
    can be large), then the download of what it made, while ``identity`` (the query text) and
    the format are unchanged; a refusal (timeout, size cap) is shown."""
    left, right = st.columns([1, 3])
    fmt = left.radio("Format", list(EXPORT_FORMATS), horizontal=True, key=f"{key}_fmt")
    extension, mime = EXPORT_FORMATS[fmt]
    if right.button(label, key=f"{key}_run"):
        try:
            st.session_state[f"{key}_data"] = (fmt, identity, *make(fmt))
        except SqlRefused as exc:
            st.session_state.pop(f"{key}_data", None)
            st.error(md(str(exc)))
    made = st.session_state.get(f"{key}_data")
    if made is not None and made[:2] == (fmt, identity):
        _, _, data, rows = made
        st.download_button(
            f"Download {rows} rows as {fmt} ({len(data) / 1e6:.2f} MB)", data,
            file_name=f"{file_stem}.{extension}", mime=mime, key=f"{key}_download",
        )  # fmt: skip


def current_db() -> Path:
    launch = db_path().expanduser()
    value = st.session_state.get(DB_KEY)
    # only a name from the list: never a path typed by a visitor
    if value and value in {p.name for p in warehouse_choices()}:
        return launch.parent / str(value)
    return launch


def require_db(any_schema: bool = False) -> Path:
    """The page's database, or a clear note and stop when there is no usable one.

    A warehouse of another schema (an older or newer lce built it) gets the schema check's one
    sentence; a page that reads marts then says it cannot render and stops, while a page that
    reads whatever tables the file has (``any_schema``: SQL) shows the sentence and goes on."""
    db = current_db()
    problem = load(check_db, db)
    if problem:
        if load(is_warehouse, db):
            if any_schema:
                st.warning(problem)
                return db
            problem += (
                " This page reads this lce's marts, so it cannot render from this file "
                "(the SQL page can query the tables it has)."
            )
        stop(problem, kind="warning")
    return db


def shown_path(path: Path | str) -> str:
    """A server path as a visitor may see it: relative to the folder the app was launched from,
    else the file's name alone (the server's folders are not a visitor's business)."""
    resolved, here = Path(path).resolve(), Path.cwd().resolve()
    return str(resolved.relative_to(here)) if resolved.is_relative_to(here) else resolved.name


def stop(message: str, kind: str = "info") -> NoReturn:
    """An empty state: one sentence saying what is missing and how to get it, then stop."""
    if kind == "warning":
        st.warning(message)
    else:
        st.info(message)
    st.stop()
    raise RuntimeError("unreachable")  # st.stop raises; this keeps type checkers honest


def evr_by_component(db: Path) -> dict[int, float]:
    frame = load(explained_variance, db)
    return dict(
        zip(
            frame["component"].to_list(),
            frame["explained_variance_ratio"].to_list(),
            strict=True,
        )
    )


def correlation_columns() -> dict[str, Any]:
    """How the correlation tables (Components and Tasks pages) show r, its interval, p and q:
    one place, so the two pages cannot drift apart."""
    number = st.column_config.NumberColumn
    return {
        "pearson_r": number("r", format="%.3f"),
        "r_lo": number("r 95% lo", format="%.3f"),
        "r_hi": number("r 95% hi", format="%.3f"),
        "p_value": number("p", format="%.4f"),
        "q_value": number("q (BH)", format="%.4f"),
    }
