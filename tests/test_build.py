"""`lce build` on small generated lakes: marts against brute force, atomic publishing, vars.

Each lake is written in the test with the real lake writer (tests/toy_lake.py); dbt really runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from sklearn.decomposition import PCA

from tests.conftest import REPO, lce
from tests.toy_lake import CONCEPTS, N_UNITS, TALLY_LAYERS, make_toy_lake
from warehouse.lake import write_partition


def brute_force_labels(inputs: dict[str, list[tuple]]) -> dict[tuple[str, str, int], tuple]:
    """Best concept per unit by plain loops: highest IoU, ties to the lowest concept id."""
    best: dict[tuple[str, str, int], tuple] = {}
    for model, layers in TALLY_LAYERS.items():
        for layer in layers:
            for unit in range(N_UNITS):
                best[(model, layer, unit)] = (None, None, 0.0)
            chosen: dict[int, tuple[float, int]] = {}
            for _, _, unit, cid, *_, iou in inputs[f"{model}/{layer}"]:
                cur = chosen.get(unit)
                if cur is None or iou > cur[0] or (iou == cur[0] and cid < cur[1]):
                    chosen[unit] = (iou, cid)
            for unit, (iou, cid) in chosen.items():
                best[(model, layer, unit)] = (*CONCEPTS[cid], iou)
    for model, layer, unit, name, category, iou in inputs["published"]:
        best[(model, layer, unit)] = (None, None, iou) if name == "-" else (name, category, iou)
    return best


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[tuple]], str]:
    home = tmp_path_factory.mktemp("toy")
    inputs = make_toy_lake(home / "lake")
    code, out = lce("build", "--lake", home / "lake", "--db", home / "lce.duckdb")
    assert code == 0, out
    return home, inputs, out


@pytest.mark.slow
def test_unit_labels_match_brute_force(toy: tuple[Path, dict, str]) -> None:
    home, inputs, _ = toy
    expected = brute_force_labels(inputs)
    with duckdb.connect(str(home / "lce.duckdb"), read_only=True) as c:
        rows = c.execute(
            "select model, layer, unit, concept, category, iou from fct_unit_labels"
        ).fetchall()
    got = {(m, layer, u): (n, cat, iou) for m, layer, u, n, cat, iou in rows}
    assert set(got) == set(expected)
    for key, (name, category, iou) in expected.items():
        assert got[key][:2] == (name, category), key
        if iou is not None:
            assert got[key][2] == pytest.approx(iou), key


@pytest.mark.slow
def test_profiles_and_lce_match_brute_force(toy: tuple[Path, dict, str]) -> None:
    home, inputs, _ = toy
    labels = brute_force_labels(inputs)
    # primary layers: l4 for the tallied models (layer_order 0), layer4 for published ones
    counts: dict[str, dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
    for (model, layer, _), (name, category, iou) in labels.items():
        if layer in {"l4", "layer4"} and name is not None and iou > 0.04:
            counts[model][(category, name)] += 1
    vocab: dict[str, set[str]] = defaultdict(set)
    for per in counts.values():
        for category, name in per:
            vocab[category].add(name)
    with duckdb.connect(str(home / "lce.duckdb"), read_only=True) as c:
        got = {
            (m, cat, n): (k, w)
            for m, n, cat, k, w in c.execute("select * from fct_concept_profiles").fetchall()
        }
        lce_rows = c.execute("select model, component, value from fct_lce").fetchall()
        in_embedding = {
            m for (m,) in c.execute("select model from dim_models where in_embedding").fetchall()
        }
    expected = {
        (m, cat, n): (k, k / len(vocab[cat]))
        for m, per in counts.items()
        for (cat, n), k in per.items()
    }
    assert set(got) == set(expected)
    for key, (k, w) in expected.items():
        assert got[key][0] == k and got[key][1] == pytest.approx(w)

    models = sorted(in_embedding)
    columns = sorted({key for per in counts.values() for key in per})
    x = np.array([[expected.get((m, cat, n), (0, 0.0))[1] for cat, n in columns] for m in models])
    ref = PCA(n_components=3).fit_transform(x)
    scores = np.zeros_like(ref)
    for m, comp, value in lce_rows:
        scores[models.index(m), comp - 1] = value
    for comp in range(3):
        sign = np.sign(scores[:, comp] @ ref[:, comp])
        np.testing.assert_allclose(scores[:, comp], sign * ref[:, comp], atol=1e-9)


@pytest.mark.slow
def test_models_without_profile_or_benchmarks_are_reported(toy: tuple[Path, dict, str]) -> None:
    home, _, out = toy
    with duckdb.connect(str(home / "lce.duckdb"), read_only=True) as c:
        rows = dict(c.execute("select model, excluded_reason from dim_models").fetchall())
        primary = dict(c.execute("select model, primary_layer from dim_models").fetchall())
    assert rows["ghost"] == "no dissection profile"
    assert primary["tA"] == "l4"
    assert "ghost" in out and "warning" in out
    assert "p3" in out  # profile but no benchmarks


def copy_home(src: Path, dst: Path) -> Path:
    shutil.copytree(src / "lake", dst / "lake")
    shutil.copy(src / "lce.duckdb", dst / "lce.duckdb")
    return dst


@pytest.mark.slow
def test_failed_build_leaves_published_file(toy: tuple[Path, dict, str], tmp_path: Path) -> None:
    home = copy_home(toy[0], tmp_path)
    before = sha(home / "lce.duckdb")
    dup = [("tA", "probe", "shapes", "accuracy", 0.5, True)]
    write_partition(
        home / "lake",
        "task_benchmarks",
        {"source": "clash"},
        pa.table(
            list(zip(*dup, strict=True)),
            names=["model", "task", "dataset", "metric", "value", "higher_is_better"],
        ),
    )
    code, out = lce("build", "--lake", home / "lake", "--db", home / "lce.duckdb")
    assert code != 0
    assert "dbt build failed" in out and "fct_task_benchmarks" in out
    assert sha(home / "lce.duckdb") == before
    assert sorted(p.name for p in home.iterdir() if "build-" in p.name) == []


@pytest.mark.slow
def test_reader_keeps_snapshot_during_rebuild(toy: tuple[Path, dict, str], tmp_path: Path) -> None:
    home = copy_home(toy[0], tmp_path)
    # opened as lce's readers open it (warehouse.query.connect): DuckDB refuses a second
    # connection to one file with another config in the same process, and `lce build` reads
    # the file it published (notes, warnings) in this process
    reader = duckdb.connect(
        str(home / "lce.duckdb"), read_only=True, config={"enable_external_access": False}
    )
    try:
        assert reader.execute("select count(*) from fct_lce_components").fetchone()[0] == 3
        code, out = lce(
            "build", "--lake", home / "lake", "--db", home / "lce.duckdb", "--var", "n_components=2"
        )
        assert code == 0, out
        assert reader.execute("select count(*) from fct_lce_components").fetchone()[0] == 3
    finally:
        reader.close()
    with duckdb.connect(str(home / "lce.duckdb"), read_only=True) as fresh:
        assert fresh.execute("select count(*) from fct_lce_components").fetchone()[0] == 2


@pytest.mark.slow
def test_vars_exclude_and_auto_categories(toy: tuple[Path, dict, str], tmp_path: Path) -> None:
    home = copy_home(toy[0], tmp_path)
    code, out = lce(
        "build", "--lake", home / "lake", "--db", home / "lce.duckdb",
        "--var", "exclude_models=[p1, tB]", "--var", "n_categories=auto", "--var", "min_iou=0.07",
    )  # fmt: skip
    assert code == 0, out
    with duckdb.connect(str(home / "lce.duckdb"), read_only=True) as c:
        reasons = dict(c.execute("select model, excluded_reason from dim_models").fetchall())
        k = c.execute("select count(distinct category_id) from dim_model_categories").fetchone()[0]
        low = c.execute(
            "select count(*) from fct_unit_labels where is_interpretable and iou <= 0.07"
        ).fetchone()[0]
    assert reasons["p1"] == reasons["tB"] == "excluded by var exclude_models"
    assert reasons["p2"] is None
    assert k >= 1 and low == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "pair",
    ["n_components=0", "min_iou=abc", "n_categories=many", "colour=3", "exclude_models={a: 1}"],
)
def test_bad_vars_are_refused(toy: tuple[Path, dict, str], tmp_path: Path, pair: str) -> None:
    code, out = lce(
        "build", "--lake", toy[0] / "lake", "--db", tmp_path / "x.duckdb", "--var", pair
    )
    assert code != 0
    assert "--var" in out and pair.split("=")[0] in out
    assert not (tmp_path / "x.duckdb").exists()


def test_empty_lake_is_a_clear_error(tmp_path: Path) -> None:
    code, out = lce("build", "--lake", tmp_path / "lake", "--db", tmp_path / "lce.duckdb")
    assert code != 0 and "holds no data" in out
    assert not (tmp_path / "lce.duckdb").exists()


@pytest.mark.slow
def test_benchmarks_only_lake_builds_empty_embedding(tmp_path: Path) -> None:
    rows = [("m1", "t", "d", "acc", 1.0, True), ("m2", "t", "d", "acc", 2.0, True)]
    write_partition(
        tmp_path / "lake",
        "task_benchmarks",
        {"source": "s"},
        pa.table(
            list(zip(*rows, strict=True)),
            names=["model", "task", "dataset", "metric", "value", "higher_is_better"],
        ),
    )
    code, out = lce("build", "--lake", tmp_path / "lake", "--db", tmp_path / "lce.duckdb")
    assert code == 0, out
    with duckdb.connect(str(tmp_path / "lce.duckdb"), read_only=True) as c:
        assert c.execute("select count(*) from fct_lce").fetchone()[0] == 0
        reasons = {r for (r,) in c.execute("select excluded_reason from dim_models").fetchall()}
    assert reasons == {"no dissection profile"}


@pytest.mark.slow
def test_dbt_build_runs_directly(toy: tuple[Path, dict, str], tmp_path: Path) -> None:
    """The README's direct command: dbt build --project-dir dbt_project (no lce involved)."""
    shutil.copytree(toy[0] / "lake", tmp_path / "lake")
    dbt = Path(sys.executable).parent / "dbt"
    env = dict(os.environ, LCE_HOME=str(tmp_path))
    env.pop("LCE_DB_PATH", None)
    env.pop("LCE_LAKE", None)
    proc = subprocess.run(
        [str(dbt), "build", "--project-dir", "dbt_project", "--profiles-dir", "dbt_project",
         "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:]
    with duckdb.connect(str(tmp_path / "lce.duckdb"), read_only=True) as c:
        assert c.execute("select count(*) from fct_lce").fetchone()[0] > 0


def test_duckdb_major_version_is_pinned() -> None:
    """The shared file is written by DuckDB 1.x (2.x files cannot be read by 1.x)."""
    from importlib.metadata import version

    assert duckdb.__version__.startswith("1.")
    assert version("dbt-duckdb").startswith("1.11")
    assert version("dbt-core").startswith("1.11")
