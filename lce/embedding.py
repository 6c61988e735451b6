"""The Learned Concepts Embedding and its statistics, as plain functions over numpy arrays.

dbt's Python models call these (so the warehouse and the tests share one implementation);
the recipe is the paper's: PCA (centred, unscaled) of the per-model concept profiles,
k-means on the profiles, Pearson correlations of components with task results.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score

SEED = 0


@dataclass(frozen=True)
class Profiles:
    """A model x concept matrix with its row and column names."""

    models: list[str]
    concepts: list[str]
    categories: list[str]
    matrix: np.ndarray


@dataclass(frozen=True)
class PcaFit:
    scores: np.ndarray  # models x components
    components: np.ndarray  # components x concepts (loadings)
    explained_variance_ratio: np.ndarray


def profile_matrix(long: pd.DataFrame, concepts: pd.DataFrame | None = None) -> Profiles:
    """Pivot long profile rows (model, concept, category, weight) to one vector per model.

    ``concepts`` (concept, category) fixes the columns, so concepts seen only in models outside
    the embedding still get a (zero) column, as in the paper's 145-column matrix. Columns are
    sorted by (category, concept) and rows by model, so the result does not depend on row order.
    """
    if concepts is None:
        concepts = long[["concept", "category"]]
    # A concept is identified by (category, concept): Broden names "food" both a material and
    # an object, and the paper's 145 columns count them apart.
    columns = (
        concepts[["concept", "category"]].drop_duplicates().sort_values(["category", "concept"])
    )
    models = sorted(long["model"].unique().tolist())
    col_index = {
        key: i for i, key in enumerate(zip(columns["category"], columns["concept"], strict=True))
    }
    row_index = {m: i for i, m in enumerate(models)}
    matrix = np.zeros((len(models), len(col_index)))
    for model, concept, category, weight in long[
        ["model", "concept", "category", "weight"]
    ].itertuples(index=False):
        matrix[row_index[model], col_index[(category, concept)]] += float(weight)
    return Profiles(models, list(columns["concept"]), list(columns["category"]), matrix)


def fit_pca(matrix: np.ndarray, n_components: int) -> PcaFit:
    """Centred PCA (sklearn's deterministic sign convention); fewer components if data allow."""
    n = min(n_components, matrix.shape[0], matrix.shape[1])
    if n < 1 or matrix.shape[0] < 2:
        empty = np.zeros((matrix.shape[0], 0))
        return PcaFit(empty, np.zeros((0, matrix.shape[1])), np.zeros(0))
    pca = PCA(n_components=n, svd_solver="full").fit(matrix)
    return PcaFit(pca.transform(matrix), pca.components_, pca.explained_variance_ratio_)


def kmeans_labels(matrix: np.ndarray, n_categories: int | str) -> np.ndarray:
    """k-means labels; 'auto' picks k in 2..min(8, n-1) by the best silhouette score."""
    n = matrix.shape[0]
    if n == 0:
        return np.zeros(0, dtype=int)
    if n_categories == "auto":
        candidates = range(2, min(8, n - 1) + 1)
        best: tuple[float, np.ndarray] | None = None
        for k in candidates:
            labels = _kmeans(matrix, k)
            if len(set(labels)) < 2:
                continue
            score = float(silhouette_score(matrix, labels))
            if best is None or score > best[0]:
                best = (score, labels)
        return best[1] if best is not None else np.zeros(n, dtype=int)
    k = int(n_categories)
    if k < 1:
        raise ValueError(f"n_categories must be 'auto' or a positive integer, got {n_categories!r}")
    return _kmeans(matrix, min(k, n))


def _kmeans(matrix: np.ndarray, k: int) -> np.ndarray:
    return KMeans(n_clusters=k, n_init=20, random_state=SEED).fit_predict(matrix)


def order_by_score(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Renumber clusters 1..k by ascending mean score on the first component (stable ids)."""
    if labels.size == 0:
        return labels
    keys = sorted(
        set(labels.tolist()),
        key=lambda c: float(scores[labels == c, 0].mean()) if scores.shape[1] else c,
    )
    mapping = {old: new for new, old in enumerate(keys, start=1)}
    return np.array([mapping[c] for c in labels.tolist()], dtype=int)


def pearson(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Pearson r and two-sided p; NaN when fewer than 3 points or either side is constant."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    result = stats.pearsonr(x, y)
    return float(result.statistic), float(result.pvalue)


def cosine_distances(matrix: np.ndarray) -> np.ndarray:
    """1 - cosine similarity between rows; a zero row is at distance 1 from everything else."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    safe = np.where(norms == 0, 1.0, norms)
    unit = matrix / safe
    distances = 1.0 - unit @ unit.T
    zero = norms[:, 0] == 0
    distances[zero, :] = 1.0
    distances[:, zero] = 1.0
    np.fill_diagonal(distances, 0.0)
    return np.clip(distances, 0.0, 2.0)
