"""Leave-one-model-out task prediction (warehouse.stats.prediction) against independent computations.

The refits, kNN, ridge and category predictions are recomputed here with scikit-learn (PCA,
KMeans, KNeighborsRegressor, Ridge; the explorer's numpy kNN as a second witness); a constructed case shows that
a fit that saw the held-out model would score better, and that fct_task_prediction does not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsRegressor
from sklearn.preprocessing import StandardScaler

from lce.explore import knn_interpolate
from warehouse.stats import marts, prediction

CONCEPTS = [("a", "object"), ("b", "object"), ("c", "color")]


def study(matrix: np.ndarray, results: dict[str, np.ndarray], k: int, n_components: int):
    """MartInputs whose profile matrix is ``matrix`` (rows m0, m1, ...) and task results."""
    names = [f"m{i}" for i in range(len(matrix))]
    long = pd.DataFrame(
        [
            (m, concept, category, 1, float(matrix[i, j]))
            for i, m in enumerate(names)
            for j, (concept, category) in enumerate(CONCEPTS)
        ],
        columns=["model", "concept", "category", "n_units", "weight"],
    )
    models = pd.DataFrame({"model": names, "in_embedding": True})
    bench = pd.DataFrame(
        [
            ("probe", dataset, "accuracy", True, m, float(v))
            for dataset, values in results.items()
            for m, v in zip(names, values, strict=True)
        ],
        columns=["task", "dataset", "metric", "higher_is_better", "model", "value"],
    )
    return marts.inputs(n_components, k, profiles=long, models=models, benchmarks=bench)


def _skills(inputs: marts.MartInputs) -> pd.DataFrame:
    return prediction.fct_task_prediction(inputs).to_pandas().set_index(["dataset", "method"])


def _independent(matrix: np.ndarray, y: np.ndarray, n_components: int, k: int, leaky: bool):
    """MAE per method, each held-out model predicted from the others."""
    errors: dict[str, list[float]] = {m: [] for m in prediction.METHODS}
    full = PCA(n_components=n_components, svd_solver="full").fit(matrix)
    for h in range(len(matrix)):
        rest = [i for i in range(len(matrix)) if i != h]
        if leaky:  # the embedding fitted with the held-out model in it
            x, q = full.transform(matrix[rest]), full.transform(matrix[[h]])[0]
        else:
            pca = PCA(n_components=n_components, svd_solver="full").fit(matrix[rest])
            x, q = pca.transform(matrix[rest]), pca.transform(matrix[[h]])[0]
        yr = y[rest]
        errors["mean"].append(abs(yr.mean() - y[h]))
        knn = KNeighborsRegressor(n_neighbors=prediction.KNN_NEIGHBOURS, weights="distance")
        errors["knn"].append(abs(knn.fit(x, yr).predict(q[None, :])[0] - y[h]))
        scaler = StandardScaler().fit(x)
        ridge = Ridge(alpha=prediction.RIDGE_ALPHA).fit(scaler.transform(x), yr)
        errors["ridge"].append(abs(ridge.predict(scaler.transform(q[None, :]))[0] - y[h]))
        km = KMeans(n_clusters=k, n_init=20, random_state=0).fit(matrix[rest])
        mates = yr[km.labels_ == km.predict(matrix[[h]])[0]]
        errors["category"].append(abs((mates.mean() if mates.size else yr.mean()) - y[h]))
    return {m: float(np.mean(e)) for m, e in errors.items()}


def test_every_method_matches_an_independent_leave_one_out() -> None:
    rng = np.random.default_rng(4)
    matrix = rng.gamma(2.0, 1.0, size=(8, 3))
    y = matrix @ np.array([2.0, -1.0, 0.5]) + rng.normal(0, 0.3, 8)
    table = _skills(study(matrix, {"d": y}, k=2, n_components=2))
    expected = _independent(matrix, y, 2, 2, leaky=False)
    for method, mae in expected.items():
        assert table.loc[("d", method), "mae"] == pytest.approx(mae, rel=1e-9), method
        skill = 1 - mae / expected["mean"]
        assert table.loc[("d", method), "skill"] == pytest.approx(skill, rel=1e-9, abs=1e-12)
    assert (table["n_models"] == 8).all()


def test_leave_one_out_refits_without_the_held_out_model() -> None:
    """A case where the embedding fitted on all models would predict better (it has seen the
    held-out profile): the mart must score as the honest refit, not as the leaky fit."""
    matrix = np.array(
        [[2.3, 2.5, 3.2], [3.6, 1.9, 3.5], [1.9, 2.9, 1.5], [4.2, 1.3, 1.3], [1.5, 0.7, 0.8]]
    )
    y = np.array([1.1, -0.3, 2.2, -3.0, 2.7])
    honest = _independent(matrix, y, 1, 1, leaky=False)
    leaky = _independent(matrix, y, 1, 1, leaky=True)
    assert leaky["knn"] < honest["knn"] - 1.0  # leaking would look better (2.53 vs 3.67)
    table = _skills(study(matrix, {"d": y}, k=1, n_components=1))
    assert table.loc[("d", "knn"), "mae"] == pytest.approx(honest["knn"], rel=1e-9)
    assert table.loc[("d", "ridge"), "mae"] == pytest.approx(honest["ridge"], rel=1e-9)


def test_results_with_too_few_models_are_left_out() -> None:
    rng = np.random.default_rng(5)
    matrix = rng.gamma(2.0, 1.0, size=(4, 3))
    inputs = study(matrix, {"d": np.arange(4.0)}, k=2, n_components=2)
    bench = inputs.benchmarks
    assert bench is not None
    few = bench[~((bench["dataset"] == "d") & bench["model"].isin(["m0", "m1"]))]
    table = prediction.fct_task_prediction(
        marts.inputs(2, 2, profiles=inputs.profiles, models=inputs.models, benchmarks=few)
    )
    assert table.num_rows == 0  # 2 models: nobody to learn from when one is held out
    constant = study(matrix, {"d": np.ones(4)}, k=2, n_components=2)
    skills = _skills(constant)
    assert skills["mae"].eq(0).all() and skills["skill"].isna().all()


def test_knn_and_ridge_match_scikit_learn_and_the_explorer() -> None:
    rng = np.random.default_rng(6)
    for n, d in [(2, 1), (5, 2), (11, 3)]:
        x, y, q = rng.normal(size=(n, d)), rng.normal(size=n), rng.normal(size=(4, d))
        q[0] = x[1]  # a query on a training point takes its value
        knn = KNeighborsRegressor(n_neighbors=min(3, n), weights="distance").fit(x, y)
        scaler = StandardScaler().fit(x)
        ridge = Ridge(alpha=1.0).fit(scaler.transform(x), y)
        for point in q:
            got = prediction.knn_predict(x, y, point, 3)
            assert got == pytest.approx(knn.predict(point[None, :])[0], rel=1e-12)
            assert got == pytest.approx(knn_interpolate(x, y, point[None, :], 3)[0], rel=1e-12)
            expected = ridge.predict(scaler.transform(point[None, :]))[0]
            assert prediction.ridge_predict(x, y, point, 1.0) == pytest.approx(expected, rel=1e-9)
