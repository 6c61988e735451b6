"""Read-only access to a published warehouse, with polars frames out.

Connections are short-lived and read-only, so a reader never blocks `lce build` and always sees
one whole published file. External access is off by default: a query can read the marts but no
other file, and cannot ATTACH, COPY or INSTALL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from base.errors import LceError

MARTS = (
    "dim_study",
    "dim_runs",
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
    "fct_model_category_coassignment",
    "fct_model_category_stability",
    "fct_lce_intervals",
    "fct_explained_variance_intervals",
    "fct_model_similarity",
    "fct_similarity_agreement",
    "fct_task_prediction",
    "fct_sensitivity",
    "fct_unit_top_images",
    "fct_unit_top_maps",
    "fct_unit_top_concepts",
    "fct_unit_matches",
    "fct_unit_match_agreement",
    "fct_unit_label_stability",
    "fct_profile_fold_intervals",
    "fct_lce_fold_intervals",
    "fct_fold_resamples",
)


@contextmanager
def connect(db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection with external access off (see the module docstring)."""
    if not Path(db).is_file():
        raise LceError(f"{db}: no published warehouse here (run `lce build` first)")
    config: dict[str, str | bool | int | float | list[str]] = {"enable_external_access": False}
    conn = duckdb.connect(str(db), read_only=True, config=config)
    try:
        yield conn
    finally:
        conn.close()


SQL_MEMORY_LIMIT = "1GB"  # a user query's working memory; LCE_SQL_MEMORY_LIMIT overrides it


def guarded_config() -> dict[str, str | bool | int | float | list[str]]:
    """The configuration of a connection that runs typed queries: read-only, no external access,
    a bounded memory limit (DuckDB's default is 80% of the machine's memory), no spilling to a
    temporary folder (beside the published file), and the configuration locked so no query can
    SET it back."""
    return {
        "enable_external_access": False,
        "memory_limit": os.environ.get("LCE_SQL_MEMORY_LIMIT", SQL_MEMORY_LIMIT),
        "temp_directory": "",
        "max_temp_directory_size": "0B",
        "lock_configuration": True,
    }


def query(db: Path, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
    """Run one read-only query and return its result as a polars frame."""
    with connect(db) as conn:
        return conn.execute(sql, params or []).pl()
