"""`lce lake rm --model M [--layer L]` and `lce benchmarks rm SOURCE`: one all-or-nothing lake
commit each. The real command line runs in a subprocess killed (SIGKILL) at every step of the
commit, and the lake then reads as before or as after, never a mix. "After" is computed here by
filtering the lake's rows, not by the code under test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from tests.conftest import REPO, lce
from tests.toy_lake import make_toy_lake
from warehouse.lake import SCHEMAS, read_table, unfinished_commits, write_partition

pytestmark = pytest.mark.slow  # one subprocess per kill step


def run_cli(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The real `lce` in a fresh process, so that SIGKILL really kills it."""
    return subprocess.run(
        [sys.executable, "-m", "lce.cli", *[str(a) for a in args]],
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy lake (tA: l4, l3; tB: l4; labels of p1-p3 in source pub; benchmarks) and a label
    source that mixes tA's layer l3 with another model, so removing tA l3 rewrites it."""
    lake = tmp_path_factory.mktemp("rm") / "lake"
    make_toy_lake(lake)
    labels = pa.table(
        {"model": ["tA", "tA", "p9"], "layer": ["l3", "l4", "l3"], "unit": [0, 0, 0],
         "concept": ["red"] * 3, "category": ["color"] * 3, "iou": [0.1] * 3}
    )  # fmt: skip
    write_partition(lake, "unit_labels", {"source": "extra"}, labels)
    return lake


@pytest.fixture
def lake(pristine: Path, tmp_path: Path) -> Path:
    shutil.copytree(pristine, tmp_path / "lake")
    return tmp_path / "lake"


def state(lake: Path) -> dict[str, list[str]]:
    """Every row of every lake table, as sorted JSON (reading recovers an unfinished commit)."""
    return {
        t: sorted(
            json.dumps(r, sort_keys=True, default=str) for r in read_table(lake, t).to_pylist()
        )
        for t in SCHEMAS
    }


def without(before: dict[str, list[str]], model: str, layer: str | None) -> dict[str, list[str]]:
    """The state with a model's (or layer's) rows gone from every table keyed by model and layer."""
    out = {}
    for table, rows in before.items():
        keyed = {"model", "layer"} <= set(SCHEMAS[table].names)
        out[table] = [
            r for r in rows
            if not (keyed and json.loads(r)["model"] == model
                    and layer in (None, json.loads(r)["layer"]))
        ]  # fmt: skip
    return out


RM_STEPS = ["commit-staged", "commit-committed", "commit-applying", "commit-dropping",
            "commit-applied"]  # fmt: skip


@pytest.mark.parametrize("step", RM_STEPS)
def test_a_kill_at_each_step_of_lake_rm_leaves_before_or_after(lake: Path, step: str) -> None:
    before = state(lake)
    proc = run_cli("lake", "rm", "--model", "tA", "--layer", "l3", "--lake", lake,
                   env={"LCE_TEST_KILL_AT": step})  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    after = without(before, "tA", "l3")
    assert after != before and len(after["unit_labels"]) == len(before["unit_labels"]) - 1
    assert state(lake) == (before if step == "commit-staged" else after)
    assert unfinished_commits(lake) == [] and not list((lake / ".tmp").glob("commit-*"))


@pytest.mark.parametrize("step", ["commit-staged", "commit-committed", "commit-dropping",
                                  "commit-applied"])  # fmt: skip
def test_a_kill_at_each_step_of_benchmarks_rm_leaves_before_or_after(lake: Path, step: str) -> None:
    before = state(lake)
    proc = run_cli("benchmarks", "rm", "toy", "--lake", lake, env={"LCE_TEST_KILL_AT": step})
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    after = {**before, "task_benchmarks": []}  # the toy lake's only benchmark source
    assert before["task_benchmarks"] and state(lake) == (
        before if step == "commit-staged" else after
    )


def test_rm_a_whole_model_and_a_source_and_refuse_what_is_not_there(lake: Path) -> None:
    before = state(lake)
    code, out = lce("lake", "rm", "--model", "tA", "--lake", lake)
    assert code == 0, out
    assert state(lake) == without(before, "tA", None)
    assert not any(lake.glob("*/model=tA"))  # no empty model folders left
    assert "removed tA" in out and "1 unit-label row" not in out  # two rows: tA l3 and l4
    for args, needle in [
        (("lake", "rm", "--model", "tA"), "no model 'tA'; the closest is 'tB'"),
        (("lake", "rm", "--model", "tB", "--layer", "l9"), "model 'tB' has no layer 'l9' (its layers: l4)"),
        (("benchmarks", "rm", "nope"), "no benchmark source 'nope' (sources: toy)"),
    ]:  # fmt: skip
        unchanged = state(lake)
        code, out = lce(*args, "--lake", lake)
        lines = [x for x in out.strip().splitlines() if x.strip()]
        assert code != 0 and len(lines) == 1 and needle in " ".join(out.split()), out
        assert state(lake) == unchanged
    code, out = lce("benchmarks", "rm", "toy", "--lake", lake)
    assert code == 0 and read_table(lake, "task_benchmarks").num_rows == 0, out
