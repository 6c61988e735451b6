"""The Embedding page: the models in the Learned Concepts Embedding, their nearest neighbours,
what the build could not compute, and how stable the categories are under the unit bootstrap
(95% intervals of each model's coordinates, category stability, co-assignment)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import polars as pl

from lce.explore.names import component_label
from lce.explore.palette import (
    COLORBAR_PX,
    FONT_PX,
    LEGEND,
    SCATTER_HEIGHT,
    model_category_colour,
)
from lce.explore.safe_text import plot_text
from lce.explore.scatter_text import (
    PLOT_ASPECT,
    add_labelled_points,
    equal_ranges,
    legend_name,
    scatter_layout,
)
from warehouse.query import query


def explained_variance(db: Path) -> pl.DataFrame:
    return query(db, "select * from fct_lce_components order by component")


def build_notes(db: Path) -> pl.DataFrame:
    """What the build could not compute, or capped, and why (fct_build_notes): one sentence per
    row."""
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


def embedding_figure(
    emb: pl.DataFrame,
    x: int,
    y: int,
    evr: dict[int, float],
    highlight: str | None = None,
) -> go.Figure:
    """The LCE in 2-D: any two components, coloured by model category, every model labelled,
    the axes equal-scaled (``set_equal_axes``)."""
    xc, yc = f"pc{x}", f"pc{y}"
    x_range, y_range = equal_ranges(emb[xc].to_list(), emb[yc].to_list(), aspect=PLOT_ASPECT)
    fig = go.Figure()
    add_labelled_points(fig, emb, xc, yc, x_range, y_range)
    if highlight is not None and highlight in emb["model"].to_list():
        row = emb.filter(pl.col("model") == highlight).row(0, named=True)
        fig.add_scatter(
            x=[row[xc]],
            y=[row[yc]],
            mode="markers",
            name=f"{plot_text(highlight)} (highlighted)",
            marker={"size": 26, "color": "rgba(0,0,0,0)", "line": {"width": 3, "color": "red"}},
            hoverinfo="skip",
        )
    scatter_layout(
        fig,
        "Learned Concepts Embedding",
        component_label(x, evr.get(x)),
        component_label(y, evr.get(y)),
    )
    fig.update_xaxes(zeroline=True, zerolinecolor="#DDDDDD")
    fig.update_yaxes(zeroline=True, zerolinecolor="#DDDDDD")
    set_equal_axes(fig, x_range, y_range)
    return fig


def set_equal_axes(
    fig: go.Figure, x_range: tuple[float, float], y_range: tuple[float, float]
) -> None:
    """Ranges from ``equal_ranges``, and y anchored to x's scale so that it stays equal whatever
    plotly does to the plot area (a legend that takes room, a zoom): distances between models are
    what the embedding shows, and unequal axes stretch them."""
    fig.update_xaxes(range=list(x_range))
    fig.update_yaxes(range=list(y_range), scaleanchor="x", scaleratio=1)


CAMERA_EYE_3D = {"x": 1.7, "y": 1.7, "z": 1.1}


def embedding_figure_3d(
    emb: pl.DataFrame, evr: dict[int, float], highlight: str | None = None
) -> go.Figure:
    """The first three components in 3-D, every model labelled (small text: turning the view
    separates labels that overlap from one side), the legend naming each category's models; the
    box is shaped by the data (one unit as long on every axis), not a cube."""
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
            hovertemplate="<b>%{text}</b><extra>" + plot_text(label) + "</extra>",
        )
    if highlight is not None and highlight in emb["model"].to_list():
        row = emb.filter(pl.col("model") == highlight).row(0, named=True)
        fig.add_scatter3d(
            x=[row["pc1"]],
            y=[row["pc2"]],
            z=[row["pc3"]],
            mode="markers+text",
            name=f"{plot_text(highlight)} (highlighted)",
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
            # eye, (1.25, 1.25, 1.25), cut the z title), the whole box in the frame.
            "camera": {"eye": CAMERA_EYE_3D},
            "aspectmode": "data",
        },
    )
    return fig


INTERVAL_COLOUR = "rgba(90,90,90,0.55)"
BOOTSTRAP = "unit bootstrap"
FOLDS = "probe-image folds"
# How each kind of cross is drawn: the unit bootstrap's grey and solid, the probe-image folds'
# orange and dotted (drawn over the grey, so both stay visible where they coincide).
INTERVAL_STYLE: dict[str, dict[str, Any]] = {
    BOOTSTRAP: {"color": INTERVAL_COLOUR, "width": 1.5},
    FOLDS: {"color": "rgba(230,120,0,0.85)", "width": 2.5, "dash": "dot"},
}
INTERVAL_CAPTIONS = {
    BOOTSTRAP: "grey solid crosses, unit bootstrap: each model's units resampled with "
    "replacement, every resample's scores rotated onto these by orthogonal Procrustes, the "
    "2.5% and 97.5% quantiles (fct_lce_intervals)",
    FOLDS: "orange dotted crosses, probe-image folds: each fold of the probe images left out "
    "in turn, the units relabelled without it and the embedding refitted and rotated the same "
    "way, the score +- t(0.975, K - 1) jackknife standard errors (fct_lce_fold_intervals)",
}


def lce_intervals(db: Path) -> pl.DataFrame:
    """95% unit-bootstrap intervals of every model's coordinates (fct_lce_intervals)."""
    return query(db, "select model, component, lo, hi from fct_lce_intervals order by all")


def lce_fold_intervals(db: Path) -> pl.DataFrame:
    """95% leave-one-fold-out jackknife intervals of every model's coordinates over the folds of
    the probe images (fct_lce_fold_intervals; empty without fold tallies)."""
    return query(db, "select model, component, lo, hi from fct_lce_fold_intervals order by all")


def intervals_caption(kinds: list[str]) -> str:
    """What each drawn kind of interval is, in one line."""
    return "95% intervals: " + "; ".join(INTERVAL_CAPTIONS[k] for k in kinds) + "."


def add_intervals(
    fig: go.Figure, emb: pl.DataFrame, intervals: pl.DataFrame, x: int, y: int,
    kind: str = BOOTSTRAP,
) -> go.Figure:  # fmt: skip
    """A cross per model (its 95% interval on each axis) under the points, in one trace named
    and styled by its ``kind`` (BOOTSTRAP or FOLDS); the axes grow to hold the crosses."""
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
        x=xs, y=ys, mode="lines", name=f"95% interval ({kind})", line=INTERVAL_STYLE[kind],
        hoverinfo="skip",
    )  # fmt: skip
    # every cross under the points, this one over the crosses drawn before it
    crosses = [t for t in fig.data if str(t.name or "").startswith("95% interval (")]
    drawn = {id(t) for t in crosses}
    fig.data = (*crosses, *(t for t in fig.data if id(t) not in drawn))
    x_values = [v for t in crosses for v in t.x if v is not None] + emb[xc].to_list()
    y_values = [v for t in crosses for v in t.y if v is not None] + emb[yc].to_list()
    set_equal_axes(fig, *equal_ranges(x_values, y_values, aspect=PLOT_ASPECT))
    return fig


def model_category_stability(db: Path) -> pl.DataFrame:
    """Each embedded model's model category and how stable its membership is under the bootstrap."""
    return query(
        db,
        "select model, category_label, stability from dim_model_categories "
        "order by category_id, model",
    )


def stability_summary(db: Path) -> dict[str, Any] | None:
    """The unit bootstrap's verdict on the model categories (fct_model_category_stability):
    resamples, the median and 5th percentile of the adjusted Rand index, and how often the
    published partition came back exactly. None when the warehouse has no resamples (also `lce
    summary`'s sentence)."""
    row = query(
        db,
        """
        select count(*)::int as resamples,
               median(adjusted_rand_index) as median_ari,
               quantile_cont(adjusted_rand_index, 0.05) as p5_ari,
               avg(same_partition::int) as share_same
        from fct_model_category_stability
        """,
    ).row(0, named=True)
    return row if row["resamples"] else None


def coassignment(db: Path) -> pl.DataFrame:
    """fct_model_category_coassignment with both models' published categories (for the ordering)."""
    return query(
        db,
        """
        select c.model_a, c.model_b, c.share
        from fct_model_category_coassignment c
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
