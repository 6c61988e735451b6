"""warehouse.stats.embedding against independent computations (hand-worked examples, numpy, scipy)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from warehouse.stats import embedding, inference


def test_profile_matrix_hand_worked() -> None:
    long = pd.DataFrame(
        {
            "model": ["b", "a", "a", "b"],
            "concept": ["dog", "red", "dog", "food"],
            "category": ["object", "color", "object", "material"],
            "weight": [0.5, 1.0, 2.0, 0.25],
        }
    )
    vocab = pd.DataFrame(
        {
            "concept": ["dog", "red", "food", "food"],
            "category": ["object", "color", "material", "object"],
        }
    )
    prof = embedding.profile_matrix(long, vocab)
    assert prof.models == ["a", "b"]
    # columns sorted by (category, concept); "food" counts twice, once per category
    assert list(zip(prof.categories, prof.concepts, strict=True)) == [
        ("color", "red"),
        ("material", "food"),
        ("object", "dog"),
        ("object", "food"),
    ]
    expected = np.array([[1.0, 0.0, 2.0, 0.0], [0.0, 0.25, 0.5, 0.0]])
    np.testing.assert_array_equal(prof.matrix, expected)


def test_pca_matches_numpy_svd() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 6)) @ rng.normal(size=(6, 6))
    fit = embedding.fit_pca(x, 3)
    centred = x - x.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    ratios = s**2 / (s**2).sum()
    np.testing.assert_allclose(fit.explained_variance_ratio, ratios[:3], rtol=1e-10)
    for c in range(3):
        sign = np.sign(fit.components[c] @ vt[c])
        np.testing.assert_allclose(fit.components[c], sign * vt[c], atol=1e-10)
        np.testing.assert_allclose(fit.scores[:, c], sign * u[:, c] * s[c], atol=1e-10)


def test_pca_with_fewer_models_than_components() -> None:
    # Two models span one dimension: the second component would be float dust, so it is absent.
    x = np.array([[0.0, 1.0, 3.0], [1.0, 0.0, 2.0]])
    fit = embedding.fit_pca(x, 3)
    assert fit.scores.shape == (2, 1) and fit.rank == 1 and fit.requested == 3
    diff = (x[0] - x[1]) / np.linalg.norm(x[0] - x[1])
    np.testing.assert_allclose(np.abs(fit.components[0]), np.abs(diff), atol=1e-12)
    np.testing.assert_allclose(np.abs(fit.scores[:, 0]), [np.linalg.norm(x[0] - x[1]) / 2] * 2)
    assert fit.explained_variance_ratio.tolist() == pytest.approx([1.0])
    assert embedding.fit_pca(np.zeros((1, 4)), 3).scores.shape == (1, 0)


@pytest.mark.parametrize("n", [2, 3, 7])
def test_identical_profiles_have_no_component(n: int) -> None:
    # 0.1 * 3 / 3 != 0.1: centring identical rows leaves float dust, which is not variance.
    x = np.tile([0.1, 0.7, 1 / 3, 0.0], (n, 1))
    fit = embedding.fit_pca(x, 3)
    assert fit.rank == 0 and fit.scores.shape == (n, 0) and fit.explained_variance_ratio.size == 0
    assert embedding.profile_rank(np.zeros((3, 4))) == 0


def test_profile_rank_matches_numpy_and_caps_components() -> None:
    rng = np.random.default_rng(3)
    base = rng.integers(0, 5, size=(3, 30)) / 7.0
    x = np.vstack([base, base[0] + base[1] - base[2], base[1]])  # 5 models, 2 dimensions
    centred = x - x.mean(axis=0)
    assert embedding.profile_rank(x) == np.linalg.matrix_rank(centred) == 2
    fit = embedding.fit_pca(x, 3)
    assert fit.scores.shape == (5, 2)
    assert fit.explained_variance_ratio.sum() == pytest.approx(1.0)
    assert fit.explained_variance_ratio.min() > 1e-3


def test_categories_are_capped_at_distinct_profiles() -> None:
    a, b = np.array([1.0, 0.0, 2.0]), np.array([0.0, 3.0, 1.0])
    same = embedding.categorise(np.vstack([a, a, a]), 3)
    assert (same.k, same.n_distinct, same.labels.tolist()) == (1, 1, [0, 0, 0])
    two = embedding.categorise(np.vstack([a, b, a]), 3)
    assert (two.k, two.n_distinct) == (2, 2)
    assert two.labels[0] == two.labels[2] != two.labels[1]
    one = embedding.categorise(a[None, :], 3)
    assert (one.k, one.labels.tolist()) == (1, [0])
    auto = embedding.categorise(np.vstack([a, b]), "auto")  # silhouette needs n >= 3
    assert (auto.k, auto.requested) == (1, "auto")
    assert embedding.categorise(np.zeros((0, 3)), 2).k == 0


def blobs(k: int, per: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(k, 6) * 10
    x = np.vstack([c + rng.normal(scale=0.1, size=(per, 6)) for c in centres])
    return x, np.repeat(np.arange(k), per)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_kmeans_auto_finds_separated_blobs(k: int) -> None:
    x, truth = blobs(k)
    labels = embedding.kmeans_labels(x, "auto")
    # same partition as the truth, whatever the numbering
    assert len(set(labels)) == k
    assert len(set(zip(labels.tolist(), truth.tolist(), strict=True))) == k


def test_kmeans_fixed_k_and_bad_k() -> None:
    x, _ = blobs(3)
    assert len(set(embedding.kmeans_labels(x, 2))) == 2
    with pytest.raises(ValueError):
        embedding.kmeans_labels(x, 0)


def test_order_by_score_numbers_clusters_by_first_component() -> None:
    labels = np.array([7, 7, 3, 3, 5])
    scores = np.array([[5.0], [6.0], [-1.0], [-2.0], [0.0]])
    assert embedding.order_by_score(labels, scores).tolist() == [3, 3, 1, 1, 2]


def test_pearson_matches_t_distribution_formula() -> None:
    x = np.array([1.0, 2.0, 3.5, 4.0, 6.0, 7.5])
    y = np.array([2.0, 1.5, 4.0, 3.0, 6.5, 6.0])
    r, p = inference.pearson(x, y)
    xm, ym = x - x.mean(), y - y.mean()
    r_ref = (xm @ ym) / math.sqrt((xm @ xm) * (ym @ ym))
    n = x.size
    t = r_ref * math.sqrt((n - 2) / (1 - r_ref**2))
    p_ref = 2 * stats.t.sf(abs(t), n - 2)
    assert r == pytest.approx(r_ref, abs=1e-12)
    assert p == pytest.approx(p_ref, rel=1e-9)


def test_pearson_undefined_cases_are_nan() -> None:
    assert all(math.isnan(v) for v in inference.pearson(np.array([1.0, 2.0]), np.array([1.0, 3.0])))
    assert math.isnan(inference.pearson(np.ones(4), np.arange(4.0))[0])


def test_cosine_distances_brute_force() -> None:
    rng = np.random.default_rng(2)
    x = rng.random((5, 4))
    x[3] = 0.0
    d = embedding.cosine_distances(x)
    for i in range(5):
        for j in range(5):
            if i == j:
                expected = 0.0
            elif 3 in (i, j):
                expected = 1.0
            else:
                expected = 1 - x[i] @ x[j] / (np.linalg.norm(x[i]) * np.linalg.norm(x[j]))
            assert d[i, j] == pytest.approx(expected, abs=1e-12)


def test_identical_and_proportional_profiles_are_at_distance_exactly_zero() -> None:
    a = np.array([0.1, 0.7, 1 / 3, 0.2])
    d = embedding.cosine_distances(np.vstack([a, a, 3 * a, [1.0, 0, 0, 0]]))
    assert d[0, 1] == d[0, 2] == d[1, 2] == 0.0
    assert d[0, 3] == pytest.approx(1 - 0.1 / np.linalg.norm(a), abs=1e-12)
