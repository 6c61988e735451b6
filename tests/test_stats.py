"""warehouse.stats.inference and warehouse.stats.correlations against scipy and hand-worked cases; the correlation dbt vars.

Every expected value comes from scipy (pearsonr, spearmanr, false_discovery_control), numpy or a
plain loop written here, never from the functions under test.
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from tests.conftest import lce
from warehouse.stats import correlations, inference


def test_pearson_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    for n in (3, 4, 7, 12, 50):
        for _ in range(20):
            x = rng.normal(size=n)
            y = 0.5 * x + rng.normal(size=n)
            expected = sps.pearsonr(x, y)
            r, p = inference.pearson(x, y)
            assert r == pytest.approx(expected.statistic, abs=1e-12)
            assert p == pytest.approx(expected.pvalue, rel=1e-8, abs=1e-15)


def test_spearman_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(2)
    for n in (3, 5, 12, 40):
        for _ in range(20):
            x = rng.integers(0, 4, size=n).astype(float)  # many ties, as unit counts have
            y = x + rng.normal(size=n)
            if np.ptp(x) == 0:
                continue
            expected = sps.spearmanr(x, y)
            rho, p = inference.spearman(x, y)
            assert rho == pytest.approx(expected.statistic, abs=1e-12)
            assert p == pytest.approx(expected.pvalue, rel=1e-8, abs=1e-15)


def test_undefined_correlations_are_nan_not_zero() -> None:
    assert np.isnan(inference.pearson([1, 2], [3, 4])).all()  # fewer than 3 points
    assert np.isnan(inference.pearson([1, 1, 1, 1], [1, 2, 3, 4])).all()  # constant side
    assert np.isnan(inference.pearson([1, 2, np.nan], [1, 2, 3])).all()
    assert np.isnan(inference.spearman([5, 5, 5], [1, 2, 3])).all()
    lo, hi, used = inference.bootstrap_intervals(np.array([1.0, 1, 1, 1]), np.arange(4.0), 50, 0)
    assert np.isnan(lo).all() and np.isnan(hi).all() and (used == 0).all()


def test_extreme_values_do_not_overflow() -> None:
    """Benchmark values of +-1e308 (issue 10): scipy's pearsonr overflows to r = 0, p = 1; the
    standardised computation gives the r of the same values scaled down."""
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    y = np.array([1e308, -1e308, 1e308, 1e308, -1e308, 1e308])
    expected = sps.pearsonr(x, y / 1e308)
    r, p = inference.pearson(x, y)
    assert r == pytest.approx(expected.statistic, abs=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-8)
    assert r != 0 and p < 1
    r2, _ = inference.pearson(y, y)  # both sides extreme
    assert r2 == pytest.approx(1.0)
    rho, _ = inference.spearman(x, y)
    assert rho == pytest.approx(sps.spearmanr(x, y / 1e308).statistic, abs=1e-12)
    lo, hi, _ = inference.bootstrap_intervals(x, y, 200, 0)
    lo_scaled, hi_scaled, _ = inference.bootstrap_intervals(x, y / 1e308, 200, 0)
    assert (
        np.isfinite(lo).all() and lo == pytest.approx(lo_scaled) and hi == pytest.approx(hi_scaled)
    )


def test_extreme_benchmark_values_through_the_mart() -> None:
    """The same through the component / task mart: one result at +-1e308 keeps its r."""
    scores = pd.DataFrame({1: [1.0, 2, 3, 4, 5, 6]}, index=pd.Index(list("abcdef"), name="model"))
    values = [1e308, -1e308, 1e308, 1e308, -1e308, 1e308]
    bench = pd.DataFrame(
        {"model": list("abcdef"), "task": "t", "dataset": "d", "metric": "m", "value": values,
         "higher_is_better": True}
    )  # fmt: skip
    table = correlations.component_task_table(scores, bench, correlations.Settings(n_boot=50))
    row = table.to_pylist()[0]
    expected = sps.pearsonr(scores[1], np.array(values) / 1e308)
    assert row["pearson_r"] == pytest.approx(expected.statistic, abs=1e-12)
    assert row["p_value"] == pytest.approx(expected.pvalue, rel=1e-8)
    assert row["n"] == 6


def test_bh_q_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    for m in (1, 2, 10, 108, 500):
        p = np.concatenate([rng.uniform(size=m // 2), rng.uniform(0, 0.01, size=m - m // 2)])
        p[::7] = p[0]  # ties
        expected = sps.false_discovery_control(p, method="bh")
        np.testing.assert_allclose(inference.bh_q_values(p), expected, rtol=1e-12, atol=1e-15)


def test_bh_q_skips_undefined_tests() -> None:
    p = np.array([0.01, np.nan, 0.04, 0.03, np.nan])
    q = inference.bh_q_values(p)
    assert np.isnan(q[[1, 4]]).all()
    np.testing.assert_allclose(q[[0, 2, 3]], sps.false_discovery_control([0.01, 0.04, 0.03]))
    # hand-worked: m = 3; sorted 0.01, 0.03, 0.04 -> 0.03, 0.045, 0.04 -> min from the right
    np.testing.assert_allclose(q[[0, 3, 2]], [0.03, 0.04, 0.04])


def _loop_bootstrap(
    x: np.ndarray, y: np.ndarray, n_boot: int, seed: int
) -> tuple[float, float, int]:
    """The documented protocol, written out: default_rng(seed) draws an (n_boot, n) index
    matrix; r per resample by numpy's corrcoef; constant resamples skipped (and not counted);
    percentiles."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(x), size=(n_boot, len(x)))
    rs = []
    for idx in index:
        xb, yb = x[idx], y[idx]
        if np.all(xb == xb[0]) or np.all(yb == yb[0]):
            continue
        rs.append(np.corrcoef(xb, yb)[0, 1])
    lo, hi = np.percentile(rs, [2.5, 97.5])
    return float(lo), float(hi), len(rs)


def test_bootstrap_follows_its_protocol_and_is_reproducible_by_seed() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(12, 3))
    x[:, 2] = (np.arange(12) == 0).astype(float)  # one model carries it: many constant resamples
    y = x[:, 0] + rng.normal(size=12)
    lo, hi, used = inference.bootstrap_intervals(x, y, 1000, 7)
    for j in range(3):
        expected = _loop_bootstrap(x[:, j], y, 1000, 7)
        assert (lo[j], hi[j]) == pytest.approx(expected[:2], abs=1e-12)
        assert used[j] == expected[2]
    assert used[0] == 1000 and 500 < used[2] < 1000  # (11/12)^12 = 35% of resamples lack it
    again = inference.bootstrap_intervals(x, y, 1000, 7)
    np.testing.assert_array_equal(again[0], lo)
    np.testing.assert_array_equal(again[1], hi)
    other = inference.bootstrap_intervals(x, y, 1000, 8)
    assert not np.array_equal(other[0], lo)
    assert (lo <= hi).all()
    r = np.array([inference.pearson(x[:, j], y)[0] for j in range(3)])
    assert ((lo <= r) & (r <= hi)).all()


def test_bootstrap_chunks_give_the_same_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(9, 4)), rng.normal(size=9)
    whole = inference.bootstrap_intervals(x, y, 300, 1)
    monkeypatch.setattr(inference, "_CHUNK_VALUES", 50)  # many small chunks
    chunked = inference.bootstrap_intervals(x, y, 300, 1)
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_array_equal(a, b)


def test_settings_parse_dbt_text_and_refuse_bad_values() -> None:
    got = correlations.settings("200", "3", "0.1", "'task'")
    assert got == correlations.Settings(n_boot=200, seed=3, q_threshold=0.1, fdr_family="task")
    assert correlations.settings(None, None, None, None) == correlations.Settings()
    for args, name in [
        (("0", "0", "0.05", "build"), "n_boot"),
        (("1.5", "0", "0.05", "build"), "n_boot"),
        (("10", "-1", "0.05", "build"), "seed"),
        (("10", "0", "1", "build"), "q_threshold"),
        (("10", "0", "0", "build"), "q_threshold"),
        (("10", "0", "0.05", "model"), "fdr_family"),
    ]:
        with pytest.raises(ValueError, match=name):
            correlations.settings(*args)


def _toy_frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Six embedded models, two task families: what with_q's families are checked on."""
    rng = np.random.default_rng(6)
    names = [f"m{i}" for i in range(6)]
    models = pd.DataFrame({"model": names, "in_embedding": True, "n_interpretable_units": 10})
    categories = pd.DataFrame(
        [(m, c, int(rng.integers(1, 6)), int(rng.integers(1, 3))) for m in names
         for c in ("object", "color")],
        columns=["model", "category", "n_units", "n_unique_concepts"],
    )  # fmt: skip
    bench = pd.DataFrame(
        [(m, t, d, "acc", float(rng.normal()), True) for m in names for t in ("a", "b")
         for d in ("x", "y")],
        columns=["model", "task", "dataset", "metric", "value", "higher_is_better"],
    )  # fmt: skip
    return categories, models, bench


def test_families_build_and_task() -> None:
    categories, models, bench = _toy_frames()
    for family in ("build", "task"):
        settings = correlations.Settings(n_boot=20, fdr_family=family, q_threshold=0.5)
        frame = correlations.fct_category_task_correlations(
            categories, models, bench, settings
        ).to_pandas()
        assert len(frame) == 2 * 3 * 4  # categories x measures x results
        groups = [frame] if family == "build" else [g for _, g in frame.groupby("task")]
        for group in groups:
            expected = sps.false_discovery_control(group["p_value"], method="bh")
            np.testing.assert_allclose(group["q_value"], expected, rtol=1e-12)
            assert set(group["fdr_family"]) == {
                "build" if family == "build" else group["task"].iloc[0]
            }
        assert (frame["significant"] == (frame["q_value"] < 0.5)).all()
        assert (frame["q_threshold"] == 0.5).all()


def test_no_benchmarks_gives_empty_typed_marts() -> None:
    categories, models, _ = _toy_frames()
    table = correlations.fct_category_task_correlations(
        categories, models, None, correlations.Settings()
    )
    assert table.num_rows == 0 and "q_value" in table.column_names


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "var",
    ["n_boot=0", "n_boot=2.5", "n_boot=true", "seed=-1", "seed=x", "q_threshold=0",
     "q_threshold=1", "q_threshold=1.5", "fdr_family=model"],
)  # fmt: skip
def test_lce_build_refuses_bad_correlation_vars_and_keeps_the_file(
    var: str, toy_home: Path, tmp_path: Path
) -> None:
    db = tmp_path / "lce.duckdb"
    shutil.copy(toy_home / "lce.duckdb", db)
    before = _sha(db)
    code, out = lce("build", "--lake", toy_home / "lake", "--db", db, "--var", var)
    assert code != 0
    key = var.split("=")[0]
    assert key in out and len(out.strip().splitlines()) == 1, out
    assert _sha(db) == before
    assert not list(tmp_path.glob(".lce.duckdb.build-*"))


@pytest.mark.parametrize("n", [3, 4, 5])
def test_bootstrap_enumerates_every_resample_when_there_are_fewer_than_requested(n: int) -> None:
    """n models have C(2n - 1, n) distinct resamples (3: 10, 4: 35, 5: 126), fewer than 1000:
    the interval must be the exact bootstrap one, here the percentiles of r over all n^n ordered
    draws from itertools.product, by scipy.stats.pearsonr."""
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 2))
    y = x[:, 0] + rng.normal(size=n)
    assert inference.distinct_resamples(n) == len(
        set(itertools.combinations_with_replacement(range(n), n))
    ) == {3: 10, 4: 35, 5: 126}[n]  # fmt: skip
    lo, hi, used = inference.bootstrap_intervals(x, y, 1000, 0)
    for j in range(2):
        rs, distinct = [], set()
        for draw in itertools.product(range(n), repeat=n):
            xb, yb = x[list(draw), j], y[list(draw)]
            if np.ptp(xb) > 0 and np.ptp(yb) > 0:
                rs.append(sps.pearsonr(xb, yb).statistic)
                distinct.add(tuple(sorted(draw)))
        assert (lo[j], hi[j]) == pytest.approx(tuple(np.percentile(rs, [2.5, 97.5])), abs=1e-9)
        assert used[j] == len(distinct)  # distinct resamples with an r
