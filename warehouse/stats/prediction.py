"""Does the embedding predict transfer? Leave-one-model-out prediction of task results.

For each embedded model h, the PCA and the k-means are refitted on the *other* embedded models
(the requested components and k, or 'auto' choosing k again without h), and h's profile is projected into that refit
(centred by the others' mean) and assigned to the nearest refitted category. So nothing about h
but its own profile reaches its prediction: no leakage. Then, for every task result, h's value
is predicted from the others that have it by

- ``mean``: the mean of the others (the baseline),
- ``knn``: distance-weighted k-nearest neighbours on the refitted components (k = 3, as the
  paper's performance maps and the Tasks page draw them; all components, not only two),
- ``ridge``: ridge regression (alpha = 1) on the refitted components, each standardised over
  the training models, with an unpenalised intercept,
- ``category``: the mean of the others in h's refitted category (the mean of all others when
  none of them shares it).

Per method: mean absolute error over the held-out models, and skill = 1 - MAE / MAE(mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from threadpoolctl import threadpool_limits

from warehouse.stats import arrow, embedding, marts

KNN_NEIGHBOURS = 3
RIDGE_ALPHA = 1.0
METHODS = ("mean", "knn", "ridge", "category")
MIN_MODELS = 3  # a held-out model and at least two others to learn from


@dataclass(frozen=True)
class Refit:
    """The embedding refitted without one model, and where that model falls in it."""

    others: list[str]
    scores: np.ndarray  # others x components
    query: np.ndarray  # the held-out model's projected scores (components,)
    mates: frozenset[str]  # others in the held-out model's nearest refitted category


def refit_without(
    profiles: embedding.Profiles, held: int, n_components: int, k: int | str
) -> Refit:
    """PCA and k-means on every embedded model but ``held``; ``held`` projected into them."""
    train = np.delete(profiles.matrix, held, axis=0)
    others = [m for i, m in enumerate(profiles.models) if i != held]
    target = profiles.matrix[held]
    fit = embedding.fit_pca(train, n_components)
    query = (target - train.mean(axis=0)) @ fit.components.T
    labels = embedding.kmeans_labels(train, k)
    names = sorted(set(labels.tolist()))
    centroids = np.array([train[labels == c].mean(axis=0) for c in names])
    nearest = names[int(np.argmin(((centroids - target) ** 2).sum(axis=1)))]
    mates = frozenset(m for m, c in zip(others, labels.tolist(), strict=True) if c == nearest)
    return Refit(others, fit.scores, query, mates)


def predict(refit: Refit, values: dict[str, float]) -> dict[str, float]:
    """Each method's prediction of the held-out model from the others' ``values``."""
    train = [i for i, m in enumerate(refit.others) if m in values]
    y = np.array([values[refit.others[i]] for i in train], dtype=float)
    x = refit.scores[train]
    baseline = float(y.mean())
    result = {"mean": baseline, "knn": baseline, "ridge": baseline}
    if x.shape[1]:
        result["knn"] = knn_predict(x, y, refit.query, KNN_NEIGHBOURS)
        result["ridge"] = ridge_predict(x, y, refit.query, RIDGE_ALPHA)
    mates = [values[m] for m in refit.others if m in refit.mates and m in values]
    result["category"] = float(np.mean(mates)) if mates else baseline
    return result


def knn_predict(x: np.ndarray, y: np.ndarray, query: np.ndarray, k: int) -> float:
    """Distance-weighted k nearest neighbours (weights 1/d; a query on a training point takes
    its value), as scikit-learn's KNeighborsRegressor(weights='distance'); plain numpy, since
    one build makes hundreds of these tiny fits. Ties in distance go to the earlier model."""
    distances = np.sqrt(((x - query) ** 2).sum(axis=1))
    nearest = np.argsort(distances, kind="stable")[: min(k, len(y))]
    d, v = distances[nearest], y[nearest]
    if (d == 0).any():
        return float(v[d == 0].mean())
    return float((v / d).sum() / (1.0 / d).sum())


def ridge_predict(x: np.ndarray, y: np.ndarray, query: np.ndarray, alpha: float) -> float:
    """Ridge regression on standardised columns with an unpenalised intercept (scikit-learn's
    Ridge(alpha) on centred data): beta = (Z'Z + alpha I)^-1 Z'(y - mean y)."""
    centre, spread = x.mean(axis=0), x.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    z = (x - centre) / spread
    beta = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return float(y.mean() + ((query - centre) / spread) @ beta)


def refits(inputs: marts.MartInputs) -> dict[str, Refit]:
    """One refit per embedded model (shared by every task result)."""
    profiles = marts.embedding_profiles(inputs)
    if len(profiles.models) < MIN_MODELS:
        return {}
    # One thread: see warehouse.stats.stability (OpenMP threads of tiny k-means fits wait on each other).
    with threadpool_limits(1):
        return {
            model: refit_without(profiles, i, int(inputs.n_components), inputs.n_categories)
            for i, model in enumerate(profiles.models)
        }


def fct_task_prediction(inputs: marts.MartInputs) -> pa.Table:
    """Per task result and method: models predicted, MAE, and skill against the mean."""
    fits = refits(inputs)
    bench = inputs.benchmarks if inputs.benchmarks is not None else pd.DataFrame()
    rows: list[tuple] = []
    if fits and not bench.empty:
        keys = ["task", "dataset", "metric", "higher_is_better"]
        for key, group in bench.groupby(keys, sort=True):
            group = group[group["model"].isin(fits)]
            values = dict(zip(group["model"], group["value"].astype(float), strict=True))
            if len(values) < MIN_MODELS:
                continue
            errors: dict[str, list[float]] = {m: [] for m in METHODS}
            for model in sorted(values):
                others = {m: v for m, v in values.items() if m != model}
                for method, guess in predict(fits[model], others).items():
                    errors[method].append(abs(guess - values[model]))
            base = float(np.mean(errors["mean"]))
            for method in METHODS:
                mae = float(np.mean(errors[method]))
                skill = 1.0 - mae / base if base > 0 else float("nan")
                rows.append((*key[:3], bool(key[3]), method, len(values), mae, skill))
    return arrow.table(
        rows,
        [
            ("task", pa.string()),
            ("dataset", pa.string()),
            ("metric", pa.string()),
            ("higher_is_better", pa.bool_()),
            ("method", pa.string()),
            ("n_models", pa.int32()),
            ("mae", pa.float64()),
            ("skill", pa.float64()),
        ],
    )
