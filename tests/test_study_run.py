"""`lce study run`: the split, the shard's source (option or SLURM array), and the acceptance
runs: three shards at the same time into one lake equal one sequential run, table by table;
then the plan says done and a second run does no work. Real processes, real lakes, a real build.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from base.errors import LceError
from lce.study.file import load_study
from lce.study.plan import job_lock
from lce.study.run import shard_from, split
from tests.conftest import lce
from tests.study_factory import assert_same_lake, finished, lake_tables, make_study, study_cli
from warehouse.lake import SCHEMAS, file_lock, last_commit


def test_split_is_deterministic_disjoint_and_balanced(tmp_path: Path) -> None:
    path = make_study(tmp_path, models=("alpha", "beta", "gamma"))
    heavy = path.read_text().replace('name = "beta"\n', 'name = "beta"\ncost = 4.0\n')
    path.write_text(heavy)
    jobs = load_study(path).jobs()
    shards = split(jobs, 3)
    labels = [[j.label for j in s] for s in shards]
    # worked by hand: beta's two layers (cost 4 each) first to shards 0 and 1, then the four
    # cost-1 jobs in (model, layer) order to the least loaded shard, ties to the lower index
    assert labels == [
        ["beta block1"],
        ["beta block2"],
        ["alpha block1", "alpha block2", "gamma block1", "gamma block2"],
    ]
    assert split(list(reversed(jobs)), 3) == shards  # the file's order does not matter
    assert sorted(j.label for s in split(jobs, 4) for j in s) == sorted(j.label for j in jobs)


def test_shard_from_option_and_slurm() -> None:
    assert shard_from(None, {}) is None
    assert str(shard_from("1/3", {})) == "1/3"
    slurm = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "3"}
    assert str(shard_from(None, slurm)) == "2/3"
    assert str(shard_from("0/2", slurm)) == "0/2"  # the option wins
    for bad, env in (
        ("3/3", {}),
        ("x/2", {}),
        ("-1/2", {}),
        (None, {**slurm, "SLURM_ARRAY_TASK_ID": "8"}),
    ):
        with pytest.raises(LceError, match="expected I/N|out of range"):
            shard_from(bad, env)


def test_same_shard_twice_refuses_in_one_line(tmp_path: Path) -> None:
    path = make_study(tmp_path / "study", models=("alpha",))
    lake = tmp_path / "lake"
    first = load_study(path).jobs()[0]
    with file_lock(job_lock(lake, first), exclusive=True, wait=False, busy="held"):
        code, out = lce("study", "run", path, "--shard", "0/1", "--lake", lake)
    assert code == 1
    assert "job alpha block1 is running in another process" in out
    assert "error:" in out.splitlines()[-1] and not (lake / "runs").exists()


@pytest.mark.slow
def test_three_shards_at_once_equal_one_sequential_run(tmp_path: Path) -> None:
    path = make_study(tmp_path / "study")
    sharded, sequential = tmp_path / "sharded", tmp_path / "sequential"
    shards = [study_cli("run", path, "--shard", f"{i}/3", "--lake", sharded) for i in range(3)]
    outs = [finished(p) for p in shards]  # all three run at the same time
    assert "shard 0/3 runs 2 of 6 jobs (cost 2 of 6): alpha block1, beta block2" in outs[0]

    code, out = lce("study", "run", path, "--lake", sequential, "--db", tmp_path / "lce.duckdb")
    assert code == 0, out
    assert f"published {(tmp_path / 'lce.duckdb').resolve()}" in out
    assert_same_lake(sharded, sequential)

    code, out = lce("study", "plan", path, "--lake", sharded, "--json")
    assert code == 0 and {r["status"] for r in json.loads(out)} == {"done"}
    before = last_commit(sequential)
    code, out = lce("study", "run", path, "--lake", sequential, "--db", tmp_path / "lce.duckdb")
    assert code == 0, out
    assert "nothing to run: 6 of 6 jobs already done" in out and "nothing to build" in out
    assert last_commit(sequential) == before


@pytest.mark.slow
def test_a_killed_shard_resumes_where_it_stopped(tmp_path: Path) -> None:
    path = make_study(tmp_path / "study", models=("alpha",))
    lake = tmp_path / "lake"
    killed = study_cli("run", path, "--shard", "0/1", "--lake", lake,
                       env={"LCE_TEST_KILL_AT": "commit-staged"})  # fmt: skip
    killed.communicate(timeout=600)
    assert killed.returncode == -9  # killed in its first job's commit: nothing of it landed
    code, out = lce("study", "plan", path, "--lake", lake, "--json")
    assert [r["status"] for r in json.loads(out)] == ["partial", "todo"]
    out = finished(study_cli("run", path, "--shard", "0/1", "--lake", lake))
    assert "alpha block1: 7 units" in out and "alpha block2: 5 units" in out
    reference = tmp_path / "reference"
    finished(study_cli("run", path, "--shard", "0/1", "--lake", reference))
    left, right = lake_tables(lake), lake_tables(reference)
    assert all(left[t].equals(right[t]) for t in SCHEMAS)
