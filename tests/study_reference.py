"""dim_study recomputed without the warehouse's code: from the lake's Parquet files (pyarrow),
the dbt project's var defaults (its YAML) and the vars a build was given. Shared by
tests/test_provenance.py and tests/test_old_release.py."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import yaml

from tests.conftest import REPO

VARS = yaml.safe_load((REPO / "dbt_project" / "dbt_project.yml").read_text())["vars"]


def lake_rows(lake: Path, table: str) -> list[dict[str, Any]]:
    """Every row of a lake table, read file by file; the partition's value from its folder."""
    rows = []
    for path in sorted((lake / table).glob("**/*.parquet")):
        for row in pq.read_table(path).to_pylist():
            folder = path.parent.name
            if folder.startswith("source="):
                row["source"] = folder.removeprefix("source=")
            rows.append(row)
    return rows


def shared(values: list[Any]) -> Any:
    """The value every run has, else None (dim_study's rule for numbers)."""
    return values[0] if values and None not in values and len(set(values)) == 1 else None


def joined(values: list[Any]) -> str | None:
    kept = sorted({v for v in values if v is not None})
    return "; ".join(kept) if kept else None


def expected_study(lake: Path, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every dim_study column but built_at, from the lake and the vars."""
    runs = lake_rows(lake, "runs")
    settings = [json.loads(r["settings"]) for r in runs]
    var = {**VARS, **(given or {})}
    exclusions = sorted({r["model"] for r in lake_rows(lake, "model_exclusions")})
    commit = lake / ".last-commit"
    return {
        "schema_version": json.loads((REPO / "tests/data/mart_signature.json").read_text())[
            "schema_version"
        ],
        "lake_commit": commit.read_text().strip() if commit.exists() else None,
        "dbt_version": version("dbt-core"),
        "duckdb_version": duckdb.__version__,
        "torch_version": joined([r["torch_version"] for r in runs]),
        "n_runs": len(runs),
        "probe": joined([r["probe"] for r in runs]),
        "probe_fingerprint": joined([r["probe_fingerprint"] for r in runs]),
        "n_images": shared([r["n_images"] for r in runs]),
        "quantile": shared([r["quantile"] for r in runs]),
        "basis": joined([r["basis"] for r in runs]),
        "null_permutations": shared([s.get("null_permutations") for s in settings]),
        "null_seed": shared([s.get("null_seed") for s in settings]),
        "label_sources": sorted({r["source"] for r in lake_rows(lake, "unit_labels")}),
        "benchmark_sources": sorted({r["source"] for r in lake_rows(lake, "task_benchmarks")}),
        "interpretable_rule": var["interpretable_rule"],
        "min_iou": var["min_iou"],
        "exclude_models": (
            exclusions if var["exclude_models"] is None else sorted(set(var["exclude_models"]))
        ),
        "exclude_models_from": "lake" if var["exclude_models"] is None else "var",
        "n_components": var["n_components"],
        "n_categories": str(var["n_categories"]),
        "n_boot": var["n_boot"],
        "seed": var["seed"],
        "q_threshold": var["q_threshold"],
        "fdr_family": var["fdr_family"],
        "stability_resamples": var["stability_resamples"],
        "similarity_k": var["similarity_k"],
        "similarity_min_images": var["similarity_min_images"],
        "similarity_permutations": var["similarity_permutations"],
    }


def built_study(db: Path) -> dict[str, Any]:
    """dim_study's one row as Python values, read with DuckDB directly."""
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute("select * from dim_study").fetchall()
        names = [d[0] for d in conn.description or []]
    assert len(rows) == 1, rows
    return dict(zip(names, rows[0], strict=True))
