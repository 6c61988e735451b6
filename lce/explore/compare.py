"""The Compare page: two models' concept profiles side by side (what they share, what only one
has, where the weights differ most) and their task results."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import polars as pl

from lce.explore.figures import concept_bar_figure
from lce.explore.safe_text import plot_text
from warehouse.query import query

WEIGHT_DEFINITION = (
    "Weight: a concept's entry in the model's concept profile, the number of the model's "
    "interpretable units that detect it divided by the number of distinct concepts of its "
    "category across all models (the paper's weighting). It is not a share: a concept that "
    "many units detect, in a small category, weighs more than 1."
)


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


def interpretable_units(db: Path, model: str) -> int:
    """The model's interpretable units in its primary layer: the size the cosine distance ignores."""
    frame = query(db, "select n_interpretable_units from dim_models where model = ?", [model])
    return 0 if frame.is_empty() else int(frame["n_interpretable_units"][0])


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
        + f"{plot_text(a)} %{{customdata[0]}}, {plot_text(b)} %{{customdata[1]}}",
        customdata=["units_a", "units_b"],
    )
    fig.update_layout(
        title=f"Profile difference: ← more in {plot_text(b)} | more in {plot_text(a)} →",
        height=max(360, 20 * part.height + 140),
        xaxis_title="profile weight difference (A - B)",
    )
    return fig
