"""The Concept page: every model with interpretable units for one concept, how many and which
share of its units, and the best unit (its top images come from ``lce.explore.images``)."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import polars as pl

from lce.explore.names import concept_labels
from lce.explore.palette import FONT_PX, model_category_colour
from lce.explore.safe_text import plot_text
from warehouse.query import query


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
        title=f"Share of each model's units that detect {plot_text(label)}",
        height=max(300, 26 * order.height + 120),
        margin={"l": 10, "r": 10, "t": 60, "b": 50},
        xaxis_title="% of the model's units (primary layer)",
        yaxis={"automargin": True},
        font={"size": FONT_PX},
    )
    return fig
