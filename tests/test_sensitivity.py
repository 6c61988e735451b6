"""`lce sensitivity` (real dbt builds into scratch files) and the vars `lce build` refuses
before dbt runs (stability_resamples < 1, n_categories above the lake's models)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from base.errors import LceError
from base.scratch import owned_scratch
from lce import sensitivity
from tests.cli_helpers import cli_env
from tests.conftest import lce
from warehouse import study


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def home(toy_home: Path, tmp_path: Path) -> Path:
    """A private copy of the explorer tests' toy study (lake and published file): no rebuild."""
    shutil.copytree(toy_home / "lake", tmp_path / "lake")
    shutil.copyfile(toy_home / "lce.duckdb", tmp_path / "lce.duckdb")
    return tmp_path


def _frame(db: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).df()


@pytest.mark.slow
def test_sensitivity_grid_published_atomically(home: Path) -> None:
    db = home / "lce.duckdb"
    before = _frame(db, "select * from fct_lce order by model, component")
    assert _frame(db, "select count(*) n from fct_sensitivity")["n"].item() == 0
    code, out = lce(
        "sensitivity", "--lake", home / "lake", "--db", db,
        "--min-iou", "0.04", "--n-components", "3", "--n-categories", "2,3",
    )  # fmt: skip
    assert code == 0, out
    table = _frame(db, "select * from fct_sensitivity order by setting")
    assert table["setting"].tolist() == [1, 2]
    assert table["is_reference"].tolist() == [True, False]
    assert table["n_categories"].tolist() == ["3", "2"]
    # the reference setting is the published build: its numbers, recomputed with scikit-learn
    profiles = _frame(db, "select * from fct_concept_profiles")
    embedded = _frame(db, "select model from dim_models where in_embedding")["model"]
    wide = (
        profiles[profiles["model"].isin(embedded)]
        .pivot_table(index="model", columns=["category", "concept"], values="weight", aggfunc="sum")
        .reindex(
            columns=pd.MultiIndex.from_frame(profiles[["category", "concept"]].drop_duplicates())
        )
        .fillna(0.0)
        .sort_index()
    )
    matrix = wide.to_numpy()
    ratios = PCA(n_components=3, svd_solver="full").fit(matrix).explained_variance_ratio_
    assert table["explained_variance"].tolist() == pytest.approx([ratios.sum()] * 2)
    assert table["n_models"].tolist() == [len(wide)] * 2
    cats = _frame(db, "select model, category_id from dim_model_categories order by model")
    k2 = KMeans(n_clusters=2, n_init=20, random_state=0).fit_predict(matrix)
    assert table["adjusted_rand_index"][0] == 1.0
    expected = adjusted_rand_score(cats["category_id"], k2)
    assert table["adjusted_rand_index"][1] == pytest.approx(expected)
    # the rest of the file is the same, and no work file or scratch folder is left behind
    pd.testing.assert_frame_equal(
        before, _frame(db, "select * from fct_lce order by model, component")
    )
    assert not [p.name for p in home.iterdir() if "sensitivity" in p.name]


def test_sensitivity_refuses_bad_grids_before_building(home: Path) -> None:
    db = home / "lce.duckdb"
    digest = _digest(db)
    for flags, message in [
        (["--min-iou", "0.04,abc"], "min_iou must be a number"),
        (["--n-components", "0"], "n_components must be an integer >= 1"),
        (["--n-categories", "2,99"], "larger than the 5 dissected models"),
        (["--var", "min_iou=0.1"], "set it with the grid's own flag"),
    ]:
        code, out = lce("sensitivity", "--lake", home / "lake", "--db", db, *flags)
        assert code == 1 and message in out, (flags, out)
        assert len(out.strip().splitlines()) == 1, out
    code, out = lce("sensitivity", "--lake", home / "lake", "--db", home / "none.duckdb")
    assert code == 1 and "run `lce build` first" in out
    assert _digest(db) == digest
    assert not (home / ".lce.build.log").exists()  # no dbt ran


def test_publish_refuses_a_file_replaced_meanwhile(home: Path) -> None:
    db = home / "lce.duckdb"
    digest = _digest(db)
    with pytest.raises(LceError, match="replaced while the grid was built"):
        sensitivity.publish(db, [], (0, 0, 0))
    assert _digest(db) == digest
    assert sorted(p.name for p in home.iterdir()) == [".lce.duckdb.lock", "lake", "lce.duckdb"]


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("stability_resamples=0", "stability_resamples must be an integer >= 1"),
        ("stability_resamples=two", "stability_resamples must be an integer >= 1"),
        ("n_categories=6", "n_categories=6: larger than the 5 dissected models"),
    ],
)
def test_build_refuses_vars_before_dbt(home: Path, pair: str, message: str) -> None:
    db = home / "lce.duckdb"
    digest = _digest(db)
    code, out = lce("build", "--lake", home / "lake", "--db", db, "--var", pair)
    assert code == 1 and message in out, out
    assert len(out.strip().splitlines()) == 1, out
    assert _digest(db) == digest
    assert not (home / ".lce.build.log").exists()  # refused before dbt ran


def test_dissected_models_of_the_toy_lake(home: Path) -> None:
    # tA and tB have runs (tallies); p1..p3 published labels; benchmarks alone do not count
    assert study.dissected_models(home / "lake") == {"tA", "tB", "p1", "p2", "p3"}
    study.check_vars_against_lake(home / "lake", {"n_categories": 5})
    study.check_vars_against_lake(home / "lake", {"n_categories": "auto"})


@pytest.mark.slow
def test_a_failing_setting_leaves_the_published_file(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference setting builds for real; the second fails (as a dbt failure would): the
    published file is untouched and no scratch or work file is left."""
    db = home / "lce.duckdb"
    digest = _digest(db)
    real = sensitivity.build_mod.build
    calls: list[dict] = []

    def second_fails(lake: Path, target: Path, dbt_vars: dict, select: tuple) -> object:
        calls.append(dbt_vars)
        if len(calls) == 2:
            raise LceError(f"dbt build failed, {target} left as it was: boom")
        return real(lake, target, dbt_vars, select)

    monkeypatch.setattr(sensitivity.build_mod, "build", second_fails)
    with pytest.raises(
        LceError, match=r"setting min_iou=0.06 n_components=3 k=3: dbt build failed"
    ):
        sensitivity.run(home / "lake", db, min_ious=[0.06], n_components=[3], n_categories=[3])
    assert calls[0]["stability_resamples"] == 1 and calls[1]["min_iou"] == 0.06
    assert _digest(db) == digest
    assert not [p.name for p in home.iterdir() if "sensitivity-" in p.name]


@pytest.mark.slow
def test_the_next_run_removes_the_scratch_a_killed_run_left(home: Path) -> None:
    """A `kill -9` ends no `with` block: the killed run's scratch folder stays beside the file.
    The next run removes it (its owner is gone) and leaves a live process's (this one's)."""
    db = home / "lce.duckdb"
    # one setting, the reference: the run is killed in it, and the next run builds only it
    args = ["sensitivity", "--lake", home / "lake", "--db", db, "--min-iou", "0.04"]
    args += ["--n-categories", "3"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lce.cli", *map(str, args)], env=cli_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    prefix = ".lce.duckdb.sensitivity-scratch-"
    deadline = time.monotonic() + 300
    while not list(home.glob(f"{prefix}*/.setting-1.duckdb.build-*")):  # dbt is writing
        assert time.monotonic() < deadline and proc.poll() is None, "no scratch build began"
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    left = list(home.glob(f"{prefix}*"))
    assert left, "the killed run left no scratch folder"
    with owned_scratch(prefix, home) as live:
        code, out = lce(*args)
        assert code == 0, out
        assert live.is_dir()
    assert not [p.name for p in home.iterdir() if "sensitivity-" in p.name], left


@pytest.mark.slow
def test_sensitivity_on_a_study_of_two_models(tmp_path: Path) -> None:
    """The reference setting is the dbt defaults, whose k = 3 the build caps on two models; the
    default grid leaves out the k above them. A k the user gives is still refused."""
    from tests.small_studies_data import CASES, write_study

    models, dead, _ = CASES["two_models"]
    write_study(tmp_path / "lake", models, dead)
    db = tmp_path / "lce.duckdb"
    assert lce("build", "--lake", tmp_path / "lake", "--db", db)[0] == 0
    args = ["sensitivity", "--lake", tmp_path / "lake", "--db", db, "--min-iou", "0.04"]
    code, out = lce(*args, "--n-categories", "4")  # (3 at 0.04 is the reference itself)
    assert code == 1 and "larger than the 2 dissected models" in out, out
    code, out = lce(*args)
    assert code == 0, out
    table = _frame(db, "select * from fct_sensitivity order by setting")
    # the reference (k = 3, capped) and the default grid's k = 2 (3 and 4 left out)
    assert table["n_categories"].tolist() == ["3", "2"]
    assert table["n_models"].tolist() == [2, 2] and table["k"].tolist() == [2, 2]
    # two models in two categories either way: the partitions agree (scikit-learn's ARI)
    assert table["adjusted_rand_index"].tolist() == [adjusted_rand_score([0, 1], [1, 0])] * 2


@pytest.mark.slow
def test_a_scratch_build_is_the_full_builds_outcome(home: Path, tmp_path: Path) -> None:
    """A setting's scratch file builds only what `read_outcome` reads (and its ancestors), with
    their tests: those tables equal the published build's (same vars), and the marts it reads
    not are left out."""
    from warehouse import build as build_mod

    scratch = tmp_path / "scratch.duckdb"
    build_mod.build(home / "lake", scratch, {}, select=sensitivity.SCRATCH_SELECT)
    with duckdb.connect(str(scratch), read_only=True) as conn:
        built = {
            name for (name,) in conn.execute("select table_name from duckdb_tables()").fetchall()
        }
    assert {"dim_models", "fct_lce_components", "dim_model_categories"} <= built
    assert not {"fct_model_similarity", "fct_unit_matches", "fct_concept_task_correlations"} & built
    for table, key in [
        ("dim_models", "model"),
        ("fct_lce_components", "component"),
        ("dim_model_categories", "model"),
    ]:
        sql = f"select * from {table} order by {key}"
        pd.testing.assert_frame_equal(_frame(scratch, sql), _frame(home / "lce.duckdb", sql))
    assert sensitivity.read_outcome(scratch) == sensitivity.read_outcome(home / "lce.duckdb")
    # the selected models' own tests ran; none on a model left out (it would fail: no table)
    log = scratch.with_name(f".{scratch.stem}.build.log").read_text()
    assert "PASS not_null_columns_dim_models" in log
    assert "fct_model_similarity" not in log
