"""The Overview page: the warehouse's headline numbers, its models, their concept counts, and
how many correlations survive the multiple-testing correction (also `lce summary`'s lines)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import polars as pl

from lce.explore.palette import (
    FONT_PX,
    LEGEND,
    concept_category_colour,
    concept_category_sort_key,
)
from lce.explore.safe_text import plot_text
from warehouse import dbt_vars
from warehouse.query import query


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
            name=plot_text(category),
            y=order,
            x=[by_model.get(model, 0) for model in order],
            orientation="h",
            marker_color=concept_category_colour(category),
            hovertemplate="%{y}<br>" + plot_text(category) + ": %{x}<extra></extra>",
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


# ----------------------------------------------------------------------------------------------
# Correlations: only what survives the multiple-testing correction (shown here and by
# `lce summary`)
# ----------------------------------------------------------------------------------------------

CORRELATION_MARTS = {
    "fct_component_task_correlations": "component / task",
    "fct_category_task_correlations": "concept category / task",
    "fct_concept_task_correlations": "concept / task",
    "fct_component_category_correlations": "component / concept category",
}


def correlation_survival(db: Path) -> pl.DataFrame:
    """Per correlation mart: how many tests it holds (defined p-values), how many survive the
    Benjamini-Hochberg correction, at which q_threshold, over which family, and the smallest q
    (so "none survive" still says how close the best one came)."""
    parts = []
    for table, label in CORRELATION_MARTS.items():
        parts.append(
            query(
                db,
                f"""
                select ? as correlations, count(p_value)::int as tests,
                       count(*) filter (where significant)::int as surviving,
                       max(q_threshold) as q_threshold,
                       case when bool_and(fdr_family = 'build') then 'build' else 'task' end
                           as fdr_family,
                       min(q_value) as smallest_q
                from {table}
                """,
                [label],
            )
        )
    return pl.concat(parts)


def survival_line(row: dict[str, Any]) -> str:
    """'k of N component / task correlations survive Benjamini-Hochberg at q < 0.05 (...)'."""
    family = (
        "corrected over every pair of the table"
        if row["fdr_family"] == "build"
        else "corrected within each task family"
    )
    threshold = row["q_threshold"]
    if threshold is None:
        threshold = dbt_vars.SPEC["q_threshold"].default
    line = (
        f"{row['surviving']} of {row['tests']} {row['correlations']} correlations survive "
        f"Benjamini-Hochberg at q < {threshold:g} ({family})"
    )
    if not row["surviving"] and row["smallest_q"] is not None:
        line += f"; the smallest q is {row['smallest_q']:.3g}"
    return line


def survival_lines(db: Path) -> list[str]:
    """One sentence per correlation table with tests: how many survive the correction."""
    return [
        survival_line(row) for row in correlation_survival(db).iter_rows(named=True) if row["tests"]
    ]
