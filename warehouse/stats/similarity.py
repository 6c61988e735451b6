"""Geometry beside concepts: representational similarity between models on the same images.

Four measures between two models' per-image feature matrices (the spatial mean of each unit's
map, lake table ``image_features``), over the images both have:

- ``linear_cka``: centred kernel alignment with linear kernels (Kornblith et al. 2019),
  ||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F) on column-centred X, Y;
- ``debiased_cka``: the same with Song et al.'s (2012) unbiased HSIC estimator in place of the
  biased one (Nguyen et al. 2021), on the centred features' linear kernels;
- ``mutual_knn``: mutual k-nearest-neighbour alignment (Huh et al. 2024): the mean share of an
  image's k nearest neighbours (cosine similarity, itself excluded, ties to the lower image
  index) that the two models have in common; k/(n - 1) is chance;
- ``procrustes``: the angular Procrustes shape distance (Williams et al. 2021) between the
  centred, unit-Frobenius-norm matrices, arccos of the nuclear norm of X'Y (the narrower one
  zero-padded, so the widths may differ): 0 when one is a rotation of the other.

Memory is bounded by the feature matrices themselves: CKA and Procrustes use feature-space
Gram matrices (p x q, accumulated over row chunks in float64), and the k nearest neighbours are
found a chunk of rows at a time; no images x images matrix is ever formed. The vectors are read
from the lake one (model, layer) partition at a time (the published file does not carry them).
"""

from __future__ import annotations

import itertools
import math
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse import dbt_vars
from warehouse.lake import conform, partition_dir
from warehouse.paths import lake_dir
from warehouse.stats import arrow, inference

MEASURES = ("linear_cka", "debiased_cka", "mutual_knn", "procrustes")
# How each measure becomes a distance for the agreement with the concept embedding.
AS_DISTANCE: dict[str, Callable[[float], float]] = {
    "linear_cka": lambda v: 1.0 - v,
    "debiased_cka": lambda v: 1.0 - v,
    "mutual_knn": lambda v: 1.0 - v,
    "procrustes": lambda v: v,
}
_ROW_CHUNK = 4096  # rows per float64 block of the Gram accumulation
_SIMILARITY_VALUES = 1 << 23  # similarities per k-NN block (chunk x n float32: 32 MB)
_CACHE_BYTES = 2 << 30  # feature matrices kept in memory between pairs


@dataclass(frozen=True)
class Settings:
    k: int = dbt_vars.SPEC["similarity_k"].default
    min_images: int = dbt_vars.SPEC["similarity_min_images"].default
    permutations: int = dbt_vars.SPEC["similarity_permutations"].default
    seed: int = dbt_vars.SPEC["seed"].default
    null_permutations: int = dbt_vars.SPEC["similarity_null_permutations"].default


NULL_ALPHA = 0.05  # the calibration threshold is the null's (1 - alpha) quantile
# The most similar value each measure can take: calibrated scores are scaled to reach 1 there.
# Procrustes is a distance (0 = one matrix a rotation of the other), so its direction flips.
BEST = {"linear_cka": 1.0, "debiased_cka": 1.0, "mutual_knn": 1.0, "procrustes": 0.0}


def settings(
    k: Any, min_images: Any, permutations: Any, seed: Any, null_permutations: Any = 99
) -> Settings:
    """Settings from a dbt Python model's (text) config values."""
    return Settings(
        k=dbt_vars.from_dbt("similarity_k", k),
        min_images=dbt_vars.from_dbt("similarity_min_images", min_images),
        permutations=dbt_vars.from_dbt("similarity_permutations", permutations),
        seed=dbt_vars.from_dbt("seed", seed),
        null_permutations=dbt_vars.from_dbt("similarity_null_permutations", null_permutations),
    )


# ---------------------------------------------------------------------------- the measures


@dataclass
class Moments:
    """What the measures need of one centred matrix X (n x p), computed once per model."""

    x: np.ndarray  # the matrix as given (float32 or float64), not centred
    mean: np.ndarray  # column means, float64
    gram_sq: float  # ||Xc'Xc||_F^2
    row_sq: np.ndarray  # ||xc_i||^2 per image (diagonal of K = Xc Xc')
    row_sum: np.ndarray  # K~ 1: row sums of K with its diagonal zeroed
    k_sum: float  # 1' K~ 1


def _blocks(n: int) -> range:
    return range(0, n, _ROW_CHUNK)


def _centred(m: Moments, start: int) -> np.ndarray:
    return m.x[start : start + _ROW_CHUNK].astype(np.float64) - m.mean


def moments(x: np.ndarray) -> Moments:
    """Column means, the feature-space Gram's norm and the kernel's row sums, in row chunks."""
    n, p = x.shape
    mean = x.mean(axis=0, dtype=np.float64)
    m = Moments(x, mean, 0.0, np.zeros(n), np.zeros(n), 0.0)
    gram = np.zeros((p, p))
    total = np.zeros(p)
    for s in _blocks(n):
        xc = _centred(m, s)
        gram += xc.T @ xc
        total += xc.sum(axis=0)
        m.row_sq[s : s + len(xc)] = np.einsum("ij,ij->i", xc, xc)
    for s in _blocks(n):  # K 1 = Xc (Xc' 1); the diagonal comes off
        m.row_sum[s : s + _ROW_CHUNK] = _centred(m, s) @ total - m.row_sq[s : s + _ROW_CHUNK]
    m.gram_sq = float(np.sum(gram * gram))
    m.k_sum = float(total @ total - m.row_sq.sum())
    return m


def cross_gram(a: Moments, b: Moments) -> np.ndarray:
    """Xc'Yc (p x q), accumulated over row chunks in float64."""
    out = np.zeros((a.x.shape[1], b.x.shape[1]))
    for s in _blocks(len(a.x)):
        out += _centred(a, s).T @ _centred(b, s)
    return out


def _unbiased_hsic(
    trace_kl: float, row_a: np.ndarray, row_b: np.ndarray, sum_a: float, sum_b: float, n: int
) -> float:
    """Song et al. (2012), eq. 5, from tr(K~L~), K~1, L~1, 1'K~1 and 1'L~1."""
    return (
        trace_kl + sum_a * sum_b / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(row_a @ row_b)
    ) / (n * (n - 3))


def gram_measures(a: Moments, b: Moments) -> dict[str, float]:
    """Linear CKA, debiased CKA and the Procrustes distance of two aligned matrices."""
    n = len(a.x)
    cross = cross_gram(a, b)
    cross_sq = float(np.sum(cross * cross))  # tr(KL) = ||Xc'Yc||_F^2
    denominator = np.sqrt(a.gram_sq * b.gram_sq)
    linear = cross_sq / denominator if denominator > 0 else float("nan")
    debiased = float("nan")
    if n >= 4:
        hsic_ab = _unbiased_hsic(
            cross_sq - float(a.row_sq @ b.row_sq), a.row_sum, b.row_sum, a.k_sum, b.k_sum, n
        )
        hsic_aa = _unbiased_hsic(
            a.gram_sq - float(a.row_sq @ a.row_sq), a.row_sum, a.row_sum, a.k_sum, a.k_sum, n
        )
        hsic_bb = _unbiased_hsic(
            b.gram_sq - float(b.row_sq @ b.row_sq), b.row_sum, b.row_sum, b.k_sum, b.k_sum, n
        )
        if hsic_aa > 0 and hsic_bb > 0:
            debiased = hsic_ab / float(np.sqrt(hsic_aa * hsic_bb))
    norms = float(np.sqrt(a.row_sq.sum() * b.row_sq.sum()))  # ||Xc||_F ||Yc||_F
    procrustes = float("nan")
    if norms > 0:
        nuclear = float(np.linalg.svd(cross, compute_uv=False).sum()) / norms
        procrustes = float(np.arccos(np.clip(nuclear, -1.0, 1.0)))
    return {"linear_cka": linear, "debiased_cka": debiased, "procrustes": procrustes}


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    return gram_measures(moments(x), moments(y))["linear_cka"]


def debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    return gram_measures(moments(x), moments(y))["debiased_cka"]


def procrustes_distance(x: np.ndarray, y: np.ndarray) -> float:
    return gram_measures(moments(x), moments(y))["procrustes"]


def knn_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Each row's k nearest other rows by cosine similarity (n x k, ascending index order);
    ties at the k-th place go to the lower index. A zero row is at similarity 0 to all.
    Computed a block of rows at a time: memory is a block x n, never n x n."""
    n = len(x)
    if not 1 <= k < n:
        raise ValueError(f"k = {k} needs between 1 and {n - 1} neighbours")
    norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    unit = (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    out = np.empty((n, k), dtype=np.int64)
    chunk = max(1, _SIMILARITY_VALUES // n)
    for s in range(0, n, chunk):
        sim = unit[s : s + chunk] @ unit.T
        rows = np.arange(len(sim))
        sim[rows, s + rows] = -np.inf  # not its own neighbour
        kth = np.partition(sim, n - k, axis=1)[:, n - k : n - k + 1]
        above = sim > kth
        tied = sim == kth
        room = k - above.sum(axis=1, keepdims=True)
        take = above | (tied & (np.cumsum(tied, axis=1) <= room))
        out[s : s + len(sim)] = np.nonzero(take)[1].reshape(-1, k)
    return out


def knn_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of common neighbours between two (n x k) neighbour index matrices."""
    k = a.shape[1]
    common = 0
    for s in range(0, len(a), _ROW_CHUNK):
        common += int((a[s : s + _ROW_CHUNK, :, None] == b[s : s + _ROW_CHUNK, None, :]).sum())
    return common / (len(a) * k)


def mutual_knn(x: np.ndarray, y: np.ndarray, k: int) -> float:
    return knn_overlap(knn_indices(x, k), knn_indices(y, k))


# ---------------------------------------------------------------------------- reading features


def features_lake() -> Path:
    """The lake the build reads: LCE_LAKE (what `lce build` sets), else $LCE_HOME/lake, as the
    dbt project's lake_dir macro."""
    env = os.environ.get("LCE_LAKE")
    return Path(env) if env else lake_dir()


def read_features(lake: Path, model: str, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """One (model, layer) partition of image_features: images (sorted) and an (n, p) float32
    matrix, built from the list column's flat values (no per-image Python loop)."""
    folder = partition_dir(lake, "image_features", {"model": model, "layer": layer})
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    tables = [conform("image_features", pq.read_table(f)) for f in files]
    if not tables:
        return np.array([], dtype=object), np.zeros((0, 0), dtype=np.float32)
    table = pa.concat_tables(tables)
    images = np.array(table.column("image").to_pylist(), dtype=object)
    column = table.column("features").combine_chunks()
    if not table.num_rows or not isinstance(column, pa.ListArray):
        return images, np.zeros((0, 0), dtype=np.float32)
    lengths = np.diff(column.offsets.to_numpy())
    if len(set(lengths.tolist())) > 1:
        raise ValueError(f"image_features {model!r} {layer!r}: vectors of different lengths")
    flat = column.flatten().to_numpy(zero_copy_only=False)
    matrix = flat.reshape(len(images), int(lengths[0]) if len(lengths) else 0)
    order = np.argsort(images, kind="stable")
    return images[order], matrix[order]


# ---------------------------------------------------------------------------- the marts


def feature_layers(index: pd.DataFrame, models: pd.DataFrame) -> dict[str, str]:
    """{model: primary layer} for the models with image features on their primary layer
    (dim_models.primary_layer; ``index`` is stg_image_features): the layers the geometry and
    unit-matching marts compare."""
    primary = {
        str(r.model): str(r.primary_layer)
        for r in models.itertuples()
        if isinstance(r.primary_layer, str)
    }
    have = index[["model", "layer"]].drop_duplicates()
    return {
        m: primary[m]
        for m, la in zip(have["model"], have["layer"], strict=True)
        if primary.get(m) == la
    }


class FeatureCache:
    """Feature matrices, their moments and neighbours, per (model, image set), read lazily and
    kept up to a memory budget (the common case, every model on the same images, computes each
    model's moments and neighbours once). ``layers`` says which layer of each model is read;
    ``k`` is the neighbours ``subset`` finds (readers of ``images`` alone leave it)."""

    def __init__(self, lake: Path, layers: dict[str, str], k: int = 1) -> None:
        self.lake, self.layers, self.k = lake, layers, k
        self.raw: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.derived: dict[tuple[str, bytes], tuple[Moments, np.ndarray | None]] = {}

    def images(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        if model in self.raw:
            self.raw.move_to_end(model)
            return self.raw[model]
        data = read_features(self.lake, model, self.layers[model])
        self.raw[model] = data
        while sum(m.nbytes for _, m in self.raw.values()) > _CACHE_BYTES and len(self.raw) > 2:
            self.raw.popitem(last=False)
        return data

    def subset(self, model: str, rows: np.ndarray) -> tuple[Moments, np.ndarray | None]:
        """The model's rows ``rows``: their moments (with the matrix attached) and neighbours.
        Only the vectors are kept between pairs, never the matrix (that is ``images``' cache)."""
        images, matrix = self.images(model)
        x = matrix if np.array_equal(rows, np.arange(len(images))) else matrix[rows]
        key = (model, rows.tobytes())
        if key not in self.derived:
            neighbours = knn_indices(x, self.k) if self.k < len(x) else None
            m = replace(moments(x), x=np.zeros((0, 0), dtype=np.float32))
            self.derived = {k: v for k, v in self.derived.items() if k[0] != model}
            self.derived[key] = (m, neighbours)
        m, neighbours = self.derived[key]
        return replace(m, x=x), neighbours


# ---------------------------------------------------------------------------- the permutation null


def permuted_measures(
    a: Moments, b: Moments, knn_a: np.ndarray | None, knn_b: np.ndarray | None, order: np.ndarray
) -> dict[str, float]:
    """The measures with model B's image i replaced by its image ``order[i]``: B's moments are
    permuted, not recomputed (means and norms do not depend on the row order), and B's
    neighbour lists are renamed into the permuted image ids."""
    moved = replace(b, x=b.x[order], row_sq=b.row_sq[order], row_sum=b.row_sum[order])
    values = gram_measures(a, moved)
    values["mutual_knn"] = float("nan")
    if knn_a is not None and knn_b is not None:
        rename = np.argsort(order)  # B's image j sits at position rename[j] after the shuffle
        values["mutual_knn"] = knn_overlap(knn_a, rename[knn_b[order]])
    return values


def calibrate(observed: float, null: np.ndarray, measure: str) -> dict[str, float]:
    """Groger, Wen & Brbic's calibration of one score against its permutation null: tau is the
    (1 - NULL_ALPHA) quantile (numpy's linear method) of the null scores together with the
    observed one, p = (1 + #{null at least as similar}) / (1 + K), and the calibrated score is
    0 up to tau and (observed - tau) / (best - tau) above it (1 at the measure's best value).
    For a distance (best below the null) every comparison flips."""
    keep = null[np.isfinite(null)]
    empty = {"null_mean": np.nan, "null_sd": np.nan, "null_p95": np.nan}
    if not np.isfinite(observed) or not len(keep):
        return {**empty, "p_value": np.nan, "calibrated": np.nan}
    sign = -1.0 if measure == "procrustes" else 1.0
    pool = sign * np.append(keep, observed)
    tau = float(np.quantile(pool, 1.0 - NULL_ALPHA))
    score, top = sign * observed, sign * BEST[measure]
    hits = int((sign * keep >= score - 1e-12).sum())
    calibrated = 0.0 if score <= tau or top <= tau else min(1.0, (score - tau) / (top - tau))
    return {
        "null_mean": float(keep.mean()),
        "null_sd": float(keep.std(ddof=1)) if len(keep) > 1 else np.nan,
        "null_p95": sign * tau,
        "p_value": (1 + hits) / (1 + len(keep)),
        "calibrated": calibrated,
    }


def null_scores(
    a: Moments,
    b: Moments,
    knn_a: np.ndarray | None,
    knn_b: np.ndarray | None,
    count: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """``count`` permutation null scores of every measure for one pair."""
    out = {m: np.empty(count) for m in MEASURES}
    for t in range(count):
        values = permuted_measures(a, b, knn_a, knn_b, rng.permutation(len(a.x)))
        for m in MEASURES:
            out[m][t] = values[m]
    return out


SIMILARITY_FIELDS: list[tuple[str, pa.DataType]] = [
    ("model_a", pa.string()),
    ("model_b", pa.string()),
    ("layer_a", pa.string()),
    ("layer_b", pa.string()),
    ("measure", pa.string()),
    ("value", pa.float64()),
    ("n_images", pa.int64()),
    ("null_mean", pa.float64()),
    ("null_sd", pa.float64()),
    ("null_p95", pa.float64()),
    ("p_value", pa.float64()),
    ("calibrated", pa.float64()),
    ("n_null", pa.int64()),
]
_NULL_COLUMNS = ("null_mean", "null_sd", "null_p95", "p_value", "calibrated")


def fct_model_similarity(
    index: pd.DataFrame, models: pd.DataFrame, lake: Path, settings: Settings
) -> pa.Table:
    """Every pair of models with image features on their primary layer (dim_models), both
    orders, each measure over the images both have. A pair sharing fewer than
    ``settings.min_images`` images (or too few for k neighbours) keeps its rows with a null
    value, so the skip is visible; ``index`` is stg_image_features (which images each has)."""
    layers = feature_layers(index, models)
    names = sorted(layers)
    cache = FeatureCache(lake, layers, settings.k)
    rows: list[tuple] = []
    for i, a in enumerate(names):
        for j, b in enumerate(names[i + 1 :], start=i + 1):
            images_a, _ = cache.images(a)
            images_b, _ = cache.images(b)
            shared, rows_a, rows_b = np.intersect1d(
                images_a, images_b, assume_unique=True, return_indices=True
            )
            n = len(shared)
            values: dict[str, float] = dict.fromkeys(MEASURES, float("nan"))
            null = {m: np.zeros(0) for m in MEASURES}
            if n >= max(settings.min_images, 4):
                ma, knn_a = cache.subset(a, rows_a)
                mb, knn_b = cache.subset(b, rows_b)
                values.update(gram_measures(ma, mb))
                if knn_a is not None and knn_b is not None:
                    values["mutual_knn"] = knn_overlap(knn_a, knn_b)
                rng = np.random.default_rng([settings.seed, i, j])
                null = null_scores(ma, mb, knn_a, knn_b, settings.null_permutations, rng)
            for measure in MEASURES:
                value = values[measure]
                cal = calibrate(value, null[measure], measure)
                extra = (*(cal[c] for c in _NULL_COLUMNS), len(null[measure]))
                for x, y in ((a, b), (b, a)):
                    rows.append((x, y, layers[x], layers[y], measure, value, n, *extra))
    return arrow.table(rows, SIMILARITY_FIELDS)


AGREEMENT_FIELDS: list[tuple[str, pa.DataType]] = [
    ("measure", pa.string()),
    ("mantel_r", pa.float64()),
    ("p_value", pa.float64()),
    ("n_models", pa.int64()),
    ("n_pairs", pa.int64()),
    ("n_permutations", pa.int64()),
    ("mantel_r_calibrated", pa.float64()),
    ("p_value_calibrated", pa.float64()),
]


def distance_matrix(
    frame: pd.DataFrame, models: list[str], column: str, a: str = "model_a", b: str = "model_b"
) -> np.ndarray:
    """A symmetric models x models matrix of ``column`` (NaN where a pair is absent)."""
    position = {m: i for i, m in enumerate(models)}
    out = np.full((len(models), len(models)), np.nan)
    for x, y, v in zip(frame[a], frame[b], frame[column], strict=True):
        if x in position and y in position and v is not None and np.isfinite(v):
            out[position[x], position[y]] = out[position[y], position[x]] = float(v)
    return out


def distinct_relabellings(n: int) -> int:
    """How many different ways n models can be relabelled: n! (identity included)."""
    return math.factorial(n)


def mantel(
    concept: np.ndarray, geometric: np.ndarray, permutations: int, seed: int
) -> tuple[float, float, int, int]:
    """Spearman r between the upper triangles (pairs defined in both), its one-sided permutation
    p, the pairs, and the relabellings p is over.

    n models have only n! distinct relabellings (3 models: 6). When n! is at most
    ``permutations`` every relabelling is enumerated once (identity included) and p is exact:
    #{r of a relabelled geometric matrix >= r} / n!. Otherwise p is the Monte Carlo estimate
    (1 + hits) / (1 + permutations) over ``default_rng(seed)``'s permutations. Drawing 999
    random relabellings of 3 models would only repeat the same 6 and claim a resolution of
    1/1000 that the data cannot have."""
    n = len(concept)
    upper = np.triu_indices(n, 1)

    def rho(g: np.ndarray) -> float:
        c, d = concept[upper], g[upper]
        keep = np.isfinite(c) & np.isfinite(d)
        return (
            inference.spearman(c[keep], d[keep])[0]
            if keep.sum() >= inference.MIN_POINTS
            else np.nan
        )

    def hit(order: np.ndarray) -> bool:
        value = rho(geometric[np.ix_(order, order)])
        return bool(np.isfinite(value) and value >= observed - 1e-12)

    observed = rho(geometric)
    pairs = int((np.isfinite(concept[upper]) & np.isfinite(geometric[upper])).sum())
    distinct = distinct_relabellings(n)
    exact = distinct <= permutations
    used = distinct if exact else permutations
    if not np.isfinite(observed):
        return float("nan"), float("nan"), pairs, used
    if exact:
        hits = sum(hit(np.array(order)) for order in itertools.permutations(range(n)))
        return float(observed), hits / distinct, pairs, used
    rng = np.random.default_rng(seed)
    hits = sum(hit(rng.permutation(n)) for _ in range(permutations))
    return float(observed), (1 + hits) / (1 + permutations), pairs, used


def fct_similarity_agreement(
    similarity: pd.DataFrame, distances: pd.DataFrame, settings: Settings
) -> pa.Table:
    """Per measure: how the geometric distances (1 - similarity; Procrustes as it is) rank the
    model pairs against the concept profiles' cosine distances (fct_model_distances), over the
    models in both, and the same for 1 - the calibrated score. Empty when no model has image
    features."""
    rows = []
    for measure in MEASURES:
        part = similarity[similarity["measure"] == measure]
        if part.empty:
            continue
        models = sorted(set(part["model_a"]) & set(distances["model_a"]))
        part = part.assign(distance=[AS_DISTANCE[measure](float(v)) for v in part["value"]])
        geometric = distance_matrix(part, models, "distance")
        concept = distance_matrix(distances, models, "cosine_distance")
        r, p, pairs, used = mantel(concept, geometric, settings.permutations, settings.seed)
        calibrated, p_cal = np.nan, np.nan
        if "calibrated" in part:
            part = part.assign(distance=1.0 - part["calibrated"].astype(float))
            cal = distance_matrix(part, models, "distance")
            calibrated, p_cal, _, _ = mantel(concept, cal, settings.permutations, settings.seed)
        if not np.isfinite(calibrated):
            p_cal = np.nan
        rows.append((measure, r, p, len(models), pairs, used, calibrated, p_cal))
    return arrow.table(rows, AGREEMENT_FIELDS)
