"""What a warehouse file is: how it was made (dim_study), what it holds (dim_runs), its schema
against this lce's, and which DuckDB opens it. `lce info` prints it; the Overview page shows the
same in its "How this warehouse was made" block."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from base import __version__
from base.errors import LceError
from warehouse import schema
from warehouse.query import query

# The settings of dim_study in the order `lce info` lists them (the rest follow as the file has
# them): the schema and versions, the dissection, the build's dbt vars.
RUN_COLUMNS = [
    "model", "layer", "is_primary_layer", "source", "weights_sha256", "device", "torch_version",
    "n_images", "n_skipped_images", "seconds", "started_at",
]  # fmt: skip


def describe(db: Path) -> dict[str, Any]:
    """Everything `lce info --json` prints. Raises LceError for a file that is not an lce
    warehouse; a warehouse of another schema is described as far as its schema allows (its
    dim_study, whose columns any reader can list, and the sentence saying what to do)."""
    path = Path(db).expanduser()
    if not path.is_file():
        raise LceError(f"{path}: no warehouse here (run `lce build`, or give --db FILE)")
    header = schema.duckdb_header(path)
    found = schema.read_schema(path)
    problem = schema.schema_problem(found, path.name)
    study = _study(path) if "dim_study" in found.tables else None
    runs = _runs(path) if problem is None else None
    return {
        "file": str(path.resolve()),
        "size_bytes": path.stat().st_size,
        "schema": {
            "file": found.schema_version,
            "built_by": found.lce_version,
            "this_lce": __version__,
            "this_lce_reads": schema.SCHEMA_VERSION,
            "readable": problem is None,
            "problem": problem,
        },
        "duckdb": {
            "opened_by": header.opened_by,
            "storage_version": header.storage_version,
            "serialization": header.serialization,
            "written_by": header.written_by,
        },
        "study": study,
        "runs": runs,
    }


def _study(db: Path) -> dict[str, Any]:
    """dim_study's one row, every column the file has (so any schema's can be listed)."""
    row = query(db, "select * from dim_study").row(0, named=True)
    return {key: _plain(value) for key, value in row.items()}


def _runs(db: Path) -> list[dict[str, Any]]:
    frame = query(db, f"select {', '.join(RUN_COLUMNS)} from dim_runs order by model, layer")
    return [{k: _plain(v) for k, v in row.items()} for row in frame.iter_rows(named=True)]


def _plain(value: Any) -> Any:
    """JSON-ready: times as ISO text, lists as lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def to_json(info: dict[str, Any]) -> str:
    return json.dumps(info, indent=2, default=str)


def made_lines(info: dict[str, Any], probe_names_only: bool = False) -> list[str]:
    """A few plain sentences: who built the file and how its units were dissected and
    counted. ``probe_names_only`` shows the probe folder's name, not its path on the machine
    that ran the extraction (the explorer shows no paths of that machine)."""
    study = info["study"] or {}
    header = info["duckdb"]
    lines = []
    built = study.get("built_at", "")
    lines.append(
        f"Built by lce {info['schema']['built_by'] or '(not recorded)'} with schema "
        f"{info['schema']['file']}"
        + (f" on {str(built)[:16].replace('T', ' ')} UTC" if built else "")
        + (
            f" with dbt {study['dbt_version']} and DuckDB {study['duckdb_version']}"
            if "dbt_version" in study
            else ""
        )
        + f"; opens with {header['opened_by']}."
    )
    if study.get("lake_commit"):
        lines.append(f"From the lake as of its commit {study['lake_commit']}.")
    if study.get("n_runs"):
        probe = str(study.get("probe") or "")
        if probe_names_only:
            probe = "; ".join(Path(p.split(":", 1)[-1]).name for p in probe.split("; "))
        null = study.get("null_permutations")
        lines.append(
            f"Dissected by lce extract: {study['n_runs']} (model, layer) runs on probe {probe} "
            f"(fingerprint {study.get('probe_fingerprint')}), "
            f"{_or_mixed(study.get('n_images'))} images, top quantile "
            f"{_or_mixed(study.get('quantile'))} on the {study.get('basis')} basis, "
            + (f"{null} null permutations (seed {study.get('null_seed')})" if null else "no null")
            + f", torch {study.get('torch_version')}."
        )
    if study.get("label_sources"):
        lines.append(f"Published unit labels from: {', '.join(study['label_sources'])}.")
    if study.get("benchmark_sources"):
        lines.append(f"Task results from: {', '.join(study['benchmark_sources'])}.")
    if "min_iou" in study:
        excluded = study.get("exclude_models") or []
        lines.append(
            f"Build vars: min_iou {study['min_iou']} (rule {study['interpretable_rule']}), "
            f"exclude_models {excluded} ({study['exclude_models_from']}), n_components "
            f"{study['n_components']}, n_categories {study['n_categories']}, n_boot "
            f"{study['n_boot']}, seed {study['seed']}, q_threshold {study['q_threshold']}, "
            f"fdr_family {study['fdr_family']}, stability_resamples "
            f"{study['stability_resamples']}, similarity_k {study['similarity_k']}, "
            f"similarity_min_images {study['similarity_min_images']}, "
            f"similarity_permutations {study['similarity_permutations']}."
        )
    return lines


def _or_mixed(value: Any) -> str:
    return "(differs between runs)" if value is None else str(value)


def runs_frame(info: dict[str, Any]) -> pl.DataFrame:
    """dim_runs as `describe` read it, for a table."""
    return pl.DataFrame(info["runs"] or [], schema=RUN_COLUMNS if not info["runs"] else None)


def run_line(run: dict[str, Any]) -> str:
    """One (model, layer) of dim_runs in words, every identifier whole."""
    where = f"{run['model']} / {run['layer']}" + (" (primary)" if run["is_primary_layer"] else "")
    if run["source"] != "lce extract":
        return f"{where}: published labels ({run['source']})"
    sha = run["weights_sha256"]
    weights = (
        "weights not recorded" if sha is None
        else "no weights file" if sha == ""
        else f"weights sha256 {sha}"
    )  # fmt: skip
    return (
        f"{where}: lce extract on {run['device']}, torch {run['torch_version']}, "
        f"{run['n_images']} images ({run['n_skipped_images']} skipped), "
        f"{run['seconds']:.1f} s, started {str(run['started_at'])[:16].replace('T', ' ')} UTC; "
        f"{weights}"
    )
