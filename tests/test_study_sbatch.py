"""`lce study sbatch`: the two SLURM scripts' text, and (SLURM is not on this machine) their
commands run locally with the array's variables set for each task, giving the same lake as one
sequential run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, lce
from tests.study_factory import assert_same_lake, make_study


def sbatch(path: Path, tmp_path: Path, *options: str) -> list[str]:
    code, out = lce("study", "sbatch", path, "--lake", tmp_path / "lake", "--db",
                    tmp_path / "lce.duckdb", *options)  # fmt: skip
    assert code == 0, out
    return out.splitlines()


def test_scripts_text(tmp_path: Path) -> None:
    path = make_study(tmp_path / "study", models=("alpha",))
    out = sbatch(path, tmp_path, "--array", "4", "--gpus-per-task", "2", "--partition", "gpu",
                 "--time", "4:00:00", "--account", "lab", "--extra=--qos=high")  # fmt: skip
    array, build = path.parent / "study-array.sbatch", path.parent / "study-build.sbatch"
    assert out[-2:] == [
        f"ARRAY=$(sbatch --parsable {array})",
        f"sbatch --dependency=afterok:${{ARRAY%%;*}} {build}",
    ]
    text = array.read_text().splitlines()
    assert text[0] == "#!/bin/bash"
    for line in ("#SBATCH --array=0-3", "#SBATCH --gpus-per-task=2", "#SBATCH --partition=gpu",
                 "#SBATCH --time=4:00:00", "#SBATCH --account=lab", "#SBATCH --qos=high"):  # fmt: skip
        assert line in text
    assert text[-1].endswith(
        f"-m torch.distributed.run --standalone --nproc_per_node 2 -m lce.cli study run "
        f"{path.resolve()} --lake {(tmp_path / 'lake').resolve()}"
    )
    text = build.read_text().splitlines()
    assert not any("--array" in x or "--gpus" in x for x in text)
    assert "lake merge" not in build.read_text()
    assert text[-1].endswith(
        f"-m lce.cli study run {path.resolve()} --lake {(tmp_path / 'lake').resolve()} "
        f"--db {(tmp_path / 'lce.duckdb').resolve()}"
    )
    code, out = lce("study", "sbatch", path, "--array", "2", "--extra", "qos=high")
    assert code == 1 and "expected one sbatch option" in out


@pytest.mark.slow
def test_scripts_run_locally_give_the_same_lake(tmp_path: Path) -> None:
    path = make_study(tmp_path / "study")
    sbatch(path, tmp_path, "--array", "3", "--gpus-per-task", "0", "--lake-per-shard")
    env = {**os.environ, "PYTHONPATH": str(REPO), "SLURM_ARRAY_TASK_COUNT": "3",
           "SLURM_ARRAY_TASK_MIN": "10"}  # fmt: skip
    tasks = [
        subprocess.Popen(
            ["bash", str(path.parent / "study-array.sbatch")],
            env={**env, "SLURM_ARRAY_TASK_ID": str(10 + i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for i in range(3)
    ]
    for i, task in enumerate(tasks):
        out, _ = task.communicate(timeout=600)
        assert task.returncode == 0, out
        assert f"shard {i}/3 runs 2 of 6 jobs" in out
    build = subprocess.run(
        ["bash", str(path.parent / "study-build.sbatch")], env=env, capture_output=True,
        text=True, timeout=900,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    assert "merged 6 (model, layer) pair(s)" in build.stdout
    assert (tmp_path / "lce.duckdb").is_file()
    code, out = lce("study", "run", path, "--shard", "0/1", "--lake", tmp_path / "sequential")
    assert code == 0, out
    assert_same_lake(tmp_path / "lake", tmp_path / "sequential")
