"""What a person wants to see after a build: the facts of the warehouse as small frames.

Plain functions (tested without a terminal); the command line renders them with rich. The facts
the explorer shows too (explained variance, build notes, how many correlations survive, the
category stability, the similarity agreement) are the explorer's own queries (``lce.explore``),
re-exported here, so the terminal and the pages cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from lce.explore.embedding import build_notes as build_notes
from lce.explore.embedding import explained_variance as explained_variance
from lce.explore.embedding import stability_summary
from lce.explore.overview import correlation_survival as correlation_survival
from lce.explore.overview import survival_line as survival_line
from lce.explore.similarity import similarity_agreement as agreement_with_permutations
from warehouse.query import query


def models(db: Path) -> pl.DataFrame:
    """The terminal's model table. Narrower than the Overview page's ``models_overview`` (which
    adds percentages, layers and task counts, and names a model without a category 'not
    embedded'): a different view of dim_models, not a copy of its query."""
    return query(
        db,
        """
        select m.model, m.n_interpretable_units as interpretable, m.n_units as units,
               c.category_label as category, m.in_embedding,
               coalesce(m.excluded_reason, '') as excluded_reason
        from dim_models m left join dim_model_categories c using (model)
        order by m.in_embedding desc, c.category_id nulls last, m.model
        """,
    )


def top_loadings(db: Path, per_component: int = 3) -> pl.DataFrame:
    """The concepts with the largest absolute loading on each component."""
    return query(
        db,
        """
        select component, category, concept, loading from fct_component_loadings
        qualify row_number() over (partition by component order by abs(loading) desc) <= ?
        order by component, abs(loading) desc
        """,
        [per_component],
    )


def strongest_correlations(db: Path, limit: int = 8) -> pl.DataFrame:
    return query(
        db,
        """
        select component, task, dataset, metric, n, pearson_r, p_value
        from fct_component_task_correlations where pearson_r is not null
        order by abs(pearson_r) desc, component, task, dataset, metric limit ?
        """,
        [limit],
    )


# ----------------------------------------------------------------------------------------------
# Correlations: only what survives the multiple-testing correction
# ----------------------------------------------------------------------------------------------


def no_task_results_reason(db: Path) -> str | None:
    """Why the task correlation marts are empty, or None when they are not."""
    if query(db, "select count(*) as n from fct_task_benchmarks")["n"][0]:
        return None
    return (
        "no task results in this warehouse (fct_task_benchmarks is empty), so there are no "
        "task correlations: add results with `lce benchmarks add FILE` (or `lce reference load` "
        "for the paper's), then `lce build`"
    )


def significant_correlations(db: Path) -> pl.DataFrame:
    """The component / task correlations that survive the correction, smallest q first, with
    r, its bootstrap 95% interval, p and q."""
    return query(
        db,
        """
        select component as pc, task || ': ' || dataset || ' ' || metric as result, n,
               pearson_r as r, r_lo, r_hi, p_value as p, q_value as q
        from fct_component_task_correlations where significant
        order by q_value, abs(pearson_r) desc, component, task, dataset, metric
        """,
    )


def task_requirements(db: Path) -> pl.DataFrame:
    """What each task family requires: per family, the concept categories (and measure) whose
    correlation with its results survives the correction, the sign, how many of the family's
    results, and the strongest r with its result."""
    return query(
        db,
        """
        with family as (
            select task, count(distinct (dataset, metric))::int as results
            from fct_category_task_correlations group by task
        ),
        kept as (
            select *, row_number() over (
                partition by task, category, measure order by abs(pearson_r) desc, dataset, metric
            ) as rank
            from fct_category_task_correlations where significant
        )
        select k.task, k.category, k.measure,
               case when bool_and(k.pearson_r > 0) then '+'
                    when bool_and(k.pearson_r < 0) then '-' else '+/-' end as sign,
               count(*)::int || ' of ' || any_value(f.results) as results,
               max(k.pearson_r) filter (where k.rank = 1) as strongest_r,
               max(k.dataset || ' ' || k.metric) filter (where k.rank = 1) as at
        from kept k join family f using (task)
        group by k.task, k.category, k.measure
        order by k.task, max(abs(k.pearson_r)) desc, k.category, k.measure
        """,
    )


def least_stable_models(db: Path, limit: int = 3) -> pl.DataFrame:
    """The models whose category membership the unit bootstrap moves most (lowest stability)."""
    return query(
        db,
        """
        select model, category_label as category, stability from dim_model_categories
        where stability is not null order by stability, model limit ?
        """,
        [limit],
    )


def stability_lines(db: Path) -> list[str]:
    """Two plain sentences for `lce summary` (none without a bootstrap)."""
    verdict = stability_summary(db)
    if verdict is None:
        return []
    lines = [
        f"Category stability over {verdict['resamples']} unit-bootstrap resamples: the "
        f"categories come back exactly in {100 * verdict['share_same']:.0f}% of them; adjusted "
        f"Rand index median {verdict['median_ari']:.3f}, 5th percentile {verdict['p5_ari']:.3f}."
    ]
    least = least_stable_models(db)
    if not least.is_empty():
        names = ", ".join(
            f"{r['model']} ({r['category']}, {r['stability']:.3f})"
            for r in least.iter_rows(named=True)
        )
        lines.append(f"Least stable category membership (dim_model_categories.stability): {names}.")
    return lines


def label_stability_line(db: Path) -> str | None:
    """One plain sentence on the leave-one-fold-out labels of the interpretable units of the
    primary layers (fct_unit_label_stability); None when no such unit has fold tallies."""
    row = query(
        db,
        """
        select count(*) as units, count(*) filter (where s.agreement = 1) as kept,
               median(s.iou_se) as median_se, min(s.n_folds) as k_min,
               max(s.n_folds) as k_max, count(distinct s.model) as models
        from fct_unit_label_stability s
        join fct_unit_labels l using (model, layer, unit)
        where l.is_interpretable and l.is_primary_layer
        """,
    ).row(0, named=True)
    if not row["units"]:
        return None
    folds = (
        f"{row['k_min']}" if row["k_min"] == row["k_max"] else f"{row['k_min']} to {row['k_max']}"
    )
    return (
        f"Label stability over {folds} folds of the probe images (each left out in turn): "
        f"{row['kept']} of {row['units']} interpretable primary-layer units ({100 * row['kept'] / row['units']:.0f}%) "
        f"keep their label whichever fold is left out; the median jackknife standard error of a unit's "
        f"best IoU is {row['median_se']:.4f} (fct_unit_label_stability)."
    )


def fold_embedding_line(db: Path) -> str | None:
    """One plain sentence on the leave-one-fold-out profiles and categories: the median
    jackknife standard error of the concept-category shares (fct_profile_fold_intervals; over the
    (model, category) pairs with a unit in some leave-one-out build: a category a model never
    has is 0 without error and would swamp the median) and the
    median adjusted Rand index of the categories without each fold (fct_fold_resamples); None
    when the build has no such rows."""
    row = query(
        db,
        """
        select (select median(share_se) from fct_profile_fold_intervals
                where share > 0 or share_loo_mean > 0) as median_se,
               (select max(n_folds) from fct_profile_fold_intervals) as k,
               (select median(adjusted_rand_index)
                from (select distinct fold, adjusted_rand_index from fct_fold_resamples))
                   as median_ari
        """,
    ).row(0, named=True)
    if row["k"] is None or row["median_ari"] is None:
        return None
    return (
        f"Leaving out each of the {row['k']} folds of the probe images in turn: the median "
        f"jackknife standard error of a model's share of a concept category (over the categories "
        f"where it has units) is {row['median_se'] or 0:.4f} (fct_profile_fold_intervals), "
        f"and the model categories' median "
        f"adjusted Rand index against the published ones is {row['median_ari']:.3f} "
        "(fct_fold_resamples)."
    )


def interpretable_by_rule(db: Path) -> pl.DataFrame:
    """Per model, the primary-layer units each rule keeps: the paper's fixed IoU threshold, and
    the null rule (also above the unit's own null IoU). Empty when no model was extracted with
    --null-permutations."""
    return query(
        db,
        """
        select model, n_units as units, n_interpretable_fixed as fixed_rule,
               n_interpretable_null as null_rule,
               n_interpretable_fixed - n_interpretable_null as removed_by_null
        from dim_models where n_interpretable_null is not null
        order by removed_by_null desc, model
        """,
    )


# ------------------------------------------------------------------------------------- similarity


def similarity_agreement(db: Path) -> pl.DataFrame:
    """Per geometric measure, its agreement with the concept embedding (Mantel r, permutation p,
    models, pairs): the Similarity page's query without the number of relabellings, which the
    terminal's table leaves out. Empty when the lake had no image features."""
    return agreement_with_permutations(db).drop("n_permutations", strict=False)


def similarity_lines(db: Path) -> list[str]:
    """What `lce summary` and the demo say about the geometric measures beside the agreement
    table: how many pairs were compared, and how many were skipped for too few shared images."""
    counts = query(
        db,
        """
        select count(distinct least(model_a, model_b) || chr(0) || greatest(model_a, model_b))
                   filter (where value is not null) as compared,
               count(distinct least(model_a, model_b) || chr(0) || greatest(model_a, model_b))
                   filter (where value is null and measure = 'linear_cka') as skipped,
               min(n_images) filter (where value is not null) as fewest
        from fct_model_similarity
        """,
    ).row(0, named=True)
    if not counts["compared"] and not counts["skipped"]:
        return []
    lines = [
        f"Geometric similarity: {counts['compared']} model pair(s) compared on the probe images "
        f"they share (at least {counts['fewest'] or 0} images)."
    ]
    if counts["skipped"]:
        lines.append(
            f"{counts['skipped']} pair(s) skipped: fewer shared images than var "
            "similarity_min_images (their fct_model_similarity values are null)."
        )
    return lines


def similarity_skip_warning(db: Path, shown: int = 5) -> str | None:
    """One sentence naming the model pairs `lce build` could not compare by geometry (fewer
    shared probe images than var similarity_min_images), or None."""
    skipped = query(
        db,
        """
        select model_a, model_b, any_value(n_images) as n_images from fct_model_similarity
        where model_a < model_b and measure = 'linear_cka' and value is null
        group by model_a, model_b order by model_a, model_b
        """,
    )
    if skipped.is_empty():
        return None
    names = ", ".join(f"{a} / {b} ({n} images)" for a, b, n in skipped.head(shown).iter_rows())
    if skipped.height > shown:
        names += f" and {skipped.height - shown} more"
    return (
        f"{skipped.height} model pair(s) share too few probe images for the similarity measures "
        f"(var similarity_min_images) and have null values in fct_model_similarity: {names}"
    )


def unit_match_agreement(db: Path) -> pl.DataFrame:
    """Per pair of models whose units were matched (fct_unit_match_agreement, one order): mutual
    best matches, how many have both units labelled, the share with the same concept, the
    label-shuffling baseline and its permutation p; no rows without image features."""
    return query(
        db,
        """
        select model_a, model_b, n_mutual as mutual, n_labelled as labelled,
               n_same_label as same_label, same_label_share as share,
               baseline_mean as baseline, baseline_p95, p_value
        from fct_unit_match_agreement
        where model_a < model_b and n_mutual is not null
        order by share desc nulls last, model_a, model_b
        """,
    )
