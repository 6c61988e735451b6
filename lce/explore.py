"""What the Streamlit explorer shows, as plain functions: queries (polars frames out) and figures.

The pages in ``app_pages/`` only lay out widgets and call these, so pytest can check every number
the app shows against a direct SQL query without starting Streamlit. Every query goes through
``warehouse.query`` (read-only, external access off), so the app never holds the file that
``lce build`` writes and cannot read any other file.

Colours are fixed per model category (C1, C2, ...) and per concept category (object, part, ...),
so a category looks the same on every page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from lce.embedding import pearson
from warehouse.query import MARTS, query

# The SQL page's guard lives beside the query layer, shared with `lce sql`; re-exported here
# because the pages and their tests reach everything through this module.
from warehouse.sql_guard import (  # noqa: F401
    MAX_BYTES,
    MAX_ROWS,
    SQL_TIMEOUT_S,
    SqlRefused,
    SqlResult,
    check_sql,
    explain_duckdb_error,
    run_sql,
)

# --------------------------------------------------------------------------------------------
# Colours and labels
# --------------------------------------------------------------------------------------------

# Okabe-Ito (colour-blind safe) for model categories; Tableau 10 for concept categories, so the
# two kinds of category never share a colour on one page.
MODEL_CATEGORY_PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
)
NOT_EMBEDDED_COLOUR = "#9E9E9E"
CONCEPT_CATEGORY_COLOURS = {
    "object": "#4C78A8",
    "part": "#F58518",
    "material": "#54A24B",
    "color": "#E45756",
    "scene": "#72B7B2",
    "texture": "#B279A2",
}
EXTRA_CONCEPT_COLOURS = ("#9D755D", "#FF9DA6", "#EECA3B", "#BAB0AC")
COMPONENT_COLOURS = ("#1B9E77", "#D95F02", "#7570B3", "#E7298A", "#66A61E", "#A6761D")
CONCEPT_CATEGORY_ORDER = tuple(CONCEPT_CATEGORY_COLOURS)
TASK_ORDER = (
    "many_shot_linear",
    "few_shot",
    "detection_frozen",
    "detection_finetuned",
    "surface_normals",
)
FONT_PX = 12
COLORBAR_PX = 110  # what a heatmap's colour bar takes from the plot's width
SCATTER_WIDTH = 760
SCATTER_HEIGHT = 540
SCATTER_MARGIN = {"l": 70, "r": 30, "t": 70, "b": 60}
# Horizontal legend above the plot, in trace order (plotly reverses it for stacked bars).
LEGEND: dict[str, Any] = {
    "orientation": "h",
    "y": 1.0,
    "yanchor": "bottom",
    "x": 0,
    "title": None,
    "traceorder": "normal",
}


def model_category_colour(label: str | None) -> str:
    """C<k> -> the k-th palette colour (ids are stable across builds, so colours are too)."""
    if not label:
        return NOT_EMBEDDED_COLOUR
    digits = "".join(ch for ch in label if ch.isdigit())
    index = int(digits) - 1 if digits else sum(map(ord, label))
    return MODEL_CATEGORY_PALETTE[index % len(MODEL_CATEGORY_PALETTE)]


def concept_category_colour(category: str | None) -> str:
    """Fixed colours for Broden's six categories; other names get a stable extra colour."""
    if category in CONCEPT_CATEGORY_COLOURS:
        return CONCEPT_CATEGORY_COLOURS[category]
    if not category:
        return NOT_EMBEDDED_COLOUR
    return EXTRA_CONCEPT_COLOURS[sum(map(ord, category)) % len(EXTRA_CONCEPT_COLOURS)]


def component_colour(component: int) -> str:
    return COMPONENT_COLOURS[(component - 1) % len(COMPONENT_COLOURS)]


def concept_category_sort_key(category: str | None) -> tuple[int, str]:
    """Broden's order (object, part, material, color, scene, texture), then alphabetical."""
    if category in CONCEPT_CATEGORY_ORDER:
        return (CONCEPT_CATEGORY_ORDER.index(category), "")
    return (len(CONCEPT_CATEGORY_ORDER), category or "")


TASK_NAMES = {
    "many_shot_linear": "Many-shot linear classification",
    "few_shot": "Few-shot classification",
    "detection_frozen": "Detection (frozen backbone)",
    "detection_finetuned": "Detection (fine-tuned backbone)",
    "surface_normals": "Surface normal estimation",
}


def task_title(task: str) -> str:
    """A task family as people name it ('many_shot_linear' -> 'Many-shot linear
    classification'); an unknown identifier gets its underscores turned into spaces."""
    if task in TASK_NAMES:
        return TASK_NAMES[task]
    text = task.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def natural_key(text: str | None) -> tuple[tuple[int, float, str], ...]:
    """Numbers inside a name compare as numbers ('5-shot' < '20-shot' < '50-shot')."""
    import re

    parts = re.split(r"(\d+(?:\.\d+)?)", text or "")
    return tuple(
        (0, float(p), "") if i % 2 else (1, 0.0, p.lower()) for i, p in enumerate(parts) if p
    )


def sort_results(frame: pl.DataFrame, *then: str) -> pl.DataFrame:
    """Rows in result order ('Avg.' last, datasets and metrics in natural order), then ``then``."""
    keys = sorted(
        {
            (d, m)
            for d, m in zip(frame["dataset"].to_list(), frame["metric"].to_list(), strict=True)
        },
        key=lambda dm: (dm[0] == "Avg.", natural_key(dm[0]), natural_key(dm[1])),
    )
    rank = {dm: i for i, dm in enumerate(keys)}
    order = pl.Series(
        "_result_rank",
        [rank[(d, m)] for d, m in zip(frame["dataset"].to_list(), frame["metric"].to_list(),
                                      strict=True)],
    )  # fmt: skip
    return (
        frame.with_columns(order)
        .sort(["_result_rank", *then], maintain_order=True)
        .drop("_result_rank")
    )


def task_sort_key(task: str) -> tuple[int, str]:
    return (TASK_ORDER.index(task), "") if task in TASK_ORDER else (len(TASK_ORDER), task)


def component_label(component: int, evr: float | None = None) -> str:
    """'PC1 (60.7% of variance)': the explained variance goes on every axis that shows a PC."""
    if evr is None or (isinstance(evr, float) and math.isnan(evr)):
        return f"PC{component}"
    return f"PC{component} ({100 * evr:.1f}% of variance)"


def concept_labels(concepts: Sequence[str], categories: Sequence[str | None]) -> list[str]:
    """Concept names, with the category appended where one name has two (Broden's food)."""
    seen: dict[str, set[str | None]] = {}
    for concept, category in zip(concepts, categories, strict=True):
        seen.setdefault(concept, set()).add(category)
    return [
        f"{concept} ({category})" if len(seen[concept]) > 1 else concept
        for concept, category in zip(concepts, categories, strict=True)
    ]


# --------------------------------------------------------------------------------------------
# Which database, and is it usable
# --------------------------------------------------------------------------------------------


def db_stamp(db: Path) -> tuple[str, int, int]:
    """Cache key of a database file: a rebuilt (atomically replaced) file gets a new key."""
    path = Path(db).expanduser()
    try:
        stat = path.stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def check_db(db: Path) -> str | None:
    """None when the file is a usable warehouse, else a sentence saying what is wrong and what
    to do: every page shows it instead of a traceback."""
    path = Path(db).expanduser()
    hint = (
        "Build one with `lce build` (or `make demo`), "
        "or open another file with `lce app --db FILE`."
    )
    if not path.exists():
        return f"No warehouse at `{path}`. {hint}"
    if not path.is_file():
        return f"`{path}` is not a file. {hint}"
    try:
        tables = set(query(path, "select table_name from duckdb_tables()")["table_name"].to_list())
    except Exception as exc:  # duckdb raises several types for a foreign or newer file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return (
            f"`{path}` could not be opened as a DuckDB 1.x warehouse ({first}). "
            "A file written by DuckDB 2.0 cannot be read by 1.x."
        )
    missing = [name for name in MARTS if name not in tables]
    if missing:
        return (
            f"`{path}` is not an lce warehouse: it lacks {', '.join(missing)}. "
            "Rebuild it with `lce build`."
        )
    return None


def table_exists(db: Path, table: str) -> bool:
    """Older or partial warehouses may lack a staging table the app reads (e.g. top images)."""
    frame = query(db, "select count(*) as n from duckdb_tables() where table_name = ?", [table])
    return bool(frame["n"][0])


# --------------------------------------------------------------------------------------------
# Overview
# --------------------------------------------------------------------------------------------


def overview_counts(db: Path) -> dict[str, int]:
    """Headline numbers of the warehouse, one query."""
    row = query(
        db,
        """
        select
            (select count(*) from dim_models) as models,
            (select count(*) from dim_models where has_profile) as dissected,
            (select count(*) from dim_models where in_embedding) as embedded,
            (select count(distinct category_id) from dim_model_categories) as categories,
            (select count(*) from (select distinct category, concept from fct_concept_profiles))
                as concepts,
            (select count(*) from fct_task_benchmarks) as task_results
        """,
    ).row(0, named=True)
    return {key: int(value) for key, value in row.items()}


def models_overview(db: Path) -> pl.DataFrame:
    """One row per model: units, interpretable units, category, in the embedding and why not."""
    return query(
        db,
        """
        select
            m.model,
            coalesce(c.category_label, 'not embedded') as category,
            m.n_units as units,
            m.n_interpretable_units as interpretable_units,
            round(100.0 * m.n_interpretable_units / nullif(m.n_units, 0), 1)
                as interpretable_pct,
            m.primary_layer,
            m.in_embedding,
            coalesce(m.excluded_reason, '') as excluded_reason,
            m.n_benchmarks as task_results
        from dim_models m left join dim_model_categories c using (model)
        order by m.in_embedding desc, c.category_id nulls last, m.model
        """,
    )


def category_counts(db: Path) -> pl.DataFrame:
    """Interpretable units and unique concepts per (model, concept category), with the model's
    embedding category: the data of the paper's concept-count figure."""
    return query(
        db,
        """
        select p.model, c.category_label as model_category, p.category, p.n_units,
               p.n_unique_concepts
        from fct_category_profiles p
        left join dim_model_categories c using (model)
        order by p.model, p.category
        """,
    )


def concept_count_figure(counts: pl.DataFrame, measure: str) -> go.Figure:
    """Horizontal stacked bars (one per model, so 20 names stay readable), one colour per
    concept category; models sorted by total so the ranking reads top to bottom."""
    if measure not in ("n_units", "n_unique_concepts"):
        raise ValueError(f"measure must be n_units or n_unique_concepts, not {measure!r}")
    title = {
        "n_units": "Interpretable units per concept category",
        "n_unique_concepts": "Unique concepts per concept category",
    }[measure]
    totals = counts.group_by("model").agg(pl.col(measure).sum().alias("total"))
    order = totals.sort(["total", "model"], descending=[False, True])["model"].to_list()
    fig = go.Figure()
    categories = sorted(set(counts["category"].to_list()), key=concept_category_sort_key)
    for category in categories:
        part = counts.filter(pl.col("category") == category)
        by_model = dict(zip(part["model"].to_list(), part[measure].to_list(), strict=True))
        fig.add_bar(
            name=category,
            y=order,
            x=[by_model.get(model, 0) for model in order],
            orientation="h",
            marker_color=concept_category_colour(category),
            hovertemplate="%{y}<br>" + category + ": %{x}<extra></extra>",
        )
    fig.update_layout(
        barmode="stack",
        title=title,
        height=max(320, 28 * len(order) + 140),
        margin={"l": 10, "r": 10, "t": 60, "b": 50},
        legend=LEGEND,
        xaxis_title="interpretable units" if measure == "n_units" else "unique concepts",
        yaxis={"automargin": True, "tickfont": {"size": FONT_PX}},
    )
    return fig


# --------------------------------------------------------------------------------------------
# Embedding
# --------------------------------------------------------------------------------------------


def explained_variance(db: Path) -> pl.DataFrame:
    return query(db, "select * from fct_lce_components order by component")


def build_notes(db: Path) -> pl.DataFrame:
    """What the build could not compute, or capped, and why (fct_build_notes): one sentence per
    row. Empty for a warehouse built before the notes existed."""
    if not table_exists(db, "fct_build_notes"):
        return pl.DataFrame(schema={"topic": pl.String, "code": pl.String, "message": pl.String})
    return query(db, "select topic, code, message from fct_build_notes order by note_id")


def embedding(db: Path) -> pl.DataFrame:
    """One row per embedded model: its category and its score on each component (pc1, pc2...)."""
    long = query(
        db,
        """
        select l.model, c.category_id, c.category_label, l.component, l.value
        from fct_lce l left join dim_model_categories c using (model)
        order by l.model, l.component
        """,
    )
    if long.is_empty():
        return pl.DataFrame(
            schema={"model": pl.String, "category_id": pl.Int64, "category_label": pl.String}
        )
    wide = long.pivot(
        on="component", index=["model", "category_id", "category_label"], values="value"
    )
    wide = wide.rename({name: f"pc{name}" for name in wide.columns[3:]})
    return wide.sort(["category_id", "model"], nulls_last=True)


def nearest_models(db: Path, model: str, k: int = 5) -> pl.DataFrame:
    """The k models whose concept profiles are closest (cosine) to ``model``."""
    return query(
        db,
        """
        select d.model_b as model, d.cosine_distance,
               coalesce(c.category_label, 'not embedded') as category, m.in_embedding
        from fct_model_distances d
        left join dim_model_categories c on c.model = d.model_b
        left join dim_models m on m.model = d.model_b
        where d.model_a = ?
        order by d.cosine_distance, d.model_b
        limit ?
        """,
        [model, k],
    )


def padded_range(values: Sequence[float], pad: float = 0.12) -> tuple[float, float]:
    """An axis range with room for the labels around the outermost points."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return (-1.0, 1.0)
    low, high = min(finite), max(finite)
    span = high - low if high > low else max(abs(high), 1.0)
    return (low - pad * span, high + pad * span)


_POSITIONS = (
    ("top center", 0, 1),
    ("bottom center", 0, -1),
    ("middle right", 1, 0),
    ("middle left", -1, 0),
    ("top right", 1, 1),
    ("top left", -1, 1),
    ("bottom right", 1, -1),
    ("bottom left", -1, -1),
)
_MARKER_PX = 6.0


def _label_box(
    px: float, py: float, text: str, position: str, font_px: int = FONT_PX
) -> tuple[float, float, float, float]:
    """The label's pixel box (x0, y0, x1, y1; y up) for a plotly textposition."""
    width = 0.62 * font_px * max(len(text), 1)
    height = 1.25 * font_px
    dx, dy = next((dx, dy) for name, dx, dy in _POSITIONS if name == position)
    gap = _MARKER_PX + 2
    if dx > 0:
        x0 = px + gap
    elif dx < 0:
        x0 = px - gap - width
    else:
        x0 = px - width / 2
    if dy > 0:
        y0 = py + gap
    elif dy < 0:
        y0 = py - gap - height
    else:
        y0 = py - height / 2
    return (x0, y0, x0 + width, y0 + height)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _to_pixels(
    xs: Sequence[float],
    ys: Sequence[float],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int,
    height: int,
) -> list[tuple[float, float]]:
    plot_w = width - SCATTER_MARGIN["l"] - SCATTER_MARGIN["r"]
    plot_h = height - SCATTER_MARGIN["t"] - SCATTER_MARGIN["b"]
    return [
        (
            (x - x_range[0]) / (x_range[1] - x_range[0]) * plot_w,
            (y - y_range[0]) / (y_range[1] - y_range[0]) * plot_h,
        )
        for x, y in zip(xs, ys, strict=True)
    ]


def label_positions(
    xs: Sequence[float],
    ys: Sequence[float],
    labels: Sequence[str],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int = SCATTER_WIDTH,
    height: int = SCATTER_HEIGHT,
) -> list[str]:
    """A plotly textposition per point, chosen greedily so labels overlap neither each other
    nor the markers (crowded points choose first). Scatter labels are what people read; 13-20
    model names around a cluster overlap with one fixed position."""
    pixels = _to_pixels(xs, ys, x_range, y_range, width, height)
    plot_w = width - SCATTER_MARGIN["l"] - SCATTER_MARGIN["r"]
    plot_h = height - SCATTER_MARGIN["t"] - SCATTER_MARGIN["b"]
    markers = [(x - _MARKER_PX, y - _MARKER_PX, x + _MARKER_PX, y + _MARKER_PX) for x, y in pixels]

    def crowding(i: int) -> int:
        return sum(
            1 for j, (x, y) in enumerate(pixels) if j != i and math.dist(pixels[i], (x, y)) < 80
        )

    def cost(i: int, name: str, others: list[tuple[float, float, float, float]]) -> float:
        box = _label_box(*pixels[i], labels[i], name)
        total = sum(_overlap(box, other) for other in others)
        total += sum(_overlap(box, m) for j, m in enumerate(markers) if j != i)
        outside = (
            max(0.0, -box[0]) + max(0.0, box[2] - plot_w) + max(0.0, -box[1])
            + max(0.0, box[3] - plot_h)
        )  # fmt: skip
        return total + outside * 20

    names = [name for name, _, _ in _POSITIONS]
    # Greedy first pass (crowded points choose first), then a few passes where each label
    # moves to its best position given all the others, until nothing moves.
    order = sorted(range(len(pixels)), key=lambda i: (-crowding(i), i))
    positions = ["top center"] * len(pixels)
    boxes: dict[int, tuple[float, float, float, float]] = {}
    for i in order:
        positions[i] = min(names, key=lambda n: (cost(i, n, list(boxes.values())), names.index(n)))
        boxes[i] = _label_box(*pixels[i], labels[i], positions[i])
    for _ in range(10):
        moved = False
        for i in order:
            others = [box for j, box in boxes.items() if j != i]
            best = min(names, key=lambda n: (cost(i, n, others), names.index(n)))
            if cost(i, best, others) < cost(i, positions[i], others):
                positions[i] = best
                boxes[i] = _label_box(*pixels[i], labels[i], best)
                moved = True
        if not moved:
            break
    return positions


def label_overlaps(
    xs: Sequence[float],
    ys: Sequence[float],
    labels: Sequence[str],
    positions: Sequence[str],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int = SCATTER_WIDTH,
    height: int = SCATTER_HEIGHT,
) -> int:
    """How many pairs of labels overlap (the measure ``label_positions`` minimises)."""
    pixels = _to_pixels(xs, ys, x_range, y_range, width, height)
    boxes = [
        _label_box(px, py, text, pos)
        for (px, py), text, pos in zip(pixels, labels, positions, strict=True)
    ]
    return sum(
        1
        for i in range(len(boxes))
        for j in range(i + 1, len(boxes))
        if _overlap(boxes[i], boxes[j])
    )


def _scatter_layout(fig: go.Figure, title: str, x_title: str, y_title: str) -> None:
    fig.update_layout(
        title=title,
        width=SCATTER_WIDTH,
        height=SCATTER_HEIGHT,
        margin=SCATTER_MARGIN,
        xaxis_title=x_title,
        yaxis_title=y_title,
        legend=LEGEND,
        font={"size": FONT_PX},
    )


def legend_name(label: str, models: Sequence[str], per_line: int = 3) -> str:
    """A model category's legend entry names its models (the legend alone says which models
    each category holds), a few per line so the legend stays narrow."""
    names = sorted(models)
    lines = [", ".join(names[i : i + per_line]) for i in range(0, len(names), per_line)]
    return f"<b>{label}</b>: " + ",<br>".join(lines)


def _add_labelled_points(
    fig: go.Figure,
    frame: pl.DataFrame,
    x: str,
    y: str,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    hover_extra: str = "",
    width: int = SCATTER_WIDTH,
) -> None:
    """One trace per model category (the legend), each point labelled with its model name.
    ``width`` is the figure width the labels are placed for (less where a colour bar takes
    room)."""
    positions = label_positions(
        frame[x].to_list(), frame[y].to_list(), frame["model"].to_list(), x_range, y_range, width
    )
    frame = frame.with_columns(pl.Series("_pos", positions))
    labels = frame["category_label"].fill_null("not embedded")
    for label in sorted(set(labels.to_list()), key=lambda s: (s == "not embedded", s)):
        part = frame.filter(labels == label)
        fig.add_scatter(
            x=part[x].to_list(),
            y=part[y].to_list(),
            mode="markers+text",
            name=legend_name(label, part["model"].to_list()),
            legendgroup=label,
            text=part["model"].to_list(),
            textposition=part["_pos"].to_list(),
            textfont={"size": FONT_PX},
            marker={
                "size": 2 * _MARKER_PX,
                "color": model_category_colour(None if label == "not embedded" else label),
                "line": {"width": 1, "color": "white"},
            },
            hovertemplate="<b>%{text}</b><br>" + x + "=%{x:.3f}<br>" + y + "=%{y:.3f}"
            + hover_extra + "<extra>" + label + "</extra>",
        )  # fmt: skip


def embedding_figure(
    emb: pl.DataFrame,
    x: int,
    y: int,
    evr: dict[int, float],
    highlight: str | None = None,
) -> go.Figure:
    """The LCE in 2-D: any two components, coloured by model category, every model labelled."""
    xc, yc = f"pc{x}", f"pc{y}"
    x_range, y_range = padded_range(emb[xc].to_list()), padded_range(emb[yc].to_list())
    fig = go.Figure()
    _add_labelled_points(fig, emb, xc, yc, x_range, y_range)
    if highlight is not None and highlight in emb["model"].to_list():
        row = emb.filter(pl.col("model") == highlight).row(0, named=True)
        fig.add_scatter(
            x=[row[xc]],
            y=[row[yc]],
            mode="markers",
            name=f"{highlight} (highlighted)",
            marker={"size": 26, "color": "rgba(0,0,0,0)", "line": {"width": 3, "color": "red"}},
            hoverinfo="skip",
        )
    _scatter_layout(
        fig,
        "Learned Concepts Embedding",
        component_label(x, evr.get(x)),
        component_label(y, evr.get(y)),
    )
    fig.update_xaxes(range=list(x_range), zeroline=True, zerolinecolor="#DDDDDD")
    fig.update_yaxes(range=list(y_range), zeroline=True, zerolinecolor="#DDDDDD")
    return fig


CAMERA_EYE_3D = {"x": 1.7, "y": 1.7, "z": 1.1}


def embedding_figure_3d(
    emb: pl.DataFrame, evr: dict[int, float], highlight: str | None = None
) -> go.Figure:
    """The first three components in 3-D, every model labelled (small text: turning the view
    separates labels that overlap from one side), the legend naming each category's models."""
    fig = go.Figure()
    labels = emb["category_label"].fill_null("not embedded")
    for label in sorted(set(labels.to_list())):
        part = emb.filter(labels == label)
        fig.add_scatter3d(
            x=part["pc1"].to_list(),
            y=part["pc2"].to_list(),
            z=part["pc3"].to_list(),
            mode="markers+text",
            name=legend_name(label, part["model"].to_list()),
            legendgroup=label,
            text=part["model"].to_list(),
            textfont={"size": FONT_PX - 2},
            marker={"size": 6, "color": model_category_colour(label)},
            hovertemplate="<b>%{text}</b><extra>" + label + "</extra>",
        )
    if highlight is not None and highlight in emb["model"].to_list():
        row = emb.filter(pl.col("model") == highlight).row(0, named=True)
        fig.add_scatter3d(
            x=[row["pc1"]],
            y=[row["pc2"]],
            z=[row["pc3"]],
            mode="markers+text",
            name=f"{highlight} (highlighted)",
            text=[highlight],
            marker={"size": 12, "color": "rgba(0,0,0,0)", "line": {"width": 3, "color": "red"}},
        )
    fig.update_layout(
        title="The first three components",
        height=SCATTER_HEIGHT + 160,
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
        legend=LEGEND,
        scene={
            "xaxis_title": component_label(1, evr.get(1)),
            "yaxis_title": component_label(2, evr.get(2)),
            "zaxis_title": component_label(3, evr.get(3)),
            # Far enough back that no axis title leaves the view at the start (plotly's default
            # eye, (1.25, 1.25, 1.25), cut the z title), the whole cube in the frame.
            "camera": {"eye": CAMERA_EYE_3D},
            "aspectmode": "cube",
        },
    )
    return fig


# --------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------


def loadings(db: Path, component: int, top: int | None = None) -> pl.DataFrame:
    """Concept loadings of one component; ``top`` keeps the largest absolute ones. Sorted by
    concept category (Broden's order), then loading, so the chart reads category by category."""
    frame = query(
        db,
        """
        select concept, category, loading from fct_component_loadings
        where component = ?
        order by abs(loading) desc, category, concept
        """,
        [component],
    )
    if top is not None:
        frame = frame.head(top)
    keys = [concept_category_sort_key(c) for c in frame["category"].to_list()]
    return (
        frame.with_columns(
            pl.Series("_k0", [k[0] for k in keys]), pl.Series("_k1", [k[1] for k in keys])
        )
        .sort(["_k0", "_k1", "loading", "concept"], descending=[False, False, True, False])
        .drop("_k0", "_k1")
    )


def concept_bar_figure(
    frame: pl.DataFrame,
    value: str,
    hovertemplate: str,
    customdata: list[str] | None = None,
) -> go.Figure:
    """One horizontal bar per concept (names stay readable), in the frame's order, coloured and
    legend-grouped by concept category. ``hovertemplate`` gets the category appended."""
    labels = concept_labels(frame["concept"].to_list(), frame["category"].to_list())
    frame = frame.with_columns(pl.Series("label", labels))
    fig = go.Figure()
    for category in sorted(set(frame["category"].to_list()), key=concept_category_sort_key):
        part = frame.filter(pl.col("category") == category)
        fig.add_bar(
            name=category,
            y=part["label"].to_list(),
            x=part[value].to_list(),
            orientation="h",
            marker_color=concept_category_colour(category),
            customdata=np.column_stack([part[c].to_numpy() for c in customdata])
            if customdata
            else None,
            hovertemplate=hovertemplate + "<extra>" + category + "</extra>",
        )
    fig.update_layout(
        barmode="relative",  # one bar per concept: full width, not a slot per category
        margin={"l": 10, "r": 10, "t": 60, "b": 50},
        legend=LEGEND,
        yaxis={
            "automargin": True,
            "categoryorder": "array",
            "categoryarray": list(reversed(labels)),
            "tickfont": {"size": 11},
        },
    )
    return fig


def loadings_figure(frame: pl.DataFrame, component: int, evr: float | None) -> go.Figure:
    """The component's loadings, one bar per concept, grouped and coloured by concept category."""
    fig = concept_bar_figure(frame, "loading", "%{y}<br>loading %{x:.3f}")
    fig.update_layout(
        title=f"Loadings of {component_label(component, evr)}",
        height=max(360, 18 * frame.height + 140),
        xaxis_title="loading",
    )
    return fig


MEASURE_KINDS = {
    "n_units": "all units",
    "n_unique_concepts": "unique concepts",
    "unit_share": "share of units",
}


def category_count_correlations(db: Path) -> pl.DataFrame:
    """Each component against each concept category's counts over the embedded models, from
    fct_component_category_correlations (all units, unique concepts, share of units; 0 where a
    model has none): r with its bootstrap interval, p, and BH q / significant."""
    if not table_exists(db, "fct_component_category_correlations"):
        return pl.DataFrame(
            schema={
                "component": pl.Int32, "category": pl.String, "kind": pl.String, "n": pl.Int32,
                "pearson_r": pl.Float64, "r_lo": pl.Float64, "r_hi": pl.Float64,
                "p_value": pl.Float64, "q_value": pl.Float64, "significant": pl.Boolean,
            }
        )  # fmt: skip
    frame = query(
        db,
        """
        select component, category, measure, n, pearson_r, r_lo, r_hi, p_value, q_value,
               significant
        from fct_component_category_correlations order by component, category, measure
        """,
    )
    kinds = [MEASURE_KINDS.get(m, m) for m in frame["measure"].to_list()]
    frame = frame.with_columns(pl.Series("measure", kinds, dtype=pl.String)).rename(
        {"measure": "kind"}
    )
    rank = {c: i for i, c in enumerate(sorted(set(frame["category"].to_list()),
                                              key=concept_category_sort_key))}  # fmt: skip
    order = pl.Series("_rank", [rank[c] for c in frame["category"].to_list()])
    return frame.with_columns(order).sort(["component", "_rank", "kind"]).drop("_rank")


def survives(significant: bool | None) -> str:
    """The mark of a correlation that survives the Benjamini-Hochberg correction."""
    return "*" if significant else ""


# r with its interval, p and q on hover; customdata columns are _interval_data's.
INTERVAL_HOVER = (
    "r=%{y:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}]<br>"
    "p=%{customdata[2]:.3g}, q=%{customdata[3]:.3g}, n=%{customdata[4]}"
)


def _interval_data(frame: pl.DataFrame) -> list[list[float | None]]:
    """Per bar: r_lo, r_hi, p, q, n (None where null), for INTERVAL_HOVER; plain lists, so
    the figure's JSON carries numbers rather than a binary array."""
    columns = [
        frame[c].cast(pl.Float64).to_list() for c in ("r_lo", "r_hi", "p_value", "q_value", "n")
    ]
    return [list(row) for row in zip(*columns, strict=True)]


def interval_bars(frame: pl.DataFrame) -> dict[str, Any]:
    """Asymmetric error bars from r to its bootstrap interval (none where r is null)."""
    r = frame["pearson_r"].fill_null(float("nan")).to_numpy()
    lo = frame["r_lo"].fill_null(float("nan")).to_numpy()
    hi = frame["r_hi"].fill_null(float("nan")).to_numpy()
    return {
        "type": "data",
        "symmetric": False,
        "array": np.nan_to_num(hi - r).tolist(),
        "arrayminus": np.nan_to_num(r - lo).tolist(),
        "color": "#444444",
        "thickness": 1,
        "width": 3,
    }


def category_correlation_figure(frame: pl.DataFrame) -> go.Figure:
    """Two panels (all units, unique concepts): bars per component, one per concept category,
    with bootstrap intervals; a star marks what survives the Benjamini-Hochberg correction."""
    kinds = ["all units", "unique concepts"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=kinds, shared_yaxes=True)
    for col, kind in enumerate(kinds, start=1):
        part = frame.filter(pl.col("kind") == kind)
        for category in sorted(set(part["category"].to_list()), key=concept_category_sort_key):
            cat = part.filter(pl.col("category") == category).sort("component")
            fig.add_bar(
                name=category,
                legendgroup=category,
                showlegend=col == 1,
                x=[f"PC{c}" for c in cat["component"].to_list()],
                y=cat["pearson_r"].to_list(),
                error_y=interval_bars(cat),
                text=[survives(s) for s in cat["significant"].to_list()],
                textposition="outside",
                customdata=_interval_data(cat),
                marker_color=concept_category_colour(category),
                hovertemplate="%{x} vs " + category + "<br>" + INTERVAL_HOVER
                + "<extra>" + kind + "</extra>",
                row=1,
                col=col,
            )  # fmt: skip
    fig.update_layout(
        barmode="group",
        title={"text": "Correlation of each component with the per-category counts", "y": 0.98},
        height=440,
        margin={"l": 10, "r": 10, "t": 80, "b": 80},
        legend={"orientation": "h", "y": -0.12, "yanchor": "top", "x": 0, "title": None},
    )
    fig.update_yaxes(range=[-1.15, 1.15], title_text="Pearson r", row=1, col=1)
    return fig


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


def task_families(db: Path) -> list[str]:
    tasks = query(db, "select distinct task from fct_task_benchmarks")["task"].to_list()
    return sorted(tasks, key=task_sort_key)


def result_label(dataset: str, metric: str, datasets: int, metrics: int) -> str:
    """Name a task result by what varies within its family (dataset, metric or both)."""
    if metrics == 1:
        return dataset
    if datasets == 1:
        return metric
    return f"{dataset} · {metric}"


def with_result_labels(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with a ``result`` column naming each row's (dataset, metric) by what varies."""
    datasets, metrics = frame["dataset"].n_unique(), frame["metric"].n_unique()
    labels = [
        result_label(d, m, datasets, metrics)
        for d, m in zip(frame["dataset"].to_list(), frame["metric"].to_list(), strict=True)
    ]
    return frame.with_columns(pl.Series("result", labels, dtype=pl.String))


def task_correlations(db: Path, task: str) -> pl.DataFrame:
    """Component x result correlations of one task family, with a readable label per result."""
    frame = query(
        db,
        """
        select component, dataset, metric, higher_is_better, n, pearson_r, r_lo, r_hi, p_value,
               q_value, significant, spearman_rho
        from fct_component_task_correlations where task = ?
        order by dataset = 'Avg.', dataset, metric, component
        """,
        [task],
    )
    frame = sort_results(frame, "component")
    return with_result_labels(frame)


def task_correlation_figure(frame: pl.DataFrame, task: str) -> go.Figure:
    """Grouped bars of r per result and component with their bootstrap 95% intervals; a star
    marks a correlation that survives the Benjamini-Hochberg correction; p and q on hover."""
    fig = go.Figure()
    order = list(dict.fromkeys(frame["result"].to_list()))
    for component in sorted(set(frame["component"].to_list())):
        part = frame.filter(pl.col("component") == component)
        fig.add_bar(
            name=f"PC{component}",
            x=part["result"].to_list(),
            y=part["pearson_r"].to_list(),
            error_y=interval_bars(part),
            text=[survives(v) for v in part["significant"].to_list()],
            textposition="outside",
            customdata=_interval_data(part),
            marker_color=component_colour(component),
            hovertemplate="%{x}<br>" + INTERVAL_HOVER + "<extra>PC" + str(component) + "</extra>",
        )
    lower = frame.filter(~pl.col("higher_is_better"))["result"].unique().to_list()
    subtitle = f"<br><sup>lower is better for: {', '.join(sorted(lower))}</sup>" if lower else ""
    fig.update_layout(
        barmode="group",
        title=f"Component / task correlations: {task_title(task)}{subtitle}",
        height=460,
        margin={"l": 10, "r": 10, "t": 90, "b": 40},
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1, "xanchor": "right"},
        yaxis={"range": [-1.15, 1.15], "title": "Pearson r"},
        xaxis={"categoryorder": "array", "categoryarray": order, "tickangle": -30},
    )
    return fig


CATEGORY_MEASURES = {
    "interpretable units": "n_units",
    "distinct concepts": "n_unique_concepts",
    "share of units": "unit_share",
}


def category_task_matrix(db: Path, task: str, measure: str) -> pl.DataFrame:
    """fct_category_task_correlations for one task family and category measure: one row per
    (concept category, result) with r, its interval, p, q and whether it survives; empty for
    a file built before the mart existed."""
    if not table_exists(db, "fct_category_task_correlations"):
        return pl.DataFrame(schema={"category": pl.String, "result": pl.String})
    frame = query(
        db,
        """
        select category, dataset, metric, n, pearson_r, r_lo, r_hi, p_value, q_value,
               significant
        from fct_category_task_correlations where task = ? and measure = ?
        order by dataset = 'Avg.', dataset, metric, category
        """,
        [task, measure],
    )
    frame = sort_results(frame, "category")
    return with_result_labels(frame)


def category_task_heatmap(frame: pl.DataFrame, task: str, measure: str) -> go.Figure:
    """Concept categories x the family's results, coloured by r (blue negative, red positive);
    a star marks each cell whose correlation survives the correction; interval, p, q on hover."""
    results = list(dict.fromkeys(frame["result"].to_list()))
    categories = sorted(set(frame["category"].to_list()), key=concept_category_sort_key)
    cell = {(c, r): row for c, r, row in zip(frame["category"].to_list(),
                                             frame["result"].to_list(),
                                             frame.iter_rows(named=True), strict=True)}  # fmt: skip
    z, text, custom = [], [], []
    for category in categories:
        z_row, text_row, custom_row = [], [], []
        for result in results:
            row = cell.get((category, result))
            r = None if row is None else row["pearson_r"]
            z_row.append(r)
            text_row.append(survives(row["significant"]) if row else "")
            custom_row.append(
                [float("nan") if row is None or row[k] is None else row[k]
                 for k in ("r_lo", "r_hi", "p_value", "q_value", "n")]
            )  # fmt: skip
        z.append(z_row)
        text.append(text_row)
        custom.append(custom_row)
    fig = go.Figure()
    fig.add_heatmap(
        x=results,
        y=categories,
        z=z,
        zmin=-1,
        zmax=1,
        colorscale="RdBu",
        reversescale=True,
        text=text,
        texttemplate="%{text}",
        textfont={"size": 18},
        customdata=custom,
        colorbar={"title": {"text": "Pearson r"}},
        hovertemplate="%{y} vs %{x}<br>r=%{z:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}]"
        "<br>p=%{customdata[2]:.3g}, q=%{customdata[3]:.3g}, n=%{customdata[4]}<extra></extra>",
    )
    fig.update_layout(
        title=f"Concept categories x {task_title(task)} results ({measure}); * survives the correction",
        height=160 + 45 * max(1, len(categories)),
        margin={"l": 10, "r": 10, "t": 60, "b": 40},
        xaxis={"tickangle": -30},
        yaxis={"autorange": "reversed"},
    )
    return fig


def correlation_survival(db: Path) -> list[str]:
    """One sentence per correlation table with tests: how many survive the correction."""
    from lce import summary

    return [
        summary.survival_line(row)
        for row in summary.correlation_survival(db).iter_rows(named=True)
        if row["tests"]
    ]


def task_results(db: Path, task: str) -> pl.DataFrame:
    """The (dataset, metric) results of one family, with their label."""
    frame = query(
        db,
        """
        select distinct dataset, metric, higher_is_better from fct_task_benchmarks
        where task = ? order by dataset = 'Avg.', dataset, metric
        """,
        [task],
    )
    frame = sort_results(frame)
    return with_result_labels(frame)


def task_points(db: Path, task: str, dataset: str, metric: str) -> pl.DataFrame:
    """Embedded models with the result: category, every component score (pc1...) and the value."""
    emb = embedding(db)
    values = query(
        db,
        """
        select model, value from fct_task_benchmarks
        where task = ? and dataset = ? and metric = ?
        """,
        [task, dataset, metric],
    )
    return emb.join(values, on="model", how="inner").sort("model")


def fit_line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float] | None:
    """Least-squares slope and intercept, None when x is constant or has < 2 points."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.size < 2 or np.ptp(xa) == 0:
        return None
    slope, intercept = np.polyfit(xa, ya, 1)
    return float(slope), float(intercept)


def task_scatter_figure(
    points: pl.DataFrame, component: int, evr: float | None, result: str, metric: str
) -> go.Figure:
    """One result against one component: models coloured by category, fit line, r in the title."""
    xc = f"pc{component}"
    xs, ys = points[xc].to_list(), points["value"].to_list()
    x_range, y_range = padded_range(xs), padded_range(ys)
    fig = go.Figure()
    _add_labelled_points(fig, points, xc, "value", x_range, y_range)
    line = fit_line(xs, ys)
    r, p = pearson(np.array(xs), np.array(ys))
    if line is not None:
        fig.add_scatter(
            x=list(x_range),
            y=[line[0] * v + line[1] for v in x_range],
            mode="lines",
            name="least-squares fit",
            line={"color": "#555555", "dash": "dash"},
            hoverinfo="skip",
        )
    r_text = "r undefined" if math.isnan(r) else f"r = {r:.3f}, p = {p:.3g}, n = {len(xs)}"
    _scatter_layout(
        fig, f"{result} against PC{component} ({r_text})", component_label(component, evr), metric
    )
    fig.update_xaxes(range=list(x_range))
    fig.update_yaxes(range=list(y_range))
    return fig


def knn_interpolate(
    points: np.ndarray, values: np.ndarray, queries: np.ndarray, k: int
) -> np.ndarray:
    """Distance-weighted k-nearest-neighbour regression (weights 1/d; a query on a point takes
    that point's value), as scikit-learn's KNeighborsRegressor(weights='distance') computes it:
    the paper's performance maps. Plain numpy so the Tasks page need not import scikit-learn."""
    points = np.asarray(points, dtype=float)
    values = np.asarray(values, dtype=float)
    queries = np.asarray(queries, dtype=float)
    k = max(1, min(k, len(points)))
    dist = np.sqrt(((queries[:, None, :] - points[None, :, :]) ** 2).sum(axis=2))
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    d = np.take_along_axis(dist, nearest, axis=1)
    v = values[nearest]
    exact = d == 0
    with np.errstate(divide="ignore"):
        weights = np.where(exact.any(axis=1, keepdims=True), exact.astype(float), 1.0 / d)
    return (weights * v).sum(axis=1) / weights.sum(axis=1)


@dataclass(frozen=True)
class PerformanceMap:
    """A grid of interpolated performance over two components."""

    x: np.ndarray  # grid x coordinates (component x)
    y: np.ndarray  # grid y coordinates (component y)
    z: np.ndarray  # len(y) x len(x)


def performance_map(
    points: pl.DataFrame, x: int, y: int, k: int = 3, resolution: int = 100
) -> PerformanceMap:
    xs, ys = points[f"pc{x}"].to_numpy(), points[f"pc{y}"].to_numpy()
    gx = np.linspace(*padded_range(xs.tolist()), resolution)
    gy = np.linspace(*padded_range(ys.tolist()), resolution)
    grid = np.array([(a, b) for b in gy for a in gx])
    z = knn_interpolate(np.column_stack([xs, ys]), points["value"].to_numpy(), grid, k)
    return PerformanceMap(gx, gy, z.reshape(len(gy), len(gx)))


DARK_LABEL, LIGHT_LABEL = "#111111", "#FFFFFF"


def relative_luminance(rgb: str) -> float:
    """WCAG relative luminance of 'rgb(r, g, b)' or '#rrggbb' (0 black, 1 white)."""
    from plotly.colors import hex_to_rgb, unlabel_rgb

    r, g, b = hex_to_rgb(rgb) if rgb.startswith("#") else unlabel_rgb(rgb)

    def linear(c: float) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)


def map_value_near_label(pmap: PerformanceMap, x: float, y: float, position: str) -> float:
    """The map's value where a label sits: the grid cell one label-offset from the point in the
    direction of its textposition (about 4% of each axis)."""
    dx = 0.04 * (pmap.x[-1] - pmap.x[0])
    dy = 0.04 * (pmap.y[-1] - pmap.y[0])
    sx = 1 if "right" in position else -1 if "left" in position else 0
    sy = 1 if "top" in position else -1 if "bottom" in position else 0
    i = int(np.abs(pmap.y - (y + sy * dy)).argmin())
    j = int(np.abs(pmap.x - (x + sx * dx)).argmin())
    return float(pmap.z[i, j])


def label_colour_on_map(value: float, zmin: float, zmax: float, higher_is_better: bool) -> str:
    """White text where the heatmap is dark, near-black where it is light (WCAG contrast)."""
    from plotly.colors import sample_colorscale

    t = 0.5 if zmax <= zmin else (value - zmin) / (zmax - zmin)
    t = min(1.0, max(0.0, t if higher_is_better else 1 - t))
    background = relative_luminance(sample_colorscale("Viridis", [t])[0])
    # contrast with white vs with black: pick the larger
    return (
        LIGHT_LABEL if (1.05 / (background + 0.05)) > ((background + 0.05) / 0.05) else DARK_LABEL
    )


def performance_map_figure(
    points: pl.DataFrame,
    pmap: PerformanceMap,
    x: int,
    y: int,
    evr: dict[int, float],
    result: str,
    metric: str,
    higher_is_better: bool,
    k: int,
) -> go.Figure:
    """The interpolated map as a heatmap (brighter = better, whatever the metric's direction),
    with the models on top."""
    fig = go.Figure()
    # The colour scale spans the observed values as well as the grid: the grid (weighted means)
    # need not reach the extreme models, whose value would then fall off the scale.
    observed = [float(v) for v in points["value"].to_list() if v is not None]
    zmin = min([float(np.nanmin(pmap.z)), *observed])
    zmax = max([float(np.nanmax(pmap.z)), *observed])
    fig.add_heatmap(
        x=pmap.x.tolist(),
        y=pmap.y.tolist(),
        z=pmap.z.tolist(),
        zmin=zmin,
        zmax=zmax,
        colorscale="Viridis",
        reversescale=not higher_is_better,
        colorbar={"title": {"text": metric + ("" if higher_is_better else " (lower is better)")}},
        hovertemplate="PC" + str(x) + "=%{x:.3f}<br>PC" + str(y) + "=%{y:.3f}<br>"
        + metric + "≈%{z:.3f}<extra></extra>",
        name="interpolated",
        showlegend=False,
    )  # fmt: skip
    x_range = (float(pmap.x[0]), float(pmap.x[-1]))
    y_range = (float(pmap.y[0]), float(pmap.y[-1]))
    _add_labelled_points(
        fig,
        points,
        f"pc{x}",
        f"pc{y}",
        x_range,
        y_range,
        hover_extra="<br>value=%{customdata:.3f}",
        width=SCATTER_WIDTH - COLORBAR_PX,
    )
    for trace in fig.data[1:]:
        names = list(trace.text)
        value_of = dict(zip(points["model"].to_list(), points["value"].to_list(), strict=True))
        trace.customdata = [value_of[n] for n in names]
        # Each label in the colour that reads on the map where it sits: white on the dark end
        # of Viridis, near-black on the bright end (a halo alone did not carry on dark regions).
        colours = []
        for px, py, pos in zip(trace.x, trace.y, trace.textposition, strict=True):
            under = map_value_near_label(pmap, float(px), float(py), pos)
            colours.append(label_colour_on_map(under, zmin, zmax, higher_is_better))
        trace.textfont = {"size": FONT_PX, "color": colours}
    _scatter_layout(
        fig,
        f"{result}: distance-weighted {k}-NN map",
        component_label(x, evr.get(x)),
        component_label(y, evr.get(y)),
    )
    fig.update_xaxes(range=list(x_range))
    fig.update_yaxes(range=list(y_range))
    return fig


# --------------------------------------------------------------------------------------------
# Compare
# --------------------------------------------------------------------------------------------


WEIGHT_DEFINITION = (
    "Weight: a concept's entry in the model's concept profile, the number of the model's "
    "interpretable units that detect it divided by the number of distinct concepts of its "
    "category across all models (the paper's weighting). It is not a share: a concept that "
    "many units detect, in a small category, weighs more than 1."
)
PART_SUFFIXES = (
    "Part concepts carry the object they belong to and a suffix for where: -t top, -b bottom, "
    "-l left, -r right (ceiling-b: the bottom of a ceiling); a name used in two categories "
    "shows its category in brackets, e.g. food (material)."
)


def with_concept_labels(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with ``concept`` replaced by its disambiguated label ('food (material)' where
    the name is in two categories), as every figure shows it."""
    labels = concept_labels(frame["concept"].to_list(), frame["category"].to_list())
    return frame.with_columns(pl.Series("concept", labels, dtype=pl.String))


def profiled_models(db: Path) -> list[str]:
    """Models with a dissection profile, embedded ones first (each group alphabetical)."""
    frame = query(
        db, "select model from dim_models where has_profile order by not in_embedding, model"
    )
    return frame["model"].to_list()


def compare_profiles(db: Path, a: str, b: str) -> pl.DataFrame:
    """Every concept either model has: units and profile weight in each, difference, and whether
    it is shared or unique to one of them."""
    return query(
        db,
        """
        with pa as (select concept, category, n_units, weight from fct_concept_profiles
                    where model = $1),
             pb as (select concept, category, n_units, weight from fct_concept_profiles
                    where model = $2)
        select
            coalesce(pa.concept, pb.concept) as concept,
            coalesce(pa.category, pb.category) as category,
            coalesce(pa.n_units, 0) as units_a,
            coalesce(pb.n_units, 0) as units_b,
            coalesce(pa.weight, 0) as weight_a,
            coalesce(pb.weight, 0) as weight_b,
            coalesce(pa.weight, 0) - coalesce(pb.weight, 0) as difference,
            case when pa.concept is not null and pb.concept is not null then 'shared'
                 when pa.concept is not null then 'only A' else 'only B' end as status
        from pa full outer join pb on pa.concept = pb.concept and pa.category = pb.category
        order by abs(coalesce(pa.weight, 0) - coalesce(pb.weight, 0)) desc, concept, category
        """,
        [a, b],
    )


def model_distance(db: Path, a: str, b: str) -> float | None:
    frame = query(
        db,
        "select cosine_distance from fct_model_distances where model_a = ? and model_b = ?",
        [a, b],
    )
    return None if frame.is_empty() else float(frame["cosine_distance"][0])


def compare_tasks(db: Path, a: str, b: str) -> pl.DataFrame:
    """Both models' results side by side, and which is better (respecting higher_is_better)."""
    return query(
        db,
        """
        with ta as (select task, dataset, metric, higher_is_better, value
                    from fct_task_benchmarks where model = $1),
             tb as (select task, dataset, metric, higher_is_better, value
                    from fct_task_benchmarks where model = $2)
        select
            coalesce(ta.task, tb.task) as task,
            coalesce(ta.dataset, tb.dataset) as dataset,
            coalesce(ta.metric, tb.metric) as metric,
            coalesce(ta.higher_is_better, tb.higher_is_better) as higher_is_better,
            ta.value as value_a,
            tb.value as value_b,
            case when ta.value is null or tb.value is null then ''
                 when ta.value = tb.value then 'tie'
                 when (ta.value > tb.value) = coalesce(ta.higher_is_better, tb.higher_is_better)
                     then 'A' else 'B' end as better
        from ta full outer join tb using (task, dataset, metric)
        order by task, dataset = 'Avg.', dataset, metric
        """,
        [a, b],
    )


def profile_difference_figure(frame: pl.DataFrame, a: str, b: str, top: int = 30) -> go.Figure:
    """The concepts whose profile weight differs most: right = more in A, left = more in B."""
    part = frame.head(top)
    fig = concept_bar_figure(
        part,
        "difference",
        "%{y}<br>weight difference %{x:.3f}<br>units: "
        + f"{a} %{{customdata[0]}}, {b} %{{customdata[1]}}",
        customdata=["units_a", "units_b"],
    )
    fig.update_layout(
        title=f"Profile difference: ← more in {b} | more in {a} →",
        height=max(360, 20 * part.height + 140),
        xaxis_title="profile weight difference (A - B)",
    )
    return fig


# --------------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------------


def unit_layers(db: Path) -> pl.DataFrame:
    """Every dissected (model, layer), primary layers first."""
    return query(
        db,
        """
        select model, layer, bool_or(is_primary_layer) as is_primary_layer,
               count(*) as units, count(*) filter (where is_interpretable) as interpretable
        from fct_unit_labels group by model, layer
        order by model, not bool_or(is_primary_layer), layer
        """,
    )


def unit_categories(db: Path, model: str, layer: str) -> list[str]:
    frame = query(
        db,
        """
        select distinct category from fct_unit_labels
        where model = ? and layer = ? and category is not null
        """,
        [model, layer],
    )
    return sorted(frame["category"].to_list(), key=concept_category_sort_key)


def units(
    db: Path,
    model: str,
    layer: str,
    categories: Sequence[str] | None = None,
    min_iou: float = 0.0,
    interpretable_only: bool = False,
    search: str = "",
) -> pl.DataFrame:
    """A layer's units with label, category and IoU, filtered; strongest IoU first."""
    sql = """
        select unit, concept, category, iou, is_interpretable from fct_unit_labels
        where model = ? and layer = ? and coalesce(iou, 0) >= ?
    """
    params: list[Any] = [model, layer, float(min_iou)]
    if interpretable_only:
        sql += " and is_interpretable"
    if categories is not None:
        sql += " and list_contains(?, category)"
        params.append(list(categories))
    if search.strip():
        sql += " and contains(lower(concept), lower(?))"
        params.append(search.strip())
    # Units whose best match is the background (null concept, often IoU 1.0 on a random
    # network) go after the units with a concept, not first.
    sql += " order by concept is null, iou desc nulls last, unit"
    return query(db, sql, params)


NO_CONCEPT = "(background: no concept)"
NO_CATEGORY = "(none)"


def units_for_display(frame: pl.DataFrame) -> pl.DataFrame:
    """The units table as users read it: a unit whose best match is the background (label
    ``-``, a null concept in the warehouse) says so instead of "None" (issue 13)."""
    out = frame
    if "concept" in out.columns:
        out = out.with_columns(pl.col("concept").fill_null(NO_CONCEPT))
    if "category" in out.columns:
        out = out.with_columns(pl.col("category").fill_null(NO_CATEGORY))
    return out


def run_probe_dir(db: Path, model: str, layer: str) -> str | None:
    """The probe folder the extraction of (model, layer) recorded (runs.probe is
    ``broden:<path>``), or None when the run names none (precomputed labels, older files)."""
    if not table_exists(db, TOP_IMAGES):
        return None
    frame = query(
        db,
        f"select probe_dir from {TOP_IMAGES} where model = ? and layer = ? "
        "and probe_dir is not null limit 1",
        [model, layer],
    )
    if frame.is_empty():
        return None
    return str(frame["probe_dir"][0]) or None


def default_probe_dir(recorded: str | None, environment: str | None) -> str:
    """What the probe folder box starts with: the run's own folder when this machine has it,
    else LCE_PROBE_DIR, else the recorded path (so the note says it is not reachable)."""
    if recorded and Path(recorded).expanduser().is_dir():
        return recorded
    if environment and environment.strip():
        return environment
    return recorded or ""


def unit_link(params: dict[str, str], layers: pl.DataFrame) -> dict[str, Any] | None:
    """The Units page's widget state for a link ``?model=&layer=&unit=`` (from a Gallery or
    Concept tile); None when the link names no dissected (model, layer) or no unit number."""
    model, layer, unit = params.get("model"), params.get("layer"), params.get("unit")
    if model is None or layer is None or unit is None or not unit.strip().isdigit():
        return None
    known = set(zip(layers["model"].to_list(), layers["layer"].to_list(), strict=True))
    if (model, layer) not in known:
        return None
    return {"units_model": model, "units_layer": layer, "units_unit": int(unit)}


# The Units page's filters a link clears (back to their defaults) so the linked unit is in view.
UNIT_FILTER_KEYS = ("units_min_iou", "units_search", "units_interpretable", "units_categories")


def unit_caption(frame: pl.DataFrame, unit: int) -> str:
    """'car (object), IoU 0.206' for a unit picker."""
    row = frame.filter(pl.col("unit") == unit).row(0, named=True)
    if row["concept"] is None:
        return NO_CONCEPT
    iou = "" if row["iou"] is None else f", IoU {row['iou']:.3f}"
    return f"{row['concept']} ({row['category']}){iou}"


TOP_IMAGES = "fct_unit_top_images"  # the mart the pages read top images from (issue 16)


def top_images(db: Path, model: str, layer: str, unit: int) -> pl.DataFrame:
    """The unit's top images (empty when the engine stored none)."""
    if not table_exists(db, TOP_IMAGES):
        return pl.DataFrame(
            schema={"rank": pl.Int32, "image": pl.String, "max_activation": pl.Float64}
        )
    return query(
        db,
        f"""
        select rank, image, max_activation from {TOP_IMAGES}
        where model = ? and layer = ? and unit = ? order by rank
        """,
        [model, layer, unit],
    )


def top_image_layers(db: Path) -> pl.DataFrame:
    """The (model, layer)s the lake stored top images for, and how many of their units."""
    if not table_exists(db, TOP_IMAGES):
        return pl.DataFrame(schema={"model": pl.String, "layer": pl.String, "units": pl.Int64})
    return query(
        db,
        f"""
        select model, layer, count(distinct unit) as units from {TOP_IMAGES}
        group by model, layer order by model, layer
        """,
    )


def top_image_units(db: Path, model: str, layer: str) -> list[int]:
    """Units of one layer that have top images."""
    if not table_exists(db, TOP_IMAGES):
        return []
    frame = query(
        db,
        f"select distinct unit from {TOP_IMAGES} where model = ? and layer = ? order by unit",
        [model, layer],
    )
    return [int(u) for u in frame["unit"].to_list()]


def unit_threshold(db: Path, model: str, layer: str, unit: int) -> float | None:
    """The unit's threshold T (for a unit with top images: the mart carries it)."""
    if not table_exists(db, TOP_IMAGES):
        return None
    frame = query(
        db,
        f"select threshold from {TOP_IMAGES} where model = ? and layer = ? and unit = ? limit 1",
        [model, layer, unit],
    )
    if frame.is_empty() or frame["threshold"][0] is None:
        return None
    return float(frame["threshold"][0])


def probe_dir_problem(probe_dir: str | Path | None) -> str | None:
    """None when the probe folder can serve images, else why not (shown as a note)."""
    if probe_dir is None or not str(probe_dir).strip():
        return (
            "No probe folder given: enter the folder of the probe set the models were dissected "
            "on (or set LCE_PROBE_DIR) to see each unit's top images."
        )
    path = Path(str(probe_dir).strip()).expanduser()
    if not path.is_dir():
        return f"The probe folder `{path}` is not reachable from this machine."
    return None


def resolve_probe_image(probe_dir: str | Path, image: str) -> Path | None:
    """The image's file inside the probe folder (Broden keeps images under ``images/``), or None.
    A path that would leave the probe folder is refused."""
    root = Path(str(probe_dir).strip()).expanduser().resolve()
    for base in (root / "images", root):
        candidate = (base / image).resolve()
        if candidate.is_relative_to(root) and candidate.is_file():
            return candidate
    return None


# --------------------------------------------------------------------------------------------
# SQL
# --------------------------------------------------------------------------------------------

EXAMPLE_QUERIES: dict[str, str] = {
    "A model's top concepts": (
        "select concept, category, n_units\nfrom fct_concept_profiles\n"
        "where model = (select model from dim_models where in_embedding order by model limit 1)\n"
        "order by n_units desc, concept\nlimit 10"
    ),
    "Nearest models to a model": (
        "select model_a, model_b, round(cosine_distance, 3) as distance\n"
        "from fct_model_distances\n"
        "qualify row_number() over (partition by model_a order by cosine_distance) = 1\n"
        "order by distance"
    ),
    "Model categories": (
        "select category_label, string_agg(model, ', ' order by model) as models\n"
        "from dim_model_categories\ngroup by category_label\norder by category_label"
    ),
    "Strongest component / task correlations": (
        "select component, task, dataset, metric, n, round(pearson_r, 3) as r,\n"
        "       round(p_value, 4) as p\nfrom fct_component_task_correlations\n"
        "where pearson_r is not null\norder by abs(pearson_r) desc\nlimit 20"
    ),
    "Tables and their descriptions": (
        "select table_name, comment from duckdb_tables() order by table_name"
    ),
}


def table_descriptions(db: Path) -> pl.DataFrame:
    """The marts with their dbt descriptions and columns, as the SQL page's cheat sheet."""
    return query(
        db,
        """
        select t.table_name as "table", t.comment as description,
               string_agg(c.column_name, ', ' order by c.column_index) as columns
        from duckdb_tables() t
        join duckdb_columns() c using (database_name, schema_name, table_name)
        where list_contains(?, t.table_name)
        group by t.table_name, t.comment
        order by t.table_name
        """,
        [list(MARTS)],
    )


def to_csv(frame: pl.DataFrame) -> str:
    """The result as CSV for the download button (``run_sql`` already made every column a
    scalar, so this cannot meet nested data)."""
    return frame.write_csv()


# --------------------------------------------------------------------------------------------
# Uncertainty: the unit bootstrap (intervals, category stability) and task prediction skill
# --------------------------------------------------------------------------------------------

INTERVAL_COLOUR = "rgba(90,90,90,0.55)"
PREDICTION_METHODS = ("knn", "ridge", "category")  # the baseline (mean) has skill 0 by definition
PREDICTION_COLOURS = {"knn": "#1B9E77", "ridge": "#D95F02", "category": "#7570B3"}


def lce_intervals(db: Path) -> pl.DataFrame:
    """95% unit-bootstrap intervals of every model's coordinates (fct_lce_intervals); empty for
    a warehouse built before the bootstrap."""
    if not table_exists(db, "fct_lce_intervals"):
        return pl.DataFrame(
            schema={"model": pl.String, "component": pl.Int32, "lo": pl.Float64, "hi": pl.Float64}
        )
    return query(db, "select model, component, lo, hi from fct_lce_intervals order by all")


def add_intervals(
    fig: go.Figure, emb: pl.DataFrame, intervals: pl.DataFrame, x: int, y: int
) -> go.Figure:
    """A cross per model (its 95% interval on each axis) under the points, in one grey trace;
    the axes grow to hold the crosses."""
    xc, yc = f"pc{x}", f"pc{y}"
    bounds = {(m, c): (lo, hi) for m, c, lo, hi in intervals.iter_rows()}
    xs: list[float | None] = []
    ys: list[float | None] = []
    for model, px, py in zip(emb["model"], emb[xc], emb[yc], strict=True):
        if (model, x) not in bounds or (model, y) not in bounds:
            continue
        (x_lo, x_hi), (y_lo, y_hi) = bounds[(model, x)], bounds[(model, y)]
        xs += [x_lo, x_hi, None, px, px, None]
        ys += [py, py, None, y_lo, y_hi, None]
    if not xs:
        return fig
    fig.add_scatter(
        x=xs, y=ys, mode="lines", name="95% interval (unit bootstrap)",
        line={"color": INTERVAL_COLOUR, "width": 1.5}, hoverinfo="skip",
    )  # fmt: skip
    fig.data = (fig.data[-1], *fig.data[:-1])  # drawn first, under the points
    x_values = [v for v in xs if v is not None] + emb[xc].to_list()
    y_values = [v for v in ys if v is not None] + emb[yc].to_list()
    fig.update_xaxes(range=list(padded_range(x_values)))
    fig.update_yaxes(range=list(padded_range(y_values)))
    return fig


def category_stability(db: Path) -> pl.DataFrame:
    """Each embedded model's category and how stable its membership is under the bootstrap."""
    if not table_exists(db, "fct_category_stability"):
        return pl.DataFrame(
            schema={"model": pl.String, "category_label": pl.String, "stability": pl.Float64}
        )
    return query(
        db,
        "select model, category_label, stability from dim_model_categories "
        "order by category_id, model",
    )


def stability_summary(db: Path) -> dict[str, Any] | None:
    """Resamples, median and 5th percentile of the adjusted Rand index, share reproduced."""
    from lce.summary import category_stability as verdict

    return verdict(db)


def coassignment(db: Path) -> pl.DataFrame:
    """fct_category_coassignment with both models' published categories (for the ordering)."""
    if not table_exists(db, "fct_category_coassignment"):
        return pl.DataFrame(
            schema={"model_a": pl.String, "model_b": pl.String, "share": pl.Float64}
        )
    return query(
        db,
        """
        select c.model_a, c.model_b, c.share
        from fct_category_coassignment c
        join dim_model_categories a on a.model = c.model_a
        join dim_model_categories b on b.model = c.model_b
        order by a.category_id, c.model_a, b.category_id, c.model_b
        """,
    )


def coassignment_figure(frame: pl.DataFrame, categories: pl.DataFrame) -> go.Figure:
    """Heatmap of the share of resamples putting two models together, models grouped by their
    published category (the blocks on the diagonal are the categories)."""
    order = categories["model"].to_list()
    label = dict(zip(categories["model"], categories["category_label"], strict=True))
    share = {(a, b): s for a, b, s in frame.iter_rows()}
    z = [[share.get((a, b)) for b in order] for a in order]
    names = [f"{m} ({label[m]})" for m in order]
    fig = go.Figure(
        go.Heatmap(
            z=z, x=names, y=names, zmin=0, zmax=1, colorscale="Blues",
            colorbar={"title": "share"},
            hovertemplate="%{y}<br>%{x}<br>together in %{z:.0%} of resamples<extra></extra>",
        )
    )  # fmt: skip
    side = max(420, 28 * len(order) + 220)
    fig.update_layout(
        title="Category co-assignment over the bootstrap resamples",
        width=side + COLORBAR_PX,
        height=side,
        font={"size": FONT_PX},
        yaxis={"autorange": "reversed"},
        margin={"l": 160, "r": 30, "t": 60, "b": 160},
    )
    return fig


def task_prediction(db: Path, task: str) -> pl.DataFrame:
    """Leave-one-model-out skill per result of one family: one column per method, with the
    baseline's mean absolute error and the models held out (fct_task_prediction)."""
    if not table_exists(db, "fct_task_prediction"):
        return pl.DataFrame(schema={"result": pl.String})
    long = query(
        db,
        """
        select dataset, metric, method, n_models, mae, skill from fct_task_prediction
        where task = ? order by dataset = 'Avg.', dataset, metric
        """,
        [task],
    )
    if long.is_empty():
        return pl.DataFrame(schema={"result": pl.String})
    long = sort_results(long)
    long = with_result_labels(long)
    wide = long.filter(pl.col("method") != "mean").pivot(
        on="method", index=["result", "dataset", "metric", "n_models"], values="skill"
    )
    baseline = long.filter(pl.col("method") == "mean").select(
        "dataset", "metric", pl.col("mae").alias("mae_mean")
    )
    wide = wide.join(baseline, on=["dataset", "metric"], how="left", maintain_order="left")
    return wide.rename({m: f"skill_{m}" for m in PREDICTION_METHODS if m in wide.columns})


def task_prediction_figure(frame: pl.DataFrame, task: str) -> go.Figure:
    """Skill per result and method: bars right of 0 beat the mean of the other models."""
    fig = go.Figure()
    for method in PREDICTION_METHODS:
        column = f"skill_{method}"
        if column not in frame.columns:
            continue
        fig.add_bar(
            x=frame[column].to_list(), y=frame["result"].to_list(), orientation="h",
            name=method, marker_color=PREDICTION_COLOURS[method],
            hovertemplate="%{y}: skill %{x:.3f}<extra>" + method + "</extra>",
        )  # fmt: skip
    fig.add_vline(x=0, line_color="#555555", line_width=1)
    fig.update_layout(
        title=f"Leave-one-model-out skill: {task_title(task)}",
        barmode="group",
        width=SCATTER_WIDTH,
        height=max(320, 26 * 3 * frame.height + 140),
        xaxis_title="skill = 1 - MAE / MAE of the others' mean",
        yaxis={"autorange": "reversed"},
        legend=LEGEND,
        margin={"l": 200, "r": 30, "t": 90, "b": 60},
        font={"size": FONT_PX},
    )
    return fig


# --------------------------------------------------------------------------------------------
# Similarity: geometry beside concepts (issue 14; marts from lce/similarity.py)
# --------------------------------------------------------------------------------------------

SIMILARITY_MEASURES = {
    "linear_cka": "linear CKA",
    "debiased_cka": "debiased CKA",
    "mutual_knn": "mutual k-NN",
    "procrustes": "Procrustes distance",
}
# How each measure becomes a distance: as in fct_similarity_agreement.
SIMILARITY_DISTANCE = {
    "linear_cka": "1 - linear CKA",
    "debiased_cka": "1 - debiased CKA",
    "mutual_knn": "1 - mutual k-NN",
    "procrustes": "Procrustes distance (radians)",
}
NO_FEATURES = (
    "No model in this warehouse has image features, so there is no geometry to compare. The "
    "similarity marts compare models by each probe image's mean activation vector, which "
    "`lce extract` keeps (lake table image_features) unless --no-features; the paper's "
    "published data has only each unit's best label, and a lake dissected before lce kept "
    "the features has none either. Dissect the models with `lce extract` and run `lce build`."
)


def similarity_status(db: Path) -> str | None:
    """Why the Similarity page has nothing to show, or None when it has pairs to show."""
    if not table_exists(db, "fct_model_similarity"):
        return (
            "This warehouse was built before the similarity marts existed: run `lce build` "
            "again (a lake without image features then builds them empty)."
        )
    counts = query(
        db,
        "select count(*) as n, count(value) as defined, max(n_images) as most "
        "from fct_model_similarity",
    ).row(0, named=True)
    if not counts["n"]:
        return NO_FEATURES
    if not counts["defined"]:
        return (
            f"Every pair of models shares too few probe images (at most {counts['most']}) for "
            "the similarity measures: var similarity_min_images sets the minimum."
        )
    return None


def similarity_pairs(db: Path) -> pl.DataFrame:
    """One row per unordered model pair and measure: the value, its distance (as the agreement
    uses it), the shared images and the concept profiles' cosine distance (null for a model
    without interpretable units)."""
    frame = query(
        db,
        """
        select s.model_a, s.model_b, s.measure, s.value, s.n_images,
               d.cosine_distance as concept_distance
        from fct_model_similarity s
        left join fct_model_distances d on d.model_a = s.model_a and d.model_b = s.model_b
        where s.model_a < s.model_b
        order by s.measure, s.model_a, s.model_b
        """,
    )
    distance = (
        pl.when(pl.col("measure") == "procrustes")
        .then(pl.col("value"))
        .otherwise(1.0 - pl.col("value"))
    )
    return frame.with_columns(distance.alias("geometric_distance"))


def similarity_agreement(db: Path) -> pl.DataFrame:
    return query(
        db,
        "select measure, mantel_r, p_value, n_models, n_pairs, n_permutations "
        "from fct_similarity_agreement",
    )


def similarity_models(db: Path) -> list[str]:
    """The models of fct_model_similarity in one order for every heatmap: by their concept
    category (dim_model_categories), then name; models outside the embedding last."""
    frame = query(
        db,
        """
        select m.model from (select distinct model_a as model from fct_model_similarity) m
        left join dim_model_categories c using (model)
        order by c.category_id nulls last, m.model
        """,
    )
    return frame["model"].to_list()


def similarity_matrix_figure(
    pairs: pl.DataFrame, models: list[str], measure: str | None
) -> go.Figure:
    """A models x models heatmap of the concept distance (``measure`` None) or of one measure's
    geometric distance, in the given model order; a missing pair is a blank cell."""
    column = "concept_distance" if measure is None else "geometric_distance"
    part = pairs.filter(pl.col("measure") == (measure or pairs["measure"][0]))
    values: dict[tuple[str, str], float] = {}
    for a, b, v in part.select("model_a", "model_b", column).iter_rows():
        if v is not None:
            values[(a, b)] = values[(b, a)] = float(v)
    z = [[0.0 if a == b else values.get((a, b)) for b in models] for a in models]
    title = "Concept distance (cosine)" if measure is None else SIMILARITY_DISTANCE[measure]
    fig = go.Figure(
        go.Heatmap(
            z=z, x=models, y=models, colorscale="Viridis", reversescale=True,
            colorbar={"title": "distance"},
            hovertemplate="%{y}<br>%{x}<br>" + title + " %{z:.3f}<extra></extra>",
        )
    )  # fmt: skip
    side = max(380, 26 * len(models) + 200)
    fig.update_layout(
        title=title,
        width=side + COLORBAR_PX,
        height=side,
        font={"size": FONT_PX},
        yaxis={"autorange": "reversed"},
        margin={"l": 140, "r": 30, "t": 60, "b": 140},
    )
    return fig


def agreement_caption(agreement: pl.DataFrame, measure: str) -> str:
    """'Mantel r = 0.612 (Spearman), permutation p = 0.012 over 7 models (21 pairs)'."""
    rows = agreement.filter(pl.col("measure") == measure).to_dicts()
    if not rows:
        return "No agreement statistic for this measure."
    row = rows[0]
    if row["mantel_r"] is None:
        return (
            f"No agreement statistic: {row['n_pairs']} pair(s) of {row['n_models']} models have "
            "both distances (a rank correlation needs 3 pairs that vary)."
        )
    return (
        f"Mantel r = {row['mantel_r']:.3f} (Spearman, over {row['n_pairs']} pairs of "
        f"{row['n_models']} models), one-sided permutation p = {row['p_value']:.3f} "
        f"({row['n_permutations']} relabellings)"
    )


def similarity_scatter_figure(pairs: pl.DataFrame, measure: str, caption: str) -> go.Figure:
    """Concept distance against the measure's geometric distance, one point per model pair."""
    part = pairs.filter(
        (pl.col("measure") == measure)
        & pl.col("geometric_distance").is_not_null()
        & pl.col("concept_distance").is_not_null()
    )
    labels = [f"{a} / {b}" for a, b in part.select("model_a", "model_b").iter_rows()]
    fig = go.Figure(
        go.Scatter(
            x=part["concept_distance"].to_list(),
            y=part["geometric_distance"].to_list(),
            mode="markers",
            text=labels,
            marker={"size": 9, "color": MODEL_CATEGORY_PALETTE[0]},
            hovertemplate="%{text}<br>concept %{x:.3f}<br>geometry %{y:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title={"text": f"Concepts vs geometry<br><sup>{caption}</sup>"},
        xaxis_title="concept distance (cosine of the concept profiles)",
        yaxis_title=SIMILARITY_DISTANCE[measure],
        width=SCATTER_WIDTH,
        height=SCATTER_HEIGHT,
        margin=SCATTER_MARGIN,
        font={"size": FONT_PX},
    )
    return fig


SIMILARITY_PAIR_COLUMNS = ["model_a", "model_b", "concept_distance", "geometric_distance",
                           "concept_rank", "geometric_rank", "rank_gap", "n_images"]  # fmt: skip


def disagreeing_pairs(pairs: pl.DataFrame, measure: str, top: int = 10) -> pl.DataFrame:
    """The pairs the two views rank most differently: each distance's percentile rank among
    the pairs (average ranks for ties), and the gap between them (positive: closer in
    concepts than in geometry)."""
    part = pairs.filter(
        (pl.col("measure") == measure)
        & pl.col("geometric_distance").is_not_null()
        & pl.col("concept_distance").is_not_null()
    )
    if part.is_empty():
        return part.select("model_a", "model_b", "concept_distance", "geometric_distance")
    n = part.height
    ranked = part.with_columns(
        (pl.col("concept_distance").rank("average") / n).alias("concept_rank"),
        (pl.col("geometric_distance").rank("average") / n).alias("geometric_rank"),
    ).with_columns((pl.col("geometric_rank") - pl.col("concept_rank")).alias("rank_gap"))
    return (
        ranked.sort(
            [pl.col("rank_gap").abs(), "model_a", "model_b"], descending=[True, False, False]
        )
        .head(top)
        .select(SIMILARITY_PAIR_COLUMNS)
    )


# --------------------------------------------------------------------------------------------
# Gallery and concepts (issue 13): units as tiles with their top images, masks outlined
# --------------------------------------------------------------------------------------------

OUTLINE_RGB = (255, 0, 255)  # magenta: rare in photographs, clear on dark and light regions
GALLERY_PAGE_SIZE = 24
TILE_IMAGE_PX = 112


def outline_pixels(mask: np.ndarray) -> np.ndarray:
    """The mask's inner boundary: pixels of the mask with a 4-neighbour outside it (the image's
    edge counts as outside, so a mask touching the edge is closed there)."""
    m = np.asarray(mask, dtype=bool)
    p = np.pad(m, 1, constant_values=False)
    interior = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~interior


def unpack_mask(data: bytes, sh: int, sw: int) -> np.ndarray:
    """fct_unit_top_maps.mask as a (sh, sw) bool array (numpy.packbits, row-major)."""
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=sh * sw)
    return bits.reshape(sh, sw).astype(bool)


def outlined_image(path: Path, mask: np.ndarray | None) -> np.ndarray:
    """The probe image as RGB, with the mask's outline drawn in OUTLINE_RGB.

    The outline is computed at label resolution (sh x sw, where the IoU was counted) and drawn
    as blocks of s x s image pixels, s = round(image height / sh) (2 for Broden's 224 px images
    and 112 px labels): the image is resized to (s sh, s sw) when it is not already that size,
    so every label pixel is exactly s x s screen pixels and outline[::s, ::s] is the label-
    resolution outline."""
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB")
        if mask is None:
            return np.asarray(rgb)
        sh, sw = mask.shape
        scale = max(1, round(rgb.height / sh))
        if rgb.size != (sw * scale, sh * scale):
            rgb = rgb.resize((sw * scale, sh * scale), Image.Resampling.BILINEAR)
        out = np.array(rgb)
    edge = np.repeat(np.repeat(outline_pixels(mask), scale, axis=0), scale, axis=1)
    out[edge] = OUTLINE_RGB
    return out


def gallery_units(
    db: Path,
    model: str,
    layer: str,
    concept: str = "",
    categories: Sequence[str] | None = None,
    min_iou: float = 0.0,
) -> pl.DataFrame:
    """A layer's units for the gallery, strongest IoU first (background units last), with how
    many top images each has: filtered by concept (substring), categories and minimum IoU."""
    counts = (
        f"select unit, count(*) as n_images from {TOP_IMAGES} "
        "where model = ? and layer = ? group by unit"
        if table_exists(db, TOP_IMAGES)
        else "select null::integer as unit, 0 as n_images where ? is null and ? is null"
    )
    sql = f"""
        select l.unit, l.concept, l.category, l.iou, l.is_interpretable,
               coalesce(t.n_images, 0) as n_images
        from fct_unit_labels l left join ({counts}) t using (unit)
        where l.model = ? and l.layer = ? and coalesce(l.iou, 0) >= ?
    """
    params: list[Any] = [model, layer, model, layer, float(min_iou)]
    if categories is not None:
        sql += " and list_contains(?, l.category)"
        params.append(list(categories))
    if concept.strip():
        sql += " and contains(lower(l.concept), lower(?))"
        params.append(concept.strip())
    sql += " order by l.concept is null, l.iou desc nulls last, l.unit"
    return query(db, sql, params)


def top_maps_count(db: Path, model: str, layer: str) -> int:
    """How many (unit, image) maps the warehouse holds for a layer (0: no outlines)."""
    if not table_exists(db, "fct_unit_top_maps"):
        return 0
    frame = query(
        db,
        "select count(*) as n from fct_unit_top_maps where model = ? and layer = ?",
        [model, layer],
    )
    return int(frame["n"][0])


def unit_tiles(
    db: Path, probe_dir: str, model: str, layer: str, units: tuple[int, ...]
) -> list[dict[str, Any]]:
    """For each unit given, its top images as RGB arrays with the S > T outline drawn where the
    warehouse holds the mask: dicts of unit, rank, image, max_activation, outlined (bool) and
    pixels (None when the image is not in the probe folder). Cached by the page per file."""
    if not units or not table_exists(db, TOP_IMAGES):
        return []
    with_maps = table_exists(db, "fct_unit_top_maps")
    maps_join = (
        "left join fct_unit_top_maps m using (model, layer, unit, rank)"
        if with_maps
        else "left join (select null::varchar as model, null::varchar as layer, "
        "null::integer as unit, null::integer as rank, null::blob as mask, "
        "null::integer as sh, null::integer as sw where false) m using (model, layer, unit, rank)"
    )
    frame = query(
        db,
        f"""
        select t.unit, t.rank, t.image, t.max_activation, m.mask, m.sh, m.sw
        from {TOP_IMAGES} t {maps_join}
        where t.model = ? and t.layer = ? and list_contains(?, t.unit)
        order by t.unit, t.rank
        """,
        [model, layer, list(units)],
    )
    usable = probe_dir_problem(probe_dir) is None
    tiles = []
    for row in frame.iter_rows(named=True):
        mask = None
        if row["mask"] is not None:
            mask = unpack_mask(row["mask"], int(row["sh"]), int(row["sw"]))
        path = resolve_probe_image(probe_dir, row["image"]) if usable else None
        tiles.append(
            {
                "unit": int(row["unit"]),
                "rank": int(row["rank"]),
                "image": row["image"],
                "max_activation": row["max_activation"],
                "outlined": mask is not None,
                "pixels": None if path is None else outlined_image(path, mask),
            }
        )
    return tiles


def png_bytes(pixels: np.ndarray) -> bytes:
    """An RGB array as PNG (lossless, so the outline keeps its exact colour; fast compression)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def unit_tile_caption(row: dict[str, Any]) -> str:
    """'12: car (object), IoU 0.206' for a gallery tile (no 'None' anywhere)."""
    concept = NO_CONCEPT if row["concept"] is None else row["concept"]
    category = "" if row["category"] is None else f" ({row['category']})"
    iou = "" if row["iou"] is None else f", IoU {row['iou']:.3f}"
    return f"unit {row['unit']}: {concept}{category}{iou}"


def interpretable_concepts(db: Path) -> pl.DataFrame:
    """Every concept some interpretable unit detects (primary layers), with its category, the
    label the pages show ('food (material)' where a name has two categories) and how many
    models have it."""
    frame = query(
        db,
        """
        select concept, category, count(distinct model) as n_models, count(*) as n_units
        from fct_unit_labels where is_interpretable and is_primary_layer
        group by concept, category order by n_models desc, n_units desc, concept, category
        """,
    )
    return frame.with_columns(
        pl.Series(
            "label",
            concept_labels(frame["concept"].to_list(), frame["category"].to_list()),
            dtype=pl.String,
        )
    )


def concept_models(db: Path, concept: str, category: str) -> pl.DataFrame:
    """Every model with interpretable primary-layer units for the concept: how many, their
    share of the model's units, the best IoU and the best unit (ties: lowest unit)."""
    return query(
        db,
        """
        with hits as (
            select model, layer, unit, iou from fct_unit_labels
            where is_interpretable and is_primary_layer and concept = ? and category = ?
        ),
        totals as (
            select model, count(*) as n_model_units from fct_unit_labels
            where is_primary_layer group by model
        )
        select h.model, c.category_label as model_category, any_value(h.layer) as layer,
               count(*) as n_units, count(*) / any_value(t.n_model_units) as unit_share,
               max(h.iou) as best_iou, arg_max(h.unit, (h.iou, -h.unit)) as best_unit
        from hits h join totals t using (model)
        left join dim_model_categories c using (model)
        group by h.model, c.category_label
        order by n_units desc, best_iou desc, h.model
        """,
        [concept, category],
    )


def concept_share_figure(frame: pl.DataFrame, label: str) -> go.Figure:
    """Share of each model's units that detect the concept, one bar per model, coloured by
    model category."""
    order = frame.sort(["unit_share", "model"], descending=[False, True])
    fig = go.Figure()
    fig.add_bar(
        x=(100 * order["unit_share"]).to_list(),
        y=order["model"].to_list(),
        orientation="h",
        marker_color=[model_category_colour(c) for c in order["model_category"].to_list()],
        customdata=order["n_units"].to_list(),
        hovertemplate="%{y}: %{x:.2f}% of its units (%{customdata})<extra></extra>",
    )
    fig.update_layout(
        title=f"Share of each model's units that detect {label}",
        height=max(300, 26 * order.height + 120),
        margin={"l": 10, "r": 10, "t": 60, "b": 50},
        xaxis_title="% of the model's units (primary layer)",
        yaxis={"automargin": True},
        font={"size": FONT_PX},
    )
    return fig


# --------------------------------------------------------------------------------------------
# Export (issue 13): marts and SQL results in full, through DuckDB
# --------------------------------------------------------------------------------------------

EXPORT_MAX_BYTES = 200_000_000  # of the Arrow result an export brings back
EXPORT_FORMATS = {"CSV": ("csv", "text/csv"), "Parquet": ("parquet", "application/octet-stream")}


def export_sql(db: Path, text: str, fmt: str) -> tuple[bytes, int]:
    """The whole result of one guarded query (the SQL page's checks and timeout; no row cap,
    a byte cap of EXPORT_MAX_BYTES) as CSV or Parquet bytes written by DuckDB, and its rows.

    The warehouse connection keeps external access off; DuckDB's COPY writes the result from a
    separate in-memory connection that holds only that result, into a private temporary
    folder."""
    import tempfile

    import duckdb

    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    result = run_sql(db, text, max_rows=2**62, max_bytes=EXPORT_MAX_BYTES)
    table = result.frame.to_arrow()
    extension = EXPORT_FORMATS[fmt][0]
    with tempfile.TemporaryDirectory(prefix="lce-export-") as folder:
        target = Path(folder) / f"result.{extension}"
        with duckdb.connect(":memory:") as conn:
            conn.register("result", table)
            options = "(format parquet)" if extension == "parquet" else "(format csv, header)"
            conn.execute(f"copy result to '{target}' {options}")
        return target.read_bytes(), table.num_rows


def export_mart(db: Path, mart: str, fmt: str) -> tuple[bytes, int]:
    """A whole mart (only the names in MARTS) as CSV or Parquet bytes, as ``export_sql``."""
    if mart not in MARTS:
        raise ValueError(f"unknown mart {mart!r}")
    return export_sql(db, f'select * from "{mart}"', fmt)


FIGURE_FORMATS = ("png", "svg")


def figure_config(fmt: str = "png") -> dict[str, Any]:
    """Plotly's config for the camera button of the chart's toolbar: it downloads the figure,
    drawn in the browser, in ``fmt`` (png or svg: no server-side renderer is needed)."""
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"figure format must be png or svg, not {fmt!r}")
    return {
        "displaylogo": False,
        "toImageButtonOptions": {"format": fmt, "filename": "lce-figure", "scale": 2},
    }
