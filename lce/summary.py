"""What a person wants to see after a build: the facts of the warehouse as small frames.

Plain functions (tested without a terminal); the command line renders them with rich.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from warehouse.query import query


def models(db: Path) -> pl.DataFrame:
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


def explained_variance(db: Path) -> pl.DataFrame:
    return query(db, "select * from fct_lce_components order by component")


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


def build_notes(db: Path) -> pl.DataFrame:
    """What the build could not compute and why (fct_build_notes), one sentence per row.

    A warehouse published before the notes mart existed has none: an empty frame, not an error.
    """
    exists = query(
        db, "select count(*) as n from duckdb_tables() where table_name = 'fct_build_notes'"
    )
    if not exists["n"][0]:
        return pl.DataFrame(schema={"topic": pl.String, "message": pl.String})
    return query(db, "select topic, message from fct_build_notes order by note_id")


# ----------------------------------------------------------------------------------------------
# Correlations: only what survives the multiple-testing correction
# ----------------------------------------------------------------------------------------------

CORRELATION_MARTS = {
    "fct_component_task_correlations": "component / task",
    "fct_category_task_correlations": "concept category / task",
    "fct_concept_task_correlations": "concept / task",
    "fct_component_category_correlations": "component / concept category",
}


def _has_table(db: Path, table: str) -> bool:
    """Whether the file has the correlation table with its q-values (a file built before them
    has none, and the summary then leaves them out instead of failing)."""
    found = query(
        db,
        "select count(*) as n from duckdb_columns() "
        "where table_name = ? and column_name = 'significant'",
        [table],
    )
    return bool(found["n"][0])


def correlation_survival(db: Path) -> pl.DataFrame:
    """Per correlation mart: how many tests it holds (defined p-values), how many survive the
    Benjamini-Hochberg correction, at which q_threshold, over which family, and the smallest q
    (so "none survive" still says how close the best one came)."""
    parts = []
    for table, label in CORRELATION_MARTS.items():
        if not _has_table(db, table):
            continue
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
    if not parts:
        return pl.DataFrame(
            schema={
                "correlations": pl.String,
                "tests": pl.Int32,
                "surviving": pl.Int32,
                "q_threshold": pl.Float64,
                "fdr_family": pl.String,
                "smallest_q": pl.Float64,
            }
        )
    return pl.concat(parts)


def survival_line(row: dict[str, Any]) -> str:
    """'k of N component / task correlations survive Benjamini-Hochberg at q < 0.05 (...)'."""
    family = (
        "corrected over every pair of the table"
        if row["fdr_family"] == "build"
        else "corrected within each task family"
    )
    threshold = row["q_threshold"] if row["q_threshold"] is not None else 0.05
    line = (
        f"{row['surviving']} of {row['tests']} {row['correlations']} correlations survive "
        f"Benjamini-Hochberg at q < {threshold:g} ({family})"
    )
    if not row["surviving"] and row["smallest_q"] is not None:
        line += f"; the smallest q is {row['smallest_q']:.3g}"
    return line


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
    r, its bootstrap 95% interval, p and q (none from a file built before these columns)."""
    if not _has_table(db, "fct_component_task_correlations"):
        return pl.DataFrame()
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
    if not _has_table(db, "fct_category_task_correlations"):
        return pl.DataFrame()
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


def category_stability(db: Path) -> dict[str, Any] | None:
    """The unit bootstrap's verdict on the categories (fct_category_stability): resamples, the
    median and 5th percentile of the adjusted Rand index, and how often the published
    partition came back exactly. None when the warehouse has no resamples."""
    if not _has_column(db, "fct_category_stability", "adjusted_rand_index"):
        return None
    row = query(
        db,
        """
        select count(*)::int as resamples,
               median(adjusted_rand_index) as median_ari,
               quantile_cont(adjusted_rand_index, 0.05) as p5_ari,
               avg(same_partition::int) as share_same
        from fct_category_stability
        """,
    ).row(0, named=True)
    return row if row["resamples"] else None


def least_stable_models(db: Path, limit: int = 3) -> pl.DataFrame:
    """The models whose category membership the unit bootstrap moves most (lowest stability)."""
    if not _has_column(db, "dim_model_categories", "stability"):
        return pl.DataFrame()
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
    verdict = category_stability(db)
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


def _has_column(db: Path, table: str, column: str) -> bool:
    """A file built before the bootstrap marts has neither; the summary then says nothing."""
    found = query(
        db,
        "select count(*) as n from duckdb_columns() where table_name = ? and column_name = ?",
        [table, column],
    )
    return bool(found["n"][0])


def interpretable_by_rule(db: Path) -> pl.DataFrame:
    """Per model, the primary-layer units each rule keeps: the paper's fixed IoU threshold, and
    the null rule (also above the unit's own null IoU). Empty when no model was extracted with
    --null-permutations, or the file predates the columns."""
    if not _has_column(db, "dim_models", "n_interpretable_null"):
        return pl.DataFrame()
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


# ---------------------------------------------------------------------------- similarity (issue 14)


def similarity_agreement(db: Path) -> pl.DataFrame:
    """Per geometric measure, its agreement with the concept embedding (fct_similarity_agreement:
    Mantel r, permutation p, models). Empty when the file has no such mart (built before it) or
    the lake had no image features."""
    if not _has_column(db, "fct_similarity_agreement", "mantel_r"):
        return pl.DataFrame()
    return query(
        db,
        """
        select measure, mantel_r, p_value, n_models, n_pairs
        from fct_similarity_agreement
        order by case measure when 'linear_cka' then 1 when 'debiased_cka' then 2
                 when 'mutual_knn' then 3 else 4 end
        """,
    )


def similarity_lines(db: Path) -> list[str]:
    """What `lce summary` and the demo say about the geometric measures beside the agreement
    table: how many pairs were compared, and how many were skipped for too few shared images."""
    if not _has_column(db, "fct_model_similarity", "n_images"):
        return []
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
    if not _has_column(db, "fct_model_similarity", "n_images"):
        return None
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
