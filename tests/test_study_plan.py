"""`lce study plan`: each job's status read from the real lake, locks and checkpoints, and
--check loading the models before any work."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from extract.engine import Interrupted, run_extract
from lce.study.file import load_study
from lce.study.plan import job_lock
from tests.conftest import lce
from tests.study_factory import make_study, write_weights
from warehouse.lake import file_lock


def statuses(path: Path, lake: Path) -> dict[tuple[str, str], str]:
    code, out = lce("study", "plan", path, "--lake", lake, "--json")
    assert code == 0, out
    return {(row["model"], row["layer"]): row["status"] for row in json.loads(out)}


def test_done_running_partial_todo(tmp_path: Path) -> None:
    path = make_study(tmp_path / "study")
    lake = tmp_path / "lake"
    study = load_study(path)
    jobs = study.jobs()
    assert set(statuses(path, lake).values()) == {"todo"}

    run_extract(study.extract_config(jobs[0], lake))  # alpha block1, through the engine
    with pytest.raises(Interrupted):  # alpha block2 stops after 2 batches: its checkpoint stays
        run_extract(replace(study.extract_config(jobs[1], lake), stop_after_batches=2))
    with file_lock(job_lock(lake, jobs[2]), exclusive=True, wait=False, busy="held"):
        found = statuses(path, lake)
    assert found == {
        ("alpha", "block1"): "done", ("alpha", "block2"): "partial",
        ("beta", "block1"): "running", ("beta", "block2"): "todo",
        ("gamma", "block1"): "todo", ("gamma", "block2"): "todo",
    }  # fmt: skip
    code, out = lce("study", "plan", path, "--lake", lake)
    assert code == 0, out
    assert "alpha block1  done" in out
    assert "1 of 6 jobs done, 0 running, 5 left (1 partial); finished jobs ran at" in out

    # a changed checkpoint (another sha256) is a new job, not a done one
    write_weights(tmp_path / "study" / "alpha.pt", seed=99)
    assert statuses(path, lake)[("alpha", "block1")] == "todo"


def test_other_settings_in_the_lake_are_a_warning(tmp_path: Path) -> None:
    path = make_study(tmp_path / "study", models=("alpha",))
    lake = tmp_path / "lake"
    study = load_study(path)
    run_extract(study.extract_config(study.jobs()[0], lake))
    other = path.parent / "other.toml"
    other.write_text(path.read_text().replace("quantile = 0.05", "quantile = 0.01"))
    code, out = lce("study", "plan", other, "--lake", lake)
    assert code == 0, out
    assert "alpha block1  todo" in out
    assert "holds a study made with other settings: quantile 0.01 (lake has 0.05)" in out


def test_check_finds_a_missing_layer(tmp_path: Path) -> None:
    path = make_study(tmp_path / "study", models=("alpha",))
    code, out = lce("study", "plan", path, "--lake", tmp_path / "lake", "--check")
    assert code == 0, out
    assert "checked 1 models" in out
    path.write_text(path.read_text().replace('"block2"', '"block3"'))
    code, out = lce("study", "plan", path, "--lake", tmp_path / "lake", "--check")
    assert code == 1
    assert f"{path}: [[models]] 'alpha': layer 'block3' is not a module of the model" in out
    assert len(out.strip().splitlines()) == 1
