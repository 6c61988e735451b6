"""The unit bootstrap (warehouse.stats.stability) against independent computations.

Procrustes against scipy, the adjusted Rand index against scikit-learn, the whole bootstrap
replayed here with pandas / scikit-learn / scipy from its documented draw order, and the
stability marts of the paper's warehouse recomputed from fct_lce_resamples with numpy.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy.linalg import orthogonal_procrustes
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from warehouse.stats import marts, stability

CATEGORIES = {"object": ["dog", "cat", "car", "tree"], "color": ["red", "blue"], "part": ["leg"]}


def toy_study(seed: int = 3, n_models: int = 6, n_units: int = 40) -> tuple[pd.DataFrame, ...]:
    """fct_unit_labels / fct_concept_profiles / dim_models-shaped frames, profiles by pandas."""
    rng = np.random.default_rng(seed)
    concepts = [(c, cat) for cat, names in CATEGORIES.items() for c in names]
    rows = []
    for m in range(n_models):
        bias = rng.dirichlet(np.ones(len(concepts)) * 0.5)
        for unit in range(n_units):
            concept, category = concepts[rng.choice(len(concepts), p=bias)]
            interpretable = bool(rng.random() < 0.6)
            rows.append((f"m{m}", "l4", unit, concept, category, interpretable, True))
            rows.append((f"m{m}", "l3", unit, concept, category, True, False))  # ignored
    units = pd.DataFrame(
        rows,
        columns=["model", "layer", "unit", "concept", "category", "is_interpretable",
                 "is_primary_layer"],
    )  # fmt: skip
    units = units.sample(frac=1.0, random_state=1)  # row order must not matter
    profiles = _profiles(units)
    models = pd.DataFrame({"model": sorted(units["model"].unique()), "in_embedding": True})
    return units, profiles, models


def _profiles(units: pd.DataFrame) -> pd.DataFrame:
    """fct_concept_profiles' definition, written again with pandas."""
    kept = units[units["is_primary_layer"] & units["is_interpretable"]]
    counts = kept.groupby(["model", "concept", "category"]).size().rename("n_units").reset_index()
    vocab = kept.groupby("category")["concept"].nunique().rename("n_cat")
    counts = counts.join(vocab, on="category")
    counts["weight"] = counts["n_units"] / counts["n_cat"]
    return counts.drop(columns="n_cat")


def _inputs(profiles: pd.DataFrame, models: pd.DataFrame, k: int = 2) -> marts.MartInputs:
    return marts.inputs(3, k, profiles=profiles, models=models)


def test_procrustes_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    for shape in [(13, 3), (5, 2), (4, 4), (7, 1)]:
        a, b = rng.normal(size=shape), rng.normal(size=shape)
        expected, _ = orthogonal_procrustes(a, b)
        np.testing.assert_allclose(stability.procrustes_rotation(a, b), expected, atol=1e-12)
    # rotated and reflected copies are recovered exactly
    a = rng.normal(size=(10, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    np.testing.assert_allclose(a @ q @ stability.procrustes_rotation(a @ q, a), a, atol=1e-12)


def test_adjusted_rand_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    cases = [
        ([0, 0, 1, 1], [1, 1, 0, 0]),
        ([0, 0, 0, 0], [0, 0, 0, 0]),
        ([0, 0, 0, 0], [0, 1, 2, 3]),
        ([0, 1, 2, 3], [3, 2, 1, 0]),
        ([0, 0, 1], [0, 1, 1]),
        ([5], [7]),
    ]
    for _ in range(200):
        n = int(rng.integers(2, 15))
        cases.append((rng.integers(0, 4, n).tolist(), rng.integers(0, 3, n).tolist()))
    for a, b in cases:
        assert stability.adjusted_rand_index(np.array(a), np.array(b)) == pytest.approx(
            adjusted_rand_score(a, b), abs=1e-12
        ), (a, b)


def test_all_units_once_reproduces_the_full_profiles() -> None:
    units, profiles, models = toy_study()
    inputs = _inputs(profiles, models)
    table = stability.unit_columns(inputs, units)
    full = marts.embedding_profiles(inputs).matrix
    for i, cols in enumerate(table.columns):
        counts = np.bincount(cols[cols >= 0], minlength=table.divisor.size)
        np.testing.assert_array_equal(counts / table.divisor, full[i])


def _replay(units: pd.DataFrame, profiles: pd.DataFrame, n: int, seed: int, k: int) -> list:
    """The bootstrap from its documented draw order, with pandas, scikit-learn and scipy."""
    primary = units[units["is_primary_layer"]]
    n_cat = (profiles["n_units"] / profiles["weight"]).groupby(profiles["category"]).first()
    columns = sorted(set(zip(profiles["category"], profiles["concept"], strict=True)))
    models = sorted(primary["model"].unique())
    weights = profiles.set_index(["model", "category", "concept"])["weight"]
    full = np.array([[weights.get((m, c, x), 0.0) for c, x in columns] for m in models])
    full_scores = PCA(n_components=3, svd_solver="full").fit_transform(full)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        matrix = np.zeros_like(full)
        for i, m in enumerate(models):
            rows = primary[primary["model"] == m].sort_values("unit").reset_index(drop=True)
            drawn = rows.iloc[rng.integers(0, len(rows), len(rows))]
            drawn = drawn[drawn["is_interpretable"]]
            for (c, x), count in drawn.groupby(["category", "concept"]).size().items():
                matrix[i, columns.index((c, x))] = count / n_cat[c]
        scores = PCA(n_components=3, svd_solver="full").fit_transform(matrix)
        rotation, _ = orthogonal_procrustes(scores, full_scores)
        labels = KMeans(n_clusters=k, n_init=20, random_state=0).fit_predict(matrix)
        out.append((scores @ rotation, labels))
    return out


def test_bootstrap_replayed_independently() -> None:
    units, profiles, models = toy_study()
    boot = stability.bootstrap(_inputs(profiles, models), units, n_resamples=4, seed=11)
    replay = _replay(units, profiles, 4, 11, k=2)
    assert boot.models == sorted(models["model"])
    for b, (scores, labels) in enumerate(replay):
        np.testing.assert_allclose(boot.scores[b], scores, atol=1e-9)
        assert adjusted_rand_score(boot.labels[b], labels) == 1.0


def test_bootstrap_reproducible_by_seed_and_different_across_seeds() -> None:
    units, profiles, models = toy_study()
    inputs = _inputs(profiles, models)
    a = stability.bootstrap(inputs, units, n_resamples=5, seed=7)
    b = stability.bootstrap(inputs, units, n_resamples=5, seed=7)
    c = stability.bootstrap(inputs, units, n_resamples=5, seed=8)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.allclose(a.scores, c.scores)
    with pytest.raises(ValueError, match="stability_resamples"):
        stability.bootstrap(inputs, units, n_resamples=0, seed=7)


def test_stability_of_a_hand_worked_coassignment() -> None:
    # a, b together in the published partition, c apart; shares from the resamples.
    categories = pd.DataFrame({"model": ["a", "b", "c"], "category_id": [1, 1, 2]})
    share = {("a", "b"): 0.9, ("a", "c"): 0.2, ("b", "c"): 0.4}
    rows = [(x, y, s) for (x, y), s in share.items()] + [(y, x, s) for (x, y), s in share.items()]
    co = pd.DataFrame(rows, columns=["model_a", "model_b", "share"])
    got = stability.model_stability(categories, co)
    assert got["a"] == pytest.approx((0.9 + 0.8) / 2)
    assert got["b"] == pytest.approx((0.9 + 0.6) / 2)
    assert got["c"] == pytest.approx((0.8 + 0.6) / 2)


# ----------------------------------------------------------------------------------------------
# The paper's warehouse (built once per session by conftest's reference_home)
# ----------------------------------------------------------------------------------------------


def _frame(db: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).df()


@pytest.mark.slow
def test_reference_stability_marts_recomputed(reference_home: Path) -> None:
    db = reference_home / "lce.duckdb"
    res = _frame(db, "select * from fct_lce_resamples")
    cats = _frame(db, "select * from dim_model_categories")
    assert res["resample"].nunique() == 200  # the default var stability_resamples
    wide = (
        res[["resample", "model", "category_id"]]
        .drop_duplicates()
        .pivot(index="resample", columns="model", values="category_id")
    )
    # co-assignment shares
    co = _frame(db, "select * from fct_model_category_coassignment")
    for a, b, s in co.itertuples(index=False):
        assert s == pytest.approx(float((wide[a] == wide[b]).mean()))
    assert len(co) == wide.shape[1] ** 2
    # stability: agreement with the published partition, averaged over the other models
    ids = dict(zip(cats["model"], cats["category_id"], strict=True))
    for model, value in zip(cats["model"], cats["stability"], strict=True):
        agree = [
            float(((wide[model] == wide[o]) == (ids[model] == ids[o])).mean())
            for o in ids
            if o != model
        ]
        assert value == pytest.approx(np.mean(agree))
    # adjusted Rand index of each resample, against scikit-learn
    ari = _frame(db, "select * from fct_model_category_stability order by resample")
    full = [ids[m] for m in wide.columns]
    expected = [adjusted_rand_score(full, wide.loc[r].tolist()) for r in ari["resample"]]
    np.testing.assert_allclose(ari["adjusted_rand_index"], expected, atol=1e-12)
    assert (ari["same_partition"] == np.isclose(expected, 1.0)).all()
    # intervals: numpy's linear percentiles of the aligned scores and of the ratios
    iv = _frame(db, "select * from fct_lce_intervals")
    for model, component, lo, hi in iv.itertuples(index=False):
        values = res.loc[(res["model"] == model) & (res["component"] == component), "score"]
        assert (lo, hi) == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])))
    ev = _frame(db, "select * from fct_explained_variance_intervals")
    point = _frame(db, "select * from fct_lce_components")
    for component, lo, hi in ev.itertuples(index=False):
        values = res[res["component"] == component].drop_duplicates("resample")
        ratios = values["explained_variance_ratio"]
        assert (lo, hi) == pytest.approx(tuple(np.percentile(ratios, [2.5, 97.5])))
        ratio = point.loc[point["component"] == component, "explained_variance_ratio"].item()
        assert lo <= ratio <= hi


@pytest.mark.slow
def test_reference_first_resamples_replayed(reference_home: Path) -> None:
    """The warehouse's first resamples equal an independent replay from the published marts."""
    db = reference_home / "lce.duckdb"
    embedded = set(_frame(db, "select model from dim_models where in_embedding")["model"])
    units = _frame(db, "select * from fct_unit_labels")
    units = units[units["model"].isin(embedded)]
    profiles = _frame(db, "select * from fct_concept_profiles")
    k = int(_frame(db, "select max(n_categories) k from dim_model_categories")["k"].item())
    # the profile columns are every concept seen in any model (excluded ones too)
    everyone = profiles[["category", "concept"]].drop_duplicates()
    pad = everyone.assign(model="__pad__", n_units=0, weight=np.nan)
    replay = _replay(units, pd.concat([profiles[profiles["model"].isin(embedded)], pad]), 2, 0, k)
    res = _frame(db, "select * from fct_lce_resamples where resample <= 2")
    for b, (scores, labels) in enumerate(replay, start=1):
        got = res[res["resample"] == b].pivot(index="model", columns="component", values="score")
        np.testing.assert_allclose(got.sort_index().to_numpy(), scores, atol=1e-9)
        part = res[(res["resample"] == b) & (res["component"] == 1)].sort_values("model")
        assert adjusted_rand_score(part["category_id"], labels) == 1.0


NEW_MARTS = [
    "fct_lce_resamples",
    "fct_model_category_coassignment",
    "fct_model_category_stability",
    "fct_lce_intervals",
    "fct_explained_variance_intervals",
    "fct_task_prediction",
    "fct_sensitivity",
]


@pytest.mark.slow
def test_new_marts_are_described_tables(reference_home: Path) -> None:
    db = reference_home / "lce.duckdb"
    tables = _frame(db, "select table_name, table_type from information_schema.tables")
    kinds = dict(zip(tables["table_name"], tables["table_type"], strict=True))
    for mart in NEW_MARTS:
        assert kinds.get(mart) == "BASE TABLE", mart
        described = _frame(
            db,
            "select column_name, comment from duckdb_columns() where table_name = "
            f"'{mart}' union all select 'table', comment from duckdb_tables() "
            f"where table_name = '{mart}'",
        )
        assert described["comment"].notna().all() and (described["comment"] != "").all(), mart
    stability = _frame(
        db,
        "select comment from duckdb_columns() where table_name = 'dim_model_categories' "
        "and column_name = 'stability'",
    )
    assert "bootstrap" in stability["comment"].item()
    assert _frame(db, "select count(*) n from fct_sensitivity")["n"].item() == 0


@pytest.mark.slow
def test_summary_states_how_stable_the_categories_are(reference_home: Path) -> None:
    from tests.conftest import lce

    db = reference_home / "lce.duckdb"
    code, out = lce("summary", "--db", db)
    assert code == 0, out
    flat = " ".join(out.split())
    ari = _frame(
        db, "select adjusted_rand_index a, same_partition s from fct_model_category_stability"
    )
    assert f"over {len(ari)} unit-bootstrap resamples" in flat
    assert f"exactly in {100 * ari['s'].mean():.0f}% of them" in flat
    assert f"median {np.median(ari['a']):.3f}" in flat
    assert f"5th percentile {np.percentile(ari['a'], 5):.3f}" in flat
    least = _frame(db, "select model, stability from dim_model_categories order by stability")
    assert (
        f"Least stable category membership (dim_model_categories.stability): {least['model'][0]}"
        in flat
    )
