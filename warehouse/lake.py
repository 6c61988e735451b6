"""The Parquet lake: one folder per table, hive-style partitions, each replaced atomically.

Every file carries all of its table's columns (the partition keys included), so readers never
depend on folder names; folders only let a (model, layer) or a source be replaced as a unit.
A partition is written into ``lake/.tmp/`` first and renamed into place, so a reader or a killed
writer never sees half a partition.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

from lce.errors import LceError


def _schema(fields: list[tuple[str, Any]]) -> pa.Schema:
    return pa.schema([pa.field(name, dtype) for name, dtype in fields])


# The lake contract (DESIGN.md "The lake"), plus the repo's additions documented in
# docs/NOTES.md: runs.layer_order / normalize / n_skipped_images / non_strict / settings,
# and the model_exclusions table.
SCHEMAS: dict[str, pa.Schema] = {
    "runs": _schema(
        [
            ("run_id", pa.string()),
            ("model", pa.string()),
            ("layer", pa.string()),
            ("layer_order", pa.int32()),
            ("probe", pa.string()),
            ("probe_fingerprint", pa.string()),
            ("quantile", pa.float64()),
            ("basis", pa.string()),
            ("normalize", pa.string()),
            ("n_images", pa.int64()),
            ("n_skipped_images", pa.int64()),
            ("n_units", pa.int64()),
            ("non_strict", pa.bool_()),
            ("device", pa.string()),
            ("torch_version", pa.string()),
            ("lce_version", pa.string()),
            ("started_at", pa.timestamp("us", tz="UTC")),
            ("seconds", pa.float64()),
            ("settings", pa.string()),
        ]
    ),
    "unit_thresholds": _schema(
        [
            ("model", pa.string()),
            ("layer", pa.string()),
            ("unit", pa.int32()),
            ("threshold", pa.float64()),
            ("act_max", pa.float64()),
            ("act_mean", pa.float64()),
        ]
    ),
    "unit_concept_tally": _schema(
        [
            ("model", pa.string()),
            ("layer", pa.string()),
            ("unit", pa.int32()),
            ("concept_id", pa.int32()),
            ("intersection", pa.int64()),
            ("activation_in_category", pa.int64()),
            ("label_pixels", pa.int64()),
            ("iou", pa.float64()),
        ]
    ),
    "unit_top_images": _schema(
        [
            ("model", pa.string()),
            ("layer", pa.string()),
            ("unit", pa.int32()),
            ("rank", pa.int32()),
            ("image", pa.string()),
            ("max_activation", pa.float64()),
        ]
    ),
    "concepts": _schema(
        [
            ("probe", pa.string()),
            ("concept_id", pa.int32()),
            ("concept", pa.string()),
            ("category", pa.string()),
            ("frequency", pa.int64()),
            ("coverage", pa.float64()),
            ("label_pixels", pa.int64()),
        ]
    ),
    "unit_labels": _schema(
        [
            ("model", pa.string()),
            ("layer", pa.string()),
            ("unit", pa.int32()),
            ("concept", pa.string()),
            ("category", pa.string()),
            ("iou", pa.float64()),
        ]
    ),
    "task_benchmarks": _schema(
        [
            ("model", pa.string()),
            ("task", pa.string()),
            ("dataset", pa.string()),
            ("metric", pa.string()),
            ("value", pa.float64()),
            ("higher_is_better", pa.bool_()),
        ]
    ),
    "model_exclusions": _schema(
        [
            ("model", pa.string()),
            ("reason", pa.string()),
        ]
    ),
}

PARTITION_KEYS: dict[str, tuple[str, ...]] = {
    "runs": ("model", "layer"),
    "unit_thresholds": ("model", "layer"),
    "unit_concept_tally": ("model", "layer"),
    "unit_top_images": ("model", "layer"),
    "concepts": ("probe",),
    "unit_labels": ("source",),
    "task_benchmarks": ("source",),
    "model_exclusions": ("source",),
}


def partition_dir(lake: Path, table: str, keys: Mapping[str, str]) -> Path:
    """The folder of one partition; values are percent-encoded so any model name is a safe path."""
    expected = PARTITION_KEYS[table]
    if tuple(keys) != expected:
        raise ValueError(f"{table} partitions are keyed by {expected}, got {tuple(keys)}")
    path = lake / table
    for key, value in keys.items():
        if not value:
            raise LceError(f"{table}: partition key {key!r} must not be empty")
        path = path / f"{key}={quote(str(value), safe='')}"
    return path


def conform(table: str, data: pa.Table) -> pa.Table:
    """Select and cast ``data`` to the table's contract; a missing column is a clear error."""
    schema = SCHEMAS[table]
    missing = [name for name in schema.names if name not in data.column_names]
    if missing:
        raise LceError(f"lake table {table}: missing column(s) {', '.join(missing)}")
    try:
        return data.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise LceError(f"lake table {table}: cannot cast to the lake schema: {exc}") from exc


def ensure_writable(lake: Path) -> None:
    """Fail before any work when the lake cannot be written."""
    try:
        (lake / ".tmp").mkdir(parents=True, exist_ok=True)
        probe = lake / ".tmp" / f"write-check-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise LceError(f"lake folder {lake} is not writable: {exc.strerror or exc}") from exc


def write_partition(lake: Path, table: str, keys: Mapping[str, str], data: pa.Table) -> Path:
    """Replace one partition with ``data`` atomically (temp folder, then rename)."""
    data = conform(table, data)
    ensure_writable(lake)
    final = partition_dir(lake, table, keys)
    tmp = lake / ".tmp" / uuid.uuid4().hex
    tmp.mkdir(parents=True)
    try:
        pq.write_table(data, tmp / "part-0.parquet", compression="zstd")
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            old = lake / ".tmp" / f"{uuid.uuid4().hex}-old"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def read_table(lake: Path, table: str) -> pa.Table:
    """All partitions of a lake table; an absent table is empty, with the contract's schema."""
    root = lake / table
    files = sorted(root.glob("**/*.parquet")) if root.exists() else []
    if not files:
        return SCHEMAS[table].empty_table()
    return pa.concat_tables([conform(table, pq.read_table(f)) for f in files])


def has_data(lake: Path) -> bool:
    """Whether any table of the lake holds at least one file."""
    return any(
        (lake / table).exists() and any((lake / table).glob("**/*.parquet")) for table in SCHEMAS
    )
