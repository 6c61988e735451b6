"""The Components page: each component's concept loadings, and how each component goes with the
per-category concept counts (fct_component_category_correlations)."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from lce.explore.figures import (
    INTERVAL_HOVER,
    R_LIMIT,
    add_star_bars,
    concept_bar_figure,
    interval_bars,
    interval_data,
)
from lce.explore.names import component_label
from lce.explore.palette import LEGEND, concept_category_colour, concept_category_sort_key
from lce.explore.safe_text import plot_text
from warehouse.query import query


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


def category_correlation_figure(frame: pl.DataFrame) -> go.Figure:
    """Two panels (all units, unique concepts): bars per component, one per concept category,
    with bootstrap intervals; a star marks what survives the Benjamini-Hochberg correction."""
    kinds = ["all units", "unique concepts"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=kinds, shared_yaxes=True)
    for col, kind in enumerate(kinds, start=1):
        part = frame.filter(pl.col("kind") == kind)
        categories = sorted(set(part["category"].to_list()), key=concept_category_sort_key)
        for slot, category in enumerate(categories):
            cat = part.filter(pl.col("category") == category).sort("component")
            group = f"slot{slot}"  # not the name: it is not escaped like the trace's data
            fig.add_bar(
                name=plot_text(category),
                legendgroup=category,
                showlegend=col == 1,
                x=[f"PC{c}" for c in cat["component"].to_list()],
                y=cat["pearson_r"].to_list(),
                error_y=interval_bars(cat),
                offsetgroup=group,
                customdata=interval_data(cat),
                marker_color=concept_category_colour(category),
                hovertemplate="%{x} vs " + plot_text(category) + "<br>" + INTERVAL_HOVER
                + "<extra>" + kind + "</extra>",
                row=1,
                col=col,
            )  # fmt: skip
            add_star_bars(fig, [f"PC{c}" for c in cat["component"].to_list()], cat, group,
                          row=1, col=col)  # fmt: skip
    fig.update_layout(
        barmode="group",
        title={"text": "Correlation of each component with the per-category counts", "y": 0.98},
        height=440,
        margin={"l": 10, "r": 10, "t": 80, "b": 80},
        legend=LEGEND,
    )
    fig.update_yaxes(range=[-R_LIMIT, R_LIMIT], title_text="Pearson r", row=1, col=1)
    return fig
