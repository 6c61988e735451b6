"""Network Dissection's own views of a model, shared by the explorer's Units page and the static
report (``lce report``): the layer's concept histogram (interpretable units per concept, coloured
by category, most units first: NetDissect's signature figure), interpretable units per category
for every dissected layer side by side, and a unit's runner-up labels (its IoU against its best
concepts, from the tallies, ``fct_unit_top_concepts``)."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import polars as pl

from lce.explore.figures import concept_bar_figure
from lce.explore.names import natural_key
from lce.explore.palette import (
    FONT_PX,
    LEGEND,
    concept_category_colour,
    concept_category_sort_key,
)
from lce.explore.safe_text import plot_text
from warehouse.query import query


def concept_histogram(db: Path, model: str, layer: str) -> pl.DataFrame:
    """(concept, category, units) of one layer: how many of its interpretable units each concept
    labels, most units first, ties by concept name. Every unit of the layer counts."""
    return query(
        db,
        """
        select concept, any_value(category) as category, count(*)::int as units
        from fct_unit_labels
        where model = ? and layer = ? and is_interpretable and concept is not null
        group by concept order by units desc, concept
        """,
        [model, layer],
    )


def concept_histogram_figure(frame: pl.DataFrame, title: str) -> go.Figure:
    """One bar per concept in the frame's order (most units first, top to bottom), coloured and
    legend-grouped by concept category; tall enough that every concept name has a line."""
    fig = concept_bar_figure(frame, "units", "%{y}: %{x} units")
    fig.update_layout(
        title=title,
        height=max(260, 22 * frame.height + 140),
        xaxis_title="interpretable units",
        showlegend=True,
    )
    return fig


def layer_category_counts(db: Path, model: str) -> pl.DataFrame:
    """(layer, category, units, layer_units) for every dissected layer of a model: interpretable
    units per concept category, and the layer's unit count (so a share can be read). Layers in
    name order with numbers compared as numbers, which is depth order for torchvision's names
    (layer1 < layer2 < layer10, features.3 < features.10)."""
    frame = query(
        db,
        """
        with layers as (
            select layer, count(*)::int as layer_units from fct_unit_labels
            where model = ? group by layer
        )
        select l.layer, u.category, count(u.unit)::int as units, l.layer_units
        from layers l
        left join fct_unit_labels u
            on u.model = ? and u.layer = l.layer and u.is_interpretable
            and u.concept is not null
        group by l.layer, u.category, l.layer_units
        """,
        [model, model],
    )
    order = {layer: i for i, layer in enumerate(sorted(set(frame["layer"]), key=natural_key))}
    return (
        frame.with_columns(pl.col("layer").replace_strict(order).alias("_order"))
        .sort(["_order", "category"], nulls_last=True)
        .drop("_order")
    )


def across_layers_figure(frame: pl.DataFrame, model: str) -> go.Figure:
    """Grouped bars: each dissected layer of the model side by side, one bar per concept category
    (interpretable units), the categories in Broden's order and colours."""
    layers = list(dict.fromkeys(frame["layer"].to_list()))
    counted = frame.filter(pl.col("category").is_not_null())
    fig = go.Figure()
    for category in sorted(set(counted["category"].to_list()), key=concept_category_sort_key):
        part = counted.filter(pl.col("category") == category)
        by_layer = dict(zip(part["layer"].to_list(), part["units"].to_list(), strict=True))
        fig.add_bar(
            name=plot_text(category),
            x=layers,
            y=[by_layer.get(layer, 0) for layer in layers],
            marker_color=concept_category_colour(category),
            hovertemplate="%{x}<br>" + plot_text(category) + ": %{y} units<extra></extra>",
        )
    fig.update_layout(
        barmode="group",
        title=f"Interpretable units per concept category, every layer of {plot_text(model)}",
        height=420,
        margin={"l": 10, "r": 10, "t": 90, "b": 50},
        legend=LEGEND,
        yaxis_title="interpretable units",
        xaxis={"type": "category", "tickfont": {"size": FONT_PX}},
    )
    return fig


def runner_ups(db: Path, model: str, layer: str, unit: int) -> pl.DataFrame:
    """The unit's best concepts by IoU (rank 1 is its label, then its runner-up labels), from
    the tallies; empty for a layer known only from precomputed labels, which keep none."""
    return query(
        db,
        """
        select rank, concept, category, iou, intersection, activation_in_category, label_pixels
        from fct_unit_top_concepts
        where model = ? and layer = ? and unit = ? order by rank
        """,
        [model, layer, int(unit)],
    )
