"""`lce lake merge`: lakes of one study merged in one all-or-nothing commit. The sources are the
toy study (tests/toy_lake.py) cut in two by copying partition folders, so the merge must give
back the very lake they were cut from; and (slow) shards of a real study written with
`lce study run --lake-per-shard` at the same time, merged, equal one sequential run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from lce.study.run import Shard, shard_lake
from tests.conftest import REPO, lce
from tests.study_factory import finished, lake_tables, make_study, study_cli
from tests.toy_lake import make_toy_lake
from warehouse.lake import PARTITION_KEYS, SCHEMAS, last_commit, read_table, write_partition


def cut(whole: Path, part: Path, keep: set[str]) -> Path:
    """A lake holding the partitions of ``whole`` whose first key value is in ``keep``."""
    for table in PARTITION_KEYS:
        root = whole / table
        for folder in sorted(root.glob("*")) if root.exists() else []:
            value = folder.name.partition("=")[2]
            if value in keep:
                shutil.copytree(folder, part / table / folder.name)
    return part


@pytest.fixture
def toy(tmp_path: Path) -> tuple[Path, Path, Path]:
    whole = tmp_path / "whole"
    make_toy_lake(whole)
    a = cut(whole, tmp_path / "a", {"tA", "toy"})
    b = cut(whole, tmp_path / "b", {"tB", "toy", "pub"})  # concepts "toy" in both: same rows
    return whole, a, b


def test_merge_gives_back_the_lake_and_is_idempotent(
    toy: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    whole, a, b = toy
    target = tmp_path / "target"
    code, out = lce("lake", "merge", a, b, "--into", target)
    assert code == 0, out
    assert "merged 3 (model, layer) pair(s)" in out
    expected, got = lake_tables(whole, volatile=True), lake_tables(target, volatile=True)
    assert all(expected[t].equals(got[t]) for t in SCHEMAS)
    state = last_commit(target)
    code, out = lce("lake", "merge", a, b, "--into", target)
    assert code == 0 and "merged 0 (model, layer) pair(s) and 0 other" in out, out
    assert last_commit(target) == state  # nothing committed at all


def _runs_row(lake: Path, model: str, layer: str) -> dict:
    return next(
        r
        for r in read_table(lake, "runs").to_pylist()
        if (r["model"], r["layer"]) == (model, layer)
    )


def _rewrite_run(lake: Path, model: str, layer: str, **changes: object) -> None:
    row = _runs_row(lake, model, layer) | changes
    table = pa.Table.from_pylist([row], schema=SCHEMAS["runs"])
    write_partition(lake, "runs", {"model": model, "layer": layer}, table)


def test_other_weights_refused_unless_replace(toy: tuple[Path, Path, Path], tmp_path: Path) -> None:
    whole, a, b = toy
    target = tmp_path / "target"
    assert lce("lake", "merge", a, b, "--into", target)[0] == 0
    _rewrite_run(a, "tA", "l4", weights_sha256="0" * 64, run_id="other")
    code, out = lce("lake", "merge", a, "--into", target)
    assert code == 1 and len(out.strip().splitlines()) == 1
    assert "tA l4 is in" in out and "with other weights or settings: weights_sha256" in out
    assert _runs_row(target, "tA", "l4")["weights_sha256"] != "0" * 64
    code, out = lce("lake", "merge", a, "--into", target, "--replace")
    assert code == 0 and "merged 1 (model, layer) pair(s)" in out, out
    assert _runs_row(target, "tA", "l4")["weights_sha256"] == "0" * 64


def test_a_source_of_another_study_is_refused(toy: tuple[Path, Path, Path], tmp_path: Path) -> None:
    whole, a, b = toy
    for layer in ("l4", "l3"):
        _rewrite_run(a, "tA", layer, quantile=0.01)
    code, out = lce("lake", "merge", a, b, "--into", tmp_path / "target")
    assert code == 1 and "belongs to another study" in out and "quantile" in out, out
    assert not (tmp_path / "target" / "runs").exists()


@pytest.mark.parametrize(
    "point", ["commit-staged", "commit-committed", "commit-applying", "commit-applied"]
)
def test_a_killed_merge_leaves_the_target_before_or_after(
    toy: tuple[Path, Path, Path], tmp_path: Path, point: str
) -> None:
    whole, a, b = toy
    target = tmp_path / "target"
    assert lce("lake", "merge", a, "--into", target)[0] == 0
    before = lake_tables(target, volatile=True)
    proc = subprocess.run(
        [sys.executable, "-m", "lce.cli", "lake", "merge", str(b), "--into", str(target)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "LCE_TEST_KILL_AT": point},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == -9, proc.stdout + proc.stderr
    # reading recovers: rolled back or rolled forward, never between
    after = lake_tables(target, volatile=True)
    expected = lake_tables(whole, volatile=True)
    rolled_back = all(before[t].equals(after[t]) for t in SCHEMAS)
    rolled_forward = all(expected[t].equals(after[t]) for t in SCHEMAS)
    assert rolled_back == (point == "commit-staged") and rolled_forward != rolled_back
    assert lce("lake", "merge", b, "--into", target)[0] == 0  # the same command finishes it
    assert all(expected[t].equals(lake_tables(target, volatile=True)[t]) for t in SCHEMAS)


@pytest.mark.slow
def test_lake_per_shard_then_merge_equals_one_sequential_run(tmp_path: Path) -> None:
    path = make_study(tmp_path / "study")
    lake = tmp_path / "lake"
    shards = [
        study_cli("run", path, "--shard", f"{i}/3", "--lake", lake, "--lake-per-shard")
        for i in range(3)
    ]
    for proc in shards:
        finished(proc)
    sources = [shard_lake(lake, Shard(i, 3)) for i in range(3)]
    assert all(s.is_dir() for s in sources) and not (lake / "runs").exists()
    code, out = lce("lake", "merge", *sources, "--into", lake)
    assert code == 0 and "merged 6 (model, layer) pair(s)" in out, out
    sequential = tmp_path / "sequential"
    code, out = lce("study", "run", path, "--shard", "0/1", "--lake", sequential)
    assert code == 0, out
    left, right = lake_tables(lake), lake_tables(sequential)
    assert all(left[t].equals(right[t]) for t in SCHEMAS)
    code, out = lce("study", "plan", path, "--lake", lake, "--json")
    assert {r["status"] for r in json.loads(out)} == {"done"}
    # a shard run again after the merge finds its jobs done in the study's lake
    code, out = lce("study", "run", path, "--shard", "1/3", "--lake", lake, "--lake-per-shard")
    assert code == 0 and "nothing to run" in out, out
