"""Read-only access to a published warehouse, with polars frames out.

Connections are short-lived and read-only, so a reader never blocks `lce build` and always sees
one whole published file. External access is off by default: a query can read the marts but no
other file, and cannot ATTACH, COPY or INSTALL.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from base.errors import LceError

MARTS = (
    "dim_models",
    "fct_unit_labels",
    "fct_concept_profiles",
    "fct_category_profiles",
    "fct_lce",
    "fct_lce_components",
    "dim_model_categories",
    "fct_component_loadings",
    "fct_component_task_correlations",
    "fct_category_task_correlations",
    "fct_concept_task_correlations",
    "fct_component_category_correlations",
    "fct_model_distances",
    "fct_task_benchmarks",
    "fct_build_notes",
    "fct_lce_resamples",
    "fct_category_coassignment",
    "fct_category_stability",
    "fct_lce_intervals",
    "fct_explained_variance_intervals",
    "fct_model_similarity",
    "fct_similarity_agreement",
    "fct_task_prediction",
    "fct_sensitivity",
    "fct_unit_top_images",
    "fct_unit_top_maps",
)


@contextmanager
def connect(db: Path, external_access: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    if not Path(db).is_file():
        raise LceError(f"{db}: no published warehouse here (run `lce build` first)")
    config: dict[str, str | bool | int | float | list[str]] = {
        "enable_external_access": external_access
    }
    conn = duckdb.connect(str(db), read_only=True, config=config)
    try:
        yield conn
    finally:
        conn.close()


def query(db: Path, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
    """Run one read-only query and return its result as a polars frame."""
    with connect(db) as conn:
        return conn.execute(sql, params or []).pl()


def mart(db: Path, name: str) -> pl.DataFrame:
    """A whole mart by name (only the names in MARTS)."""
    if name not in MARTS:
        raise LceError(f"unknown mart {name!r}; expected one of {', '.join(MARTS)}")
    return query(db, f"select * from {name}")


def column_descriptions(db: Path, table: str) -> pl.DataFrame:
    """The dbt descriptions persisted into the file, per column."""
    return query(
        db,
        "select column_name, data_type, comment from duckdb_columns() "
        "where table_name = ? order by column_index",
        [table],
    )
