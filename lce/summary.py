"""What a person wants to see after a build: the facts of the warehouse as small frames.

Plain functions (tested without a terminal); the command line renders them with rich.
"""

from __future__ import annotations

from pathlib import Path

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
