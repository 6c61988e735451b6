"""The Tasks page: how the components and the concept categories go with downstream results
(r with its bootstrap interval, p, q and whether it survives Benjamini-Hochberg), one result
against one component, and how well the embedding predicts a held-out model's result. The
performance map is in ``lce.explore.performance_map``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import polars as pl

from lce.explore.embedding import embedding
from lce.explore.figures import (
    INTERVAL_HOVER,
    R_LIMIT,
    add_star_bars,
    interval_bars,
    interval_data,
    survives,
)
from lce.explore.names import (
    component_label,
    sort_results,
    task_sort_key,
    task_title,
    with_result_labels,
)
from lce.explore.palette import (
    FONT_PX,
    LEGEND,
    SCATTER_WIDTH,
    component_colour,
    concept_category_sort_key,
)
from lce.explore.safe_text import plot_text
from lce.explore.scatter_text import add_labelled_points, padded_range, scatter_layout
from warehouse.query import query
from warehouse.stats.inference import pearson


def task_families(db: Path) -> list[str]:
    tasks = query(db, "select distinct task from fct_task_benchmarks")["task"].to_list()
    return sorted(tasks, key=task_sort_key)


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
            offsetgroup=f"PC{component}",
            customdata=interval_data(part),
            marker_color=component_colour(component),
            hovertemplate="%{x}<br>" + INTERVAL_HOVER + "<extra>PC" + str(component) + "</extra>",
        )
        add_star_bars(fig, part["result"].to_list(), part, f"PC{component}")
    lower = frame.filter(~pl.col("higher_is_better"))["result"].unique().to_list()
    lower_text = plot_text(", ".join(sorted(lower)))
    subtitle = f"<br><sup>lower is better for: {lower_text}</sup>" if lower else ""
    fig.update_layout(
        barmode="group",
        title=f"Component / task correlations: {plot_text(task_title(task))}{subtitle}",
        height=460,
        margin={"l": 10, "r": 10, "t": 90, "b": 70},  # the tick labels, then the legend
        legend=LEGEND,
        yaxis={"range": [-R_LIMIT, R_LIMIT], "title": "Pearson r"},
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
    (concept category, result) with r, its interval, p, q and whether it survives."""
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
        title=f"Concept categories x {plot_text(task_title(task))} results ({measure}); "
        "* survives the correction",
        height=160 + 45 * max(1, len(categories)),
        margin={"l": 10, "r": 10, "t": 60, "b": 40},
        xaxis={"tickangle": -30},
        yaxis={"autorange": "reversed"},
    )
    return fig


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


def scatter_correlation(points: pl.DataFrame, component: int) -> tuple[float, float]:
    """Pearson r and p of the result against one component over the models drawn: the number
    the page shows beside the scatter and in its title, computed once, with ``warehouse.stats.inference``
    (as the correlation marts compute it)."""
    return pearson(
        np.array(points[f"pc{component}"].to_list()), np.array(points["value"].to_list())
    )


def task_scatter_figure(
    points: pl.DataFrame, component: int, evr: float | None, result: str, metric: str
) -> go.Figure:
    """One result against one component: models coloured by category, fit line, r in the title."""
    xc = f"pc{component}"
    xs, ys = points[xc].to_list(), points["value"].to_list()
    x_range, y_range = padded_range(xs), padded_range(ys)
    fig = go.Figure()
    add_labelled_points(fig, points, xc, "value", x_range, y_range)
    line = fit_line(xs, ys)
    r, p = scatter_correlation(points, component)
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
    scatter_layout(
        fig,
        f"{plot_text(result)} against PC{component} ({r_text})",
        component_label(component, evr),
        plot_text(metric),
    )
    fig.update_xaxes(range=list(x_range))
    fig.update_yaxes(range=list(y_range))
    return fig


PREDICTION_METHODS = ("knn", "ridge", "category")  # the baseline (mean) has skill 0 by definition
PREDICTION_COLOURS = {"knn": "#1B9E77", "ridge": "#D95F02", "category": "#7570B3"}


def task_prediction(db: Path, task: str) -> pl.DataFrame:
    """Leave-one-model-out skill per result of one family: one column per method, with the
    baseline's mean absolute error and the models held out (fct_task_prediction)."""
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
        title=f"Leave-one-model-out skill: {plot_text(task_title(task))}",
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
