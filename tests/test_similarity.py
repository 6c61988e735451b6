"""The geometric similarity measures (warehouse/stats/similarity.py) against independent numpy/scipy
computations written from the papers' formulas (tests/similarity_reference.py), and their known
properties."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.stats import ortho_group

from tests.similarity_reference import (
    cka_reference,
    debiased_reference,
    hsic_unbiased,
    knn_reference,
    mutual_knn_reference,
    procrustes_reference,
)
from warehouse.stats import similarity


def features(n: int, p: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, p)) @ rng.standard_normal((p, p)) + rng.normal(size=p)).astype(
        np.float32
    )


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force several row chunks, so the chunked accumulation itself is what is compared."""
    monkeypatch.setattr(similarity, "_ROW_CHUNK", 7)
    monkeypatch.setattr(similarity, "_SIMILARITY_VALUES", 500)


@pytest.mark.parametrize(("n", "p", "q"), [(60, 8, 8), (45, 5, 11), (30, 16, 3)])
def test_measures_equal_independent_computations(
    small_chunks: None, n: int, p: int, q: int
) -> None:
    x, y = features(n, p, 1), features(n, q, 2)
    y[:, 0] += x[:, 0]  # some shared structure, so the values are not all near 0
    assert similarity.linear_cka(x, y) == pytest.approx(cka_reference(x, y), rel=1e-9)
    assert similarity.debiased_cka(x, y) == pytest.approx(debiased_reference(x, y), rel=1e-8)
    assert similarity.procrustes_distance(x, y) == pytest.approx(
        procrustes_reference(x, y), rel=1e-9
    )
    for k in (1, 5, 10):
        assert similarity.mutual_knn(x, y, k) == pytest.approx(mutual_knn_reference(x, y, k))
        got = similarity.knn_indices(x, k)
        assert [set(r) for r in got.tolist()] == knn_reference(x, k)


def test_debiased_cka_is_unchanged_by_uncentred_features() -> None:
    """The unbiased HSIC is invariant to a shift of the features: the reference on the raw
    (uncentred) kernels gives the same value as the implementation, which centres first."""
    x, y = features(50, 6, 3), features(50, 9, 4)
    k, l_ = x.astype(float) @ x.T.astype(float), y.astype(float) @ y.T.astype(float)
    raw = hsic_unbiased(k, l_) / np.sqrt(hsic_unbiased(k, k) * hsic_unbiased(l_, l_))
    assert similarity.debiased_cka(x, y) == pytest.approx(raw, rel=1e-7)


def test_cka_is_one_for_a_rotated_and_scaled_copy() -> None:
    x = features(80, 10, 5).astype(float)
    rotation = ortho_group.rvs(10, random_state=6)
    y = 3.7 * x @ rotation + 2.0  # rotation, isotropic scaling, translation
    assert similarity.linear_cka(x, y) == pytest.approx(1.0, abs=1e-10)
    assert similarity.debiased_cka(x, y) == pytest.approx(1.0, abs=1e-10)
    assert similarity.linear_cka(x, features(80, 10, 7)) < 0.9
    # an anisotropic scaling is not a similarity transform: CKA drops below 1
    assert similarity.linear_cka(x, x * np.linspace(0.1, 3, 10)) < 0.999


def test_procrustes_is_zero_for_rotated_copies_and_symmetric() -> None:
    x = features(70, 9, 8).astype(float)
    rotation = ortho_group.rvs(9, random_state=9)
    assert similarity.procrustes_distance(x, 0.5 * x @ rotation - 1.0) == pytest.approx(
        0.0, abs=1e-6
    )
    y = features(70, 4, 10)
    d = similarity.procrustes_distance(x, y)
    assert d == pytest.approx(similarity.procrustes_distance(y, x), rel=1e-12)
    assert 0 < d <= np.pi / 2


def test_mutual_knn_is_one_for_identical_and_near_chance_for_independent() -> None:
    x = features(300, 16, 11)
    assert similarity.mutual_knn(x, x.copy(), 10) == 1.0
    rng = np.random.default_rng(12)
    a, b = rng.standard_normal((300, 16)), rng.standard_normal((300, 16))
    chance = 10 / 299
    assert abs(similarity.mutual_knn(a, b, 10) - chance) < 0.02


def test_knn_ties_go_to_the_lower_index(small_chunks: None) -> None:
    """Duplicated rows and zero rows make exact ties; the k-th place goes to the lower index."""
    # basis vectors and their pairwise sums: every similarity is 0, 1/sqrt(2) or 1 whatever
    # the order of the arithmetic, so ties are exact in both computations
    eye = np.eye(4)
    x = np.vstack([eye, eye[[2, 0]], np.zeros((3, 4)), eye[0] + eye[1], eye[2] + eye[3], eye])
    for k in (1, 2, 3, 5):
        got = similarity.knn_indices(x, k)
        assert [set(r) for r in got.tolist()] == knn_reference(x, k), k


def test_knn_refuses_k_of_n_or_more() -> None:
    with pytest.raises(ValueError, match="neighbours"):
        similarity.knn_indices(np.ones((5, 2)), 5)


def noisy_distances(n: int, dim: int, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances between n random points, and a symmetric noisy copy of them."""
    rng = np.random.default_rng(seed)
    points = rng.standard_normal((n, dim))
    concept = np.linalg.norm(points[:, None] - points[None], axis=2)
    geometric = concept + rng.normal(scale=scale, size=(n, n))
    geometric = (geometric + geometric.T) / 2
    np.fill_diagonal(geometric, 0)
    return concept, geometric


def test_mantel_equals_scipy_and_a_replayed_permutation_test() -> None:
    n = 7
    concept, geometric = noisy_distances(n, 3, 0.5, 14)
    r, p, pairs, used = similarity.mantel(concept, geometric, permutations=199, seed=3)
    assert used == 199  # 7! = 5040 relabellings: more than requested, so drawn at random
    upper = np.triu_indices(n, 1)
    expected = stats.spearmanr(concept[upper], geometric[upper]).statistic
    assert r == pytest.approx(expected, rel=1e-12)
    assert pairs == n * (n - 1) // 2
    # the permutation p, replayed: default_rng(seed), one permutation of the models per draw
    draw = np.random.default_rng(3)
    hits = 0
    for _ in range(199):
        order = draw.permutation(n)
        g = geometric[np.ix_(order, order)]
        hits += stats.spearmanr(concept[upper], g[upper]).statistic >= expected - 1e-12
    assert p == pytest.approx((1 + hits) / 200)
    assert p < 0.05  # the two matrices do agree


@pytest.mark.parametrize("n", [3, 4, 5])
def test_mantel_enumerates_every_relabelling_when_there_are_fewer_than_requested(n: int) -> None:
    """3 models have 3! = 6 distinct relabellings: 999 random draws would only repeat them. The
    p must be the exact one, counted here over itertools.permutations with scipy's Spearman."""
    concept, geometric = noisy_distances(n, 2, 0.3, n)
    r, p, pairs, used = similarity.mantel(concept, geometric, permutations=999, seed=0)
    upper = np.triu_indices(n, 1)
    observed = stats.spearmanr(concept[upper], geometric[upper]).statistic
    every = list(itertools.permutations(range(n)))
    hits = sum(
        stats.spearmanr(concept[upper], geometric[np.ix_(o, o)][upper]).statistic
        >= observed - 1e-12
        for o in every
    )
    assert used == len(every) == math.factorial(n)
    assert r == pytest.approx(observed, rel=1e-12)
    assert p == pytest.approx(hits / len(every), rel=1e-12)
    assert p >= 1 / math.factorial(n)  # the identity always counts


def test_agreement_skips_undefined_pairs_and_handles_few_models() -> None:
    sim = pd.DataFrame(
        [(a, b, "linear_cka", v) for a, b, v in [("a", "b", 0.9), ("a", "c", None)]]
        + [(b, a, "linear_cka", v) for a, b, v in [("a", "b", 0.9), ("a", "c", None)]],
        columns=["model_a", "model_b", "measure", "value"],
    )
    dist = pd.DataFrame(
        [("a", "b", 0.1), ("b", "a", 0.1), ("a", "c", 0.3), ("c", "a", 0.3)],
        columns=["model_a", "model_b", "cosine_distance"],
    )
    out = similarity.fct_similarity_agreement(sim, dist, similarity.Settings()).to_pylist()
    expected = {"measure": "linear_cka", "mantel_r": None, "p_value": None, "n_models": 3,
                "n_pairs": 1, "n_permutations": 6, "mantel_r_calibrated": None,
                "p_value_calibrated": None}  # fmt: skip
    assert out == [expected]


def test_settings_refuse_bad_values() -> None:
    assert similarity.settings("10", "50", "999", "0") == similarity.Settings(10, 50, 999, 0)
    for args in (("0", "50", "9", "0"), ("5", "3", "9", "0"), ("5", "50", "x", "0")):
        with pytest.raises(ValueError, match="dbt var"):
            similarity.settings(*args)


def test_the_caption_says_how_many_distinct_relabellings_there_are() -> None:
    from lce.explore.similarity import relabellings_text

    assert relabellings_text(3, 6) == "all 6 distinct relabellings of 3 models, exact"
    assert relabellings_text(7, 999) == "999 random relabellings of 5,040 distinct"
    assert relabellings_text(20, 999) == "999 random relabellings of 20! distinct"
