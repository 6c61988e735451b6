"""The Similarity page: geometry beside concepts (marts from ``warehouse/stats/similarity.py``).

Concept distance and each geometric measure's distance as heatmaps in one model order, concept
against geometry per model pair with the Mantel statistic, and the pairs the two views rank
most differently; a sentence saying why when there is nothing to compare."""

from __future__ import annotations

import math
from pathlib import Path

import plotly.graph_objects as go
import polars as pl

from lce.explore.palette import (
    COLORBAR_PX,
    FONT_PX,
    MODEL_CATEGORY_PALETTE,
    SCATTER_HEIGHT,
    SCATTER_MARGIN,
    SCATTER_WIDTH,
)
from warehouse.query import query

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
    """Per geometric measure, its agreement with the concept embedding (fct_similarity_agreement:
    Mantel r, permutation p, models, pairs, relabellings), measures in a fixed order; no rows
    when the lake had no image features."""
    return query(
        db,
        """
        select measure, mantel_r, p_value, n_models, n_pairs, n_permutations
        from fct_similarity_agreement
        order by case measure when 'linear_cka' then 1 when 'debiased_cka' then 2
                 when 'mutual_knn' then 3 else 4 end
        """,
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
        f"({relabellings_text(row['n_models'], row['n_permutations'])})"
    )


def relabellings_text(n_models: int, used: int) -> str:
    """'all 6 distinct relabellings of 3 models, exact' or '999 random relabellings of 5,040
    distinct': n models have only n! relabellings, so a p over few models is coarse."""
    distinct = math.factorial(n_models) if n_models <= 12 else None
    if used == distinct:
        return f"all {distinct} distinct relabellings of {n_models} models, exact"
    return (
        f"{used} random relabellings of {f'{distinct:,}' if distinct else f'{n_models}!'} distinct"
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
