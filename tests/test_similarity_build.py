"""`lce build` with image features: the similarity marts against independent computations
(tests/similarity_reference.py), pairs below the minimum, and lakes without features."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from scipy import stats
from scipy.stats import ortho_group

from tests.conftest import lce
from tests.similarity_reference import (
    cka_reference,
    debiased_reference,
    mutual_knn_reference,
    procrustes_reference,
)
from warehouse.lake import write_partition

N_IMAGES = 80
# model -> primary layer in tests/toy_lake.py's lake (tA, tB dissected; p* published)
PRIMARY = {"tA": "l4", "tB": "l4", "p1": "layer4", "p2": "layer4", "p3": "layer4"}


def toy_features() -> dict[str, tuple[list[str], np.ndarray]]:
    """tB is a rotated, scaled, shifted copy of tA; p1 and p2 are independent, p2 on 60 of the
    images (in another order); p3 shares only 30 images with the others (below the minimum)."""
    rng = np.random.default_rng(21)
    names = [f"img/{i:03d}.jpg" for i in range(N_IMAGES)]
    base = rng.standard_normal((N_IMAGES, 12)).astype(np.float32)
    rotation = ortho_group.rvs(12, random_state=22)
    p2_rows = rng.permutation(N_IMAGES)[:60]
    return {
        "tA": (names, base),
        "tB": (names, (2.5 * base @ rotation + 1.0).astype(np.float32)),
        "p1": (names, (base[:, :6] + rng.normal(size=(N_IMAGES, 6))).astype(np.float32)),
        "p2": ([names[i] for i in p2_rows], rng.standard_normal((60, 20)).astype(np.float32)),
        "p3": (names[:30], rng.standard_normal((30, 12)).astype(np.float32)),
    }


def write_features(lake: Path, model: str, layer: str, images: list[str], x: np.ndarray) -> None:
    write_partition(
        lake,
        "image_features",
        {"model": model, "layer": layer},
        pa.table(
            {
                "model": [model] * len(images),
                "layer": [layer] * len(images),
                "image": images,
                "features": [row.tolist() for row in x],
            }
        ),
    )


@pytest.fixture(scope="module")
def similarity_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.toy_lake import make_toy_lake

    home = tmp_path_factory.mktemp("similarity-home")
    make_toy_lake(home / "lake")
    for model, (images, x) in toy_features().items():
        write_features(home / "lake", model, PRIMARY[model], images, x)
    # a non-primary layer is not compared
    write_features(home / "lake", "tA", "l3", *toy_features()["p1"])
    code, out = lce("build", "--lake", home / "lake", "--db", home / "lce.duckdb",
                    "--var", "similarity_k=5", "--var", "similarity_permutations=99")  # fmt: skip
    assert code == 0, out
    (home / "build-output.txt").write_text(out)
    return home


def frame(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def aligned(a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    data = toy_features()
    (ia, xa), (ib, xb) = data[a], data[b]
    shared = sorted(set(ia) & set(ib))
    pa_, pb = {n: i for i, n in enumerate(ia)}, {n: i for i, n in enumerate(ib)}
    return xa[[pa_[n] for n in shared]], xb[[pb[n] for n in shared]]


@pytest.mark.slow
def test_similarity_marts_equal_independent_computations(similarity_home: Path) -> None:
    db = similarity_home / "lce.duckdb"
    rows = frame(
        db,
        "select model_a, model_b, layer_a, layer_b, measure, value, n_images "
        "from fct_model_similarity",
    )
    got = {(r[0], r[1], r[4]): (r[5], r[6]) for r in rows}
    models = sorted(PRIMARY)
    assert {(a, b) for a, b, _ in got} == {(a, b) for a in models for b in models if a != b}
    assert all(r[2] == PRIMARY[r[0]] and r[3] == PRIMARY[r[1]] for r in rows)
    references = {
        "linear_cka": cka_reference,
        "debiased_cka": debiased_reference,
        "procrustes": procrustes_reference,
        "mutual_knn": lambda x, y: mutual_knn_reference(x, y, 5),
    }
    for a in ("tA", "tB", "p1", "p2"):
        for b in ("tA", "tB", "p1", "p2"):
            if a == b:
                continue
            x, y = aligned(a, b)
            for measure, reference in references.items():
                value, n = got[(a, b, measure)]
                assert n == len(x)
                assert value == pytest.approx(reference(x, y), rel=1e-6, abs=1e-7), (a, b, measure)
    assert got[("tA", "tB", "linear_cka")][0] == pytest.approx(1.0, abs=1e-9)
    assert got[("tA", "tB", "procrustes")][0] == pytest.approx(0.0, abs=1e-5)
    assert got[("tA", "p2", "linear_cka")][1] == 60
    # p3 shares at most 30 images (< similarity_min_images = 50): rows there, values null
    for other in ("tA", "tB", "p1", "p2"):
        for measure in references:
            assert got[("p3", other, measure)] == (None, len(aligned("p3", other)[0]))


@pytest.mark.slow
def test_agreement_equals_scipy_and_a_replayed_permutation_test(similarity_home: Path) -> None:
    db = similarity_home / "lce.duckdb"
    distances = {
        (a, b): d for a, b, d in frame(db, "select * from fct_model_distances")
    }  # concept side
    sims = frame(db, "select model_a, model_b, measure, value from fct_model_similarity")
    agreement = {
        r[0]: r[1:]
        for r in frame(
            db,
            "select measure, mantel_r, p_value, n_models, n_pairs, n_permutations "
            "from fct_similarity_agreement",
        )
    }
    assert set(agreement) == {"linear_cka", "debiased_cka", "mutual_knn", "procrustes"}
    models = sorted({a for a, _ in distances} & {r[0] for r in sims})
    n = len(models)
    for measure, (r, p, n_models, n_pairs, n_perm) in agreement.items():
        geo = np.full((n, n), np.nan)
        con = np.full((n, n), np.nan)
        for a, b, m, v in sims:
            if m == measure and v is not None and a in models and b in models:
                geo[models.index(a), models.index(b)] = v if m == "procrustes" else 1 - v
        for (a, b), d in distances.items():
            if a in models and b in models:
                con[models.index(a), models.index(b)] = d
        upper = np.triu_indices(n, 1)
        keep = np.isfinite(geo[upper]) & np.isfinite(con[upper])
        expected = stats.spearmanr(con[upper][keep], geo[upper][keep]).statistic
        assert (n_models, n_pairs, n_perm) == (n, int(keep.sum()), 99)
        assert r == pytest.approx(expected, rel=1e-9)
        draw, hits = np.random.default_rng(0), 0
        for _ in range(99):
            order = draw.permutation(n)
            g = geo[np.ix_(order, order)][upper]
            ok = np.isfinite(g) & np.isfinite(con[upper])
            hits += stats.spearmanr(con[upper][ok], g[ok]).statistic >= expected - 1e-12
        assert p == pytest.approx((1 + hits) / 100), measure


@pytest.mark.slow
def test_published_file_does_not_carry_the_vectors(similarity_home: Path) -> None:
    db = similarity_home / "lce.duckdb"
    columns = frame(
        db,
        "select column_name from information_schema.columns "
        "where table_name = 'stg_image_features'",
    )
    assert [c[0] for c in columns] == ["model", "layer", "image", "n_features"]
    counts = dict(frame(db, "select model, count(*) from stg_image_features group by model"))
    assert counts == {"tA": 160, "tB": 80, "p1": 80, "p2": 60, "p3": 30}
    kinds = dict(frame(db, "select table_name, table_type from information_schema.tables"))
    for mart in ("fct_model_similarity", "fct_similarity_agreement", "stg_image_features"):
        assert kinds.get(mart) == "BASE TABLE", mart
        with duckdb.connect(str(db), read_only=True) as con:
            comments = con.execute(
                "select comment from duckdb_columns() where table_name = $1 union all "
                "select comment from duckdb_tables() where table_name = $1",
                [mart],
            ).fetchall()
        assert comments and all(c[0] for c in comments), mart


@pytest.mark.slow
def test_a_lake_without_features_builds_with_empty_similarity_marts(toy_home: Path) -> None:
    """tests/toy_lake.py's lake has no image_features table, like every lake from
    before the table existed (and the paper's published data)."""
    assert not (toy_home / "lake" / "image_features").exists()
    db = toy_home / "lce.duckdb"
    for table in ("fct_model_similarity", "fct_similarity_agreement", "stg_image_features"):
        assert frame(db, f"select count(*) from {table}") == [(0,)], table


@pytest.mark.parametrize(
    "pair",
    [
        "similarity_k=0",
        "similarity_min_images=3",
        "similarity_permutations=x",
        "similarity_null_permutations=0",
    ],
)
def test_bad_similarity_vars_are_refused_before_dbt(tmp_path: Path, pair: str) -> None:
    code, out = lce("build", "--lake", tmp_path / "lake", "--db", tmp_path / "db.duckdb",
                    "--var", pair)  # fmt: skip
    assert code != 0
    assert pair.split("=")[0] in out and len(out.strip().splitlines()) == 1


@pytest.mark.slow
def test_summary_prints_the_agreement_when_the_tables_exist(
    similarity_home: Path, toy_home: Path
) -> None:
    code, out = lce("summary", "--db", similarity_home / "lce.duckdb")
    assert code == 0, out
    assert "Geometry vs concepts" in out
    assert "6 model pair(s) compared" in out  # tA, tB, p1, p2; p3's four are skipped
    assert "4 pair(s) skipped" in out
    for measure, r in frame(
        similarity_home / "lce.duckdb", "select measure, mantel_r from fct_similarity_agreement"
    ):
        assert measure in out and f"{r:.3f}"[:5] in out
    code, out = lce("summary", "--db", toy_home / "lce.duckdb")
    assert code == 0, out
    assert "Geometry" not in out and "similarity" not in out


# ---------------------------------------------------------------------------- the Similarity page


def open_similarity(monkeypatch: pytest.MonkeyPatch, db: Path, measure: str | None = None):  # type: ignore[no-untyped-def]
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO

    monkeypatch.setenv("LCE_DB", str(db))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/similarity.py").run()
    if measure is not None:
        at.selectbox(key="sim_measure").select(measure).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.slow
def test_similarity_page_shows_both_views_in_one_order(
    similarity_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    db = similarity_home / "lce.duckdb"
    at = open_similarity(monkeypatch, db, "procrustes")
    figures = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]  # type: ignore[attr-defined]
    titles = [f["layout"]["title"]["text"] for f in figures]
    assert titles[0] == "Concept distance (cosine)"
    assert titles[1] == "Procrustes distance (radians)"
    concept, geometric = figures[0]["data"][0], figures[1]["data"][0]
    assert concept["x"] == geometric["x"] == concept["y"] == sorted(PRIMARY, key=concept["x"].index)
    models = concept["x"]
    sql = "select model_a, model_b, value from fct_model_similarity where measure = 'procrustes'"
    expected = {(a, b): v for a, b, v in frame(db, sql)}
    for i, a in enumerate(models):
        for j, b in enumerate(models):
            want = 0.0 if a == b else expected[(a, b)]
            assert geometric["z"][i][j] == (None if want is None else pytest.approx(want))
    # the scatter carries the agreement statistic from the mart
    r, p = frame(
        db, "select mantel_r, p_value from fct_similarity_agreement where measure = 'procrustes'"
    )[0]
    assert f"Mantel r = {r:.3f}" in titles[2] and f"p = {p:.3f}" in titles[2]
    # the pairs that disagree most: percentile ranks recomputed with scipy
    table = at.dataframe[1].value
    concept_d = {(a, b): d for a, b, d in frame(db, "select * from fct_model_distances")}
    pairs = [
        (a, b, expected[(a, b)], concept_d.get((a, b)))
        for (a, b) in expected
        if a < b and expected[(a, b)] is not None and concept_d.get((a, b)) is not None
    ]
    n = len(pairs)
    rc = stats.rankdata([q[3] for q in pairs]) / n
    rg = stats.rankdata([q[2] for q in pairs]) / n
    gaps = sorted(((abs(g - c), a, b) for (a, b, _, _), c, g in zip(pairs, rc, rg, strict=True)),
                  key=lambda t: (-t[0], t[1], t[2]))  # fmt: skip
    assert list(zip(table["model_a"], table["model_b"], strict=True)) == [
        (a, b) for _, a, b in gaps[:10]
    ]
    np.testing.assert_allclose(table["rank_gap"].abs(), [g for g, _, _ in gaps[:10]])


@pytest.mark.slow
def test_similarity_page_explains_a_warehouse_without_features(
    toy_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from lce.explore import NO_FEATURES

    at = open_similarity(monkeypatch, toy_home / "lce.duckdb")
    assert [i.value for i in at.info] == [NO_FEATURES]
    assert not at.get("plotly_chart")
    # a file whose similarity marts are missing although it records this lce's schema (a
    # file cut by hand): the app names the marts and asks for a rebuild; the summary refuses
    old = tmp_path / "old.duckdb"
    old.write_bytes((toy_home / "lce.duckdb").read_bytes())
    with duckdb.connect(str(old)) as con:
        con.execute("drop table fct_similarity_agreement")
        con.execute("drop table fct_model_similarity")
    at = open_similarity(monkeypatch, old)
    assert "fct_model_similarity, fct_similarity_agreement" in at.warning[0].value
    assert "lce build" in at.warning[0].value
    code, out = lce("summary", "--db", old)
    assert code == 1 and "lacks fct_model_similarity" in out, out


@pytest.mark.slow
def test_build_warns_about_the_pairs_it_skipped(similarity_home: Path) -> None:
    out = (similarity_home / "build-output.txt").read_text()
    (line,) = [x for x in out.splitlines() if "share too few probe images" in x]
    assert line.startswith("warning: 4 model pair(s)")
    for other in ("p1", "p2", "tA", "tB"):
        shared = len(aligned("p3", other)[0])
        pair = f"{min('p3', other)} / {max('p3', other)} ({shared} images)"
        assert pair in line, pair
