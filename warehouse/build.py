"""`lce build`: run dbt into a work file, then publish it over the database by atomic rename.

dbt runs in a subprocess, so every DuckDB connection it opened is gone when it exits; readers of
the published file keep their snapshot (their open inode) and new readers see the new file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import yaml

from lce.errors import LceError
from warehouse.lake import has_data
from warehouse.paths import dbt_project_dir

VARS = (
    "min_iou",
    "exclude_models",
    "n_components",
    "n_categories",
    "n_boot",
    "seed",
    "q_threshold",
    "fdr_family",
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class BuildResult:
    db: Path
    log: Path
    warnings: list[str] = field(default_factory=list)


def parse_vars(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs (values in YAML) -> checked dbt vars."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or key not in VARS:
            raise LceError(f"--var {pair!r}: expected key=value with key one of {', '.join(VARS)}")
        value = yaml.safe_load(text) if text.strip() else None
        result[key] = _check_var(key, value, pair)
    return result


def _check_var(key: str, value: Any, pair: str) -> Any:
    bad = f"--var {pair!r}: "
    if key == "min_iou":
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise LceError(bad + "min_iou must be a number in [0, 1)")
        return float(value)
    if key == "n_components":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LceError(bad + "n_components must be a positive integer")
        return value
    if key == "n_categories":
        if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise LceError(bad + "n_categories must be a positive integer or 'auto'")
        return value
    if key in ("n_boot", "seed"):
        least = 1 if key == "n_boot" else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise LceError(bad + f"{key} must be an integer >= {least}")
        return value
    if key == "q_threshold":
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise LceError(bad + "q_threshold must be a number in (0, 1)")
        return float(value)
    if key == "fdr_family":
        if value not in ("build", "task"):
            raise LceError(bad + "fdr_family must be 'build' or 'task'")
        return value
    # exclude_models: a YAML list or a comma-separated string; [] includes every model.
    if value is None:
        return []
    if isinstance(value, str):
        return [m.strip() for m in value.split(",") if m.strip()]
    if isinstance(value, list) and all(isinstance(m, str) for m in value):
        return value
    raise LceError(bad + "exclude_models must be a list of model names")


def dbt_executable() -> str:
    beside = Path(sys.executable).parent / "dbt"
    if beside.exists():
        return str(beside)
    found = shutil.which("dbt")
    if not found:
        raise LceError("dbt is not installed in this environment (pip install dbt-duckdb)")
    return found


def _failure_summary(output: str) -> str:
    lines = [_ANSI.sub("", line).split("  ", 1)[-1].strip() for line in output.splitlines()]
    for i, line in enumerate(lines):
        if re.search(r"(Error|Failure) in |Compilation Error|Runtime Error|Parsing Error", line):
            detail = next((x for x in lines[i + 1 : i + 4] if x), "")
            return f"{line}: {detail}" if detail else line
    tail = [x for x in lines if x]
    return tail[-1] if tail else "no output"


def build(lake: Path, db: Path, dbt_vars: dict[str, Any] | None = None) -> BuildResult:
    """Build from ``lake`` and publish at ``db``; on any failure ``db`` is left untouched."""
    lake = lake.resolve()
    if not has_data(lake):
        raise LceError(
            f"lake {lake} holds no data: run `lce reference load`, `lce benchmarks add` "
            "or `lce extract` first"
        )
    db = db.resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    work = db.with_name(f".{db.name}.build-{uuid.uuid4().hex[:8]}")
    log = db.with_name(f".{db.stem}.build.log")
    project = dbt_project_dir()
    env = dict(
        os.environ,
        LCE_DB_PATH=str(work),
        LCE_LAKE=str(lake),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
    )
    try:
        with tempfile.TemporaryDirectory(prefix="lce-dbt-") as scratch:
            command = [
                dbt_executable(),
                "--no-use-colors",
                "build",
                "--project-dir", str(project),
                "--profiles-dir", str(project),
                "--target-path", str(Path(scratch) / "target"),
                "--log-path", str(Path(scratch) / "logs"),
                "--vars", json.dumps(dbt_vars or {}),
            ]  # fmt: skip
            proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            log.write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise LceError(
                f"dbt build failed, {db} left as it was: "
                f"{_failure_summary(proc.stdout + proc.stderr)} (full log: {log})"
            )
        # Fold any WAL into the file so the single file is the whole database.
        with duckdb.connect(str(work)) as conn:
            conn.execute("CHECKPOINT")
        Path(f"{db}.wal").unlink(missing_ok=True)
        os.replace(work, db)
    finally:
        work.unlink(missing_ok=True)
        Path(f"{work}.wal").unlink(missing_ok=True)
    return BuildResult(db=db, log=log, warnings=model_warnings(db))


def model_warnings(db: Path) -> list[str]:
    """Benchmarks naming models without a profile, and the reverse: reported, not fatal."""
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute(
            "select model, has_profile, has_benchmarks from dim_models "
            "where not has_profile or not has_benchmarks order by model"
        ).fetchall()
        any_benchmarks = conn.execute("select count(*) from fct_task_benchmarks").fetchone()
    warnings = []
    no_profile = [m for m, profile, _ in rows if not profile]
    no_bench = [m for m, profile, bench in rows if profile and not bench]
    if no_profile:
        warnings.append(
            f"benchmarks name models with no dissection profile: {', '.join(no_profile)}"
        )
    if no_bench and any_benchmarks and any_benchmarks[0]:
        warnings.append(f"models with a profile but no benchmarks: {', '.join(no_bench)}")
    return warnings
