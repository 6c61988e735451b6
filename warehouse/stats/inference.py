"""Correlation statistics for the warehouse: Pearson, Spearman, a bootstrap interval, BH q-values.

Plain numpy/scipy functions, shared by the correlation marts and the tests. Why not call
``scipy.stats.pearsonr`` directly: it squares the raw values, so benchmark values near the
float64 limit (+-1e308) overflow and come out as r = 0, p = 1 with no warning. Here every vector
is first divided by its largest absolute value, then centred and scaled to unit length, so no
intermediate can overflow; r is then a plain dot product.

Undefined statistics (fewer than 3 points, a constant side, a non-finite value) are NaN, which
the marts publish as null: a null says "no correlation can be computed", never r = 0.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import stats

MIN_POINTS = 3
# Exact enumeration of bootstrap resamples is used up to this many models (n! / prod(count!)
# stays an exact int64 weight; C(39, 20) resamples is far beyond any n_boot anyway).
MAX_EXACT_MODELS = 20
# Bootstrap resamples are drawn in chunks of at most this many numbers, so memory stays bounded
# whatever the number of models, features and resamples.
_CHUNK_VALUES = 4_000_000


def standardise(values: np.ndarray) -> np.ndarray | None:
    """Centred, unit-length copy of a vector (scaled by max |x| first, so +-1e308 cannot
    overflow); None when the vector is constant, too short or not finite."""
    x = np.asarray(values, dtype=float)
    if x.size < MIN_POINTS or not np.all(np.isfinite(x)) or np.all(x == x[0]):
        return None
    z = x / np.max(np.abs(x))
    z = z - z.mean()
    norm = float(np.sqrt(np.dot(z, z)))
    if norm == 0.0 or not np.isfinite(norm):
        return None
    return z / norm


def pearson(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Pearson r and its two-sided p (t distribution, n - 2 degrees of freedom); NaN, NaN when
    undefined (fewer than 3 points, a constant side, a non-finite value)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"pearson: x has {x.size} values, y has {y.size}")
    zx, zy = standardise(x), standardise(y)
    if zx is None or zy is None:
        return float("nan"), float("nan")
    r = float(np.clip(np.dot(zx, zy), -1.0, 1.0))
    return r, r_p_value(r, x.size)


def r_p_value(r: float, n: int) -> float:
    """Two-sided p of a correlation r over n points: t = r sqrt((n-2) / (1-r^2)) on n - 2 df."""
    if not np.isfinite(r) or n < MIN_POINTS:
        return float("nan")
    df = n - 2
    if abs(r) >= 1.0:
        return 0.0
    t = r * np.sqrt(df / ((1.0 - r) * (1.0 + r)))
    return float(min(1.0, 2.0 * stats.t.sf(abs(t), df)))


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Spearman rho (Pearson r of average ranks, so ties share a rank) and its two-sided p by
    the same t approximation scipy.stats.spearmanr uses; NaN, NaN when undefined."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.size < MIN_POINTS or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return float("nan"), float("nan")
    return pearson(stats.rankdata(x), stats.rankdata(y))


def distinct_resamples(n: int) -> int:
    """How many different resamples with replacement n models have: multisets of size n from n,
    C(2n - 1, n) (3 models: 10; 7 models: 1716)."""
    return math.comb(2 * n - 1, n) if n > 0 else 0


def every_resample(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct resample of n models (rows of model indices, sorted) and how many of the
    n^n equally likely ordered draws give it (n! / prod(count!)): the exact bootstrap
    distribution, whose weights sum to n^n."""
    rows = np.array(list(itertools.combinations_with_replacement(range(n), n)), dtype=np.int64)
    counts = np.apply_along_axis(np.bincount, 1, rows, minlength=n)
    weights = np.array(
        [math.factorial(n) // math.prod(math.factorial(int(c)) for c in row) for row in counts],
        dtype=np.int64,
    )
    return rows, weights


def weighted_percentile(values: np.ndarray, weights: np.ndarray, q: list[float]) -> np.ndarray:
    """``numpy.percentile(values repeated weights times, q)`` (linear interpolation) without
    building the repeated array."""
    order = np.argsort(values, kind="stable")
    values, cum = values[order], np.cumsum(weights[order])
    out = []
    for h in np.asarray(q, dtype=float) / 100.0 * (cum[-1] - 1):
        below = int(np.floor(h))
        lo = values[np.searchsorted(cum, below, side="right")]
        hi = values[np.searchsorted(cum, min(below + 1, cum[-1] - 1), side="right")]
        out.append(lo + (h - below) * (hi - lo))
    return np.array(out)


def bootstrap_intervals(
    x: np.ndarray, y: np.ndarray, n_boot: int, seed: int, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of Pearson r for each column of ``x`` against ``y``.

    The rows (models) are resampled with replacement. n models have only C(2n - 1, n) distinct
    resamples (3 models: 10); when that is at most ``n_boot`` every distinct resample is
    enumerated once, weighted by its probability, and the interval is the exact bootstrap one
    (the percentiles of all n^n equally likely draws). Otherwise ``n_boot`` resamples are drawn
    from a generator seeded with ``seed``: the same models and seed give the same interval
    whatever else the build holds. All columns share each resample (one draw of models), which
    is what "resampling models" means. Resamples in which a side is constant (likely with few
    models) have no r and are left out, and counted: when one model carries the whole signal
    (say, the only model with units of a category) every resample without it is skipped, and
    the interval describes only the resamples that contain it; the count says how many that
    was. An interval is NaN when the full data's r is undefined or no resample has an r.

    Returns (lo, hi, used), each of length ``x.shape[1]``; used = resamples with an r (distinct
    ones when enumerated, drawn ones otherwise).
    """
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    y = np.asarray(y, dtype=float)
    n, k = x.shape
    lo = np.full(k, np.nan)
    hi = np.full(k, np.nan)
    used = np.zeros(k, dtype=int)
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if n < MIN_POINTS or standardise(y) is None:
        return lo, hi, used
    defined = [j for j in range(k) if standardise(x[:, j]) is not None]
    if not defined:
        return lo, hi, used
    # Scale once by max |value| (as standardise does), so resampled sums cannot overflow.
    xs = x[:, defined] / np.max(np.abs(x[:, defined]), axis=0)
    ys = y / np.max(np.abs(y))
    if n <= MAX_EXACT_MODELS and distinct_resamples(n) <= n_boot:
        index, weights = every_resample(n)
    else:
        index = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
        weights = np.ones(n_boot, dtype=np.int64)
    rs = _resampled_r(xs, ys, index)
    tail = 100.0 * (1.0 - level) / 2.0
    for col, j in enumerate(defined):
        ok = ~np.isnan(rs[:, col])
        used[j] = int(ok.sum())
        if used[j]:
            lo[j], hi[j] = weighted_percentile(rs[ok, col], weights[ok], [tail, 100.0 - tail])
    return lo, hi, used


def _resampled_r(xs: np.ndarray, ys: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Pearson r of every column of xs against ys for each resample (row of ``index``); NaN
    where a side of the resample is constant. Chunked so memory stays bounded."""
    n, width = xs.shape
    chunk = max(1, _CHUNK_VALUES // max(1, n * width))
    rs = np.empty((len(index), width))
    for start in range(0, len(index), chunk):
        idx = index[start : start + chunk]
        drawn_x = xs[idx]  # (b, n, k)
        drawn_y = ys[idx]  # (b, n)
        xb = drawn_x - drawn_x.mean(axis=1, keepdims=True)
        yb = drawn_y - drawn_y.mean(axis=1, keepdims=True)
        num = np.einsum("bnk,bn->bk", xb, yb)
        den = np.sqrt(np.einsum("bnk,bnk->bk", xb, xb) * np.einsum("bn,bn->b", yb, yb)[:, None])
        # A resample whose models all share one value has no r; rounding can leave a tiny
        # non-zero spread there, so "constant" is judged on the drawn values themselves.
        flat_x = np.all(drawn_x == drawn_x[:, :1, :], axis=1)
        flat_y = np.all(drawn_y == drawn_y[:, :1], axis=1)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.clip(num / den, -1.0, 1.0)
        r[flat_x | flat_y | (den == 0)] = np.nan
        rs[start : start + len(idx)] = r
    return rs


def bh_q_values(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q) over one family of tests.

    q_(i) = min over j >= i of p_(j) m / j, capped at 1, for the m defined p-values (NaN p-values
    are not tests: they stay NaN and do not count in m). Equal to
    ``scipy.stats.false_discovery_control(p, method='bh')`` on the defined values.
    """
    p = np.asarray(p, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return q
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    values = p[ok]
    order = np.argsort(values, kind="stable")
    ranked = values[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    q[ok] = out
    return q
