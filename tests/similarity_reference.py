"""Independent numpy/scipy computations of the geometric similarity measures, written from the
papers' formulas (explicit centring matrices, full kernel and cosine matrices), so that
warehouse/stats/similarity.py's chunked implementation is checked against code that shares nothing with it:
tests/test_similarity.py on random features, tests/test_similarity_build.py on the marts.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import orthogonal_procrustes


def hsic_biased(k: np.ndarray, l_: np.ndarray) -> float:
    """tr(K H L H) / (n - 1)^2 with the explicit centring matrix H = I - 11'/n."""
    n = len(k)
    h = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(k @ h @ l_ @ h)) / (n - 1) ** 2


def cka_reference(x: np.ndarray, y: np.ndarray) -> float:
    k, l_ = x.astype(float) @ x.T.astype(float), y.astype(float) @ y.T.astype(float)
    return hsic_biased(k, l_) / np.sqrt(hsic_biased(k, k) * hsic_biased(l_, l_))


def hsic_unbiased(k: np.ndarray, l_: np.ndarray) -> float:
    """Song et al. (2012), eq. 5: K~, L~ are K, L with their diagonals set to 0."""
    n = len(k)
    kt, lt = k - np.diag(np.diag(k)), l_ - np.diag(np.diag(l_))
    one = np.ones(n)
    return float(
        np.trace(kt @ lt)
        + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (one @ kt @ lt @ one)
    ) / (n * (n - 3))


def debiased_reference(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x.astype(float) - x.astype(float).mean(0), y.astype(float) - y.astype(float).mean(0)
    k, l_ = xc @ xc.T, yc @ yc.T
    return hsic_unbiased(k, l_) / np.sqrt(hsic_unbiased(k, k) * hsic_unbiased(l_, l_))


def procrustes_reference(x: np.ndarray, y: np.ndarray) -> float:
    """arccos <A R, B> with R scipy's optimal rotation, A, B centred, unit norm, zero-padded."""
    a, b = x.astype(float) - x.mean(0), y.astype(float) - y.mean(0)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    width = max(a.shape[1], b.shape[1])
    a = np.pad(a, ((0, 0), (0, width - a.shape[1])))
    b = np.pad(b, ((0, 0), (0, width - b.shape[1])))
    rotation, _ = orthogonal_procrustes(a, b)
    return float(np.arccos(np.clip(np.sum((a @ rotation) * b), -1, 1)))


def knn_reference(x: np.ndarray, k: int) -> list[set[int]]:
    """Brute force: the full cosine matrix, each row sorted (stable, so ties to the lower index)."""
    x = x.astype(float)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = x / np.where(norms > 0, norms, 1)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return [set(np.argsort(-row, kind="stable")[:k].tolist()) for row in sim]


def mutual_knn_reference(x: np.ndarray, y: np.ndarray, k: int) -> float:
    a, b = knn_reference(x, k), knn_reference(y, k)
    return float(np.mean([len(s & t) / k for s, t in zip(a, b, strict=True)]))
