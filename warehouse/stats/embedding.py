"""The Learned Concepts Embedding and its statistics, as plain functions over numpy arrays.

dbt's Python models call these (so the warehouse and the tests share one implementation);
the recipe is the paper's: PCA (centred, unscaled) of the per-model concept profiles,
k-means on the profiles, Pearson correlations of components with task results.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
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
    requested: int = 0  # the components asked for (var n_components)
    rank: int = 0  # dimensions the centred profiles span: at most n_models - 1


@dataclass(frozen=True)
class Categories:
    labels: np.ndarray  # one k-means label per model (0-based, unordered)
    requested: int | str  # var n_categories: a count or 'auto'
    k: int  # categories formed (0 without models)
    n_distinct: int  # distinct profiles among the models: k never exceeds it


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


def profile_rank(matrix: np.ndarray) -> int:
    """Dimensions the centred profiles span (numerical rank), at most n_models - 1.

    The tolerance is numpy's ``matrix_rank`` default, taken relative to the *uncentred*
    matrix's norm: centring identical rows leaves float dust (0.1 * 3 / 3 != 0.1), whose own
    norm is no scale at all, while genuine profile differences are multiples of 1 / (concepts
    in a category), many orders of magnitude above it.
    """
    n_models, n_concepts = matrix.shape
    if n_models < 2 or n_concepts == 0:
        return 0
    scale = float(np.linalg.norm(matrix, 2))
    if scale == 0.0:
        return 0
    centred = matrix - matrix.mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    tol = scale * max(matrix.shape) * np.finfo(float).eps
    return int(min((singular > tol).sum(), n_models - 1))


def fit_pca(matrix: np.ndarray, n_components: int) -> PcaFit:
    """Centred PCA (sklearn's deterministic sign convention), limited to the profiles' rank.

    Components beyond the rank carry no variance (their ratios are float dust such as 3e-33,
    or NaN when nothing varies), so they are not fitted: n models give at most n - 1
    components, identical profiles or a single model none.
    """
    rank = profile_rank(matrix)
    n = min(n_components, rank)
    if n < 1:
        empty = np.zeros((matrix.shape[0], 0))
        return PcaFit(empty, np.zeros((0, matrix.shape[1])), np.zeros(0), n_components, rank)
    pca = PCA(n_components=n, svd_solver="full").fit(matrix)
    return PcaFit(
        pca.transform(matrix), pca.components_, pca.explained_variance_ratio_, n_components, rank
    )


def distinct_profiles(matrix: np.ndarray) -> int:
    """How many different profiles (rows) there are; weights are compared to 12 decimals."""
    if matrix.shape[0] == 0:
        return 0
    return int(np.unique(np.round(matrix, 12), axis=0).shape[0])


def categorise(matrix: np.ndarray, n_categories: int | str) -> Categories:
    """k-means categories with k capped at the number of distinct profiles.

    A fixed k larger than the distinct profiles would split identical models apart at random;
    'auto' picks k in 2..min(8, n - 1, distinct profiles) by the best silhouette score, and
    falls back to one category where no such k exists (fewer than three models, or fewer than
    two distinct profiles).
    """
    n = matrix.shape[0]
    if n_categories != "auto" and int(n_categories) < 1:
        raise ValueError(f"n_categories must be 'auto' or a positive integer, got {n_categories!r}")
    distinct = distinct_profiles(matrix)
    if n == 0:
        return Categories(np.zeros(0, dtype=int), n_categories, 0, 0)
    if n_categories == "auto":
        best: tuple[float, np.ndarray] | None = None
        for k in range(2, min(8, n - 1, distinct) + 1):
            labels = _kmeans(matrix, k)
            if len(set(labels.tolist())) < 2:
                continue
            score = float(silhouette_score(matrix, labels))
            if best is None or score > best[0]:
                best = (score, labels)
        labels = best[1] if best is not None else np.zeros(n, dtype=int)
    else:
        k = min(int(n_categories), distinct)
        labels = _kmeans(matrix, k) if k > 1 else np.zeros(n, dtype=int)
    return Categories(labels, n_categories, len(set(labels.tolist())), distinct)


def kmeans_labels(matrix: np.ndarray, n_categories: int | str) -> np.ndarray:
    """k-means labels (see ``categorise`` for how k is capped)."""
    return categorise(matrix, n_categories).labels


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


def cosine_distances(matrix: np.ndarray) -> np.ndarray:
    """1 - cosine similarity between rows; a zero row is at distance 1 from everything else.

    Identical (or proportional) profiles are at distance 0 exactly: ``1 - u.u`` leaves float
    dust of about 1e-16 there, which would read as a (tiny) difference, so values below 1e-12
    are set to 0.
    """
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    safe = np.where(norms == 0, 1.0, norms)
    unit = matrix / safe
    distances = 1.0 - unit @ unit.T
    zero = norms[:, 0] == 0
    distances[zero, :] = 1.0
    distances[:, zero] = 1.0
    np.fill_diagonal(distances, 0.0)
    distances[np.abs(distances) < 1e-12] = 0.0
    return np.clip(distances, 0.0, 2.0)
