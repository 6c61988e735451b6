"""How stable are the embedding and the model categories? A bootstrap over each model's units.

A model's concept profile is a count of its interpretable units per concept, so another probe
set or another dissection would give another sample of units. Each resample draws, for every
embedded model, as many units as it has (its primary layer's units, interpretable or not) with
replacement, rebuilds the profiles with the full data's concept columns and normalisation
(``fct_concept_profiles``: n_units / concepts of the category), and refits the PCA and k-means
with the full data's settings and k. dbt's ``fct_lce_resamples`` stores every resample;
SQL marts summarise it (co-assignment shares, intervals) and ``fct_model_category_stability``
scores each resample's partition by the adjusted Rand index.

The draw order is part of the contract (tests replay it): ``numpy.random.default_rng(seed)``;
for each resample, for each embedded model in sorted order, ``rng.integers(0, n, n)`` picks the
model's units, sorted by unit number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from threadpoolctl import threadpool_limits

from warehouse import dbt_vars
from warehouse.stats import arrow, embedding, marts


@dataclass(frozen=True)
class UnitColumns:
    """Each embedded model's units as profile columns (-1: not interpretable)."""

    models: list[str]
    columns: list[np.ndarray]  # per model, one column index per unit (sorted by unit)
    divisor: np.ndarray  # per profile column: the concepts of its category (normalisation)


@dataclass(frozen=True)
class Bootstrap:
    models: list[str]
    labels: np.ndarray  # resamples x models: category ids 1..k (ordered as dim_model_categories)
    scores: np.ndarray  # resamples x models x components, Procrustes-aligned to the full scores
    explained_variance_ratio: np.ndarray  # resamples x components (0 beyond a resample's rank)


def parse_resamples(value: Any) -> int:
    """dbt hands vars to Python models as text: a positive integer."""
    return int(dbt_vars.from_dbt("stability_resamples", value))


def parse_seed(value: Any) -> int:
    return int(dbt_vars.from_dbt("seed", value))


def unit_columns(inputs: marts.MartInputs, units: pd.DataFrame) -> UnitColumns:
    """Map each embedded model's primary-layer units (``fct_unit_labels``) to profile columns.

    The columns and the divisor are those of the full profiles, so a resample that drew every
    unit exactly once reproduces the full profile matrix bit for bit.
    """
    profiles = marts.embedding_profiles(inputs)
    index = {
        key: j for j, key in enumerate(zip(profiles.categories, profiles.concepts, strict=True))
    }
    long = inputs.profiles
    per_category = (long["n_units"].astype(float) / long["weight"].astype(float)).round()
    divisors = dict(zip(long["category"], per_category, strict=True))
    divisor = np.array([divisors[c] for c in profiles.categories], dtype=float)
    primary = units[units["is_primary_layer"].astype(bool)]
    columns = []
    for model in profiles.models:
        rows = primary[primary["model"] == model].sort_values("unit")
        cols = [
            index[(category, concept)] if interpretable else -1
            for category, concept, interpretable in zip(
                rows["category"], rows["concept"], rows["is_interpretable"].astype(bool),
                strict=True,
            )
        ]  # fmt: skip
        columns.append(np.array(cols, dtype=np.int64))
    return UnitColumns(profiles.models, columns, divisor)


def resample_profiles(table: UnitColumns, rng: np.random.Generator) -> np.ndarray:
    """One bootstrap draw of the profile matrix (models x concepts)."""
    matrix = np.zeros((len(table.models), table.divisor.size))
    for i, cols in enumerate(table.columns):
        n = cols.size
        drawn = cols[rng.integers(0, n, n)] if n else cols
        counts = np.bincount(drawn[drawn >= 0], minlength=table.divisor.size)
        matrix[i] = counts / table.divisor
    return matrix


def procrustes_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The orthogonal R minimising ||a R - b|| (Schönemann): U V' of the SVD of a' b."""
    u, _, vt = np.linalg.svd(a.T @ b)
    return u @ vt


def _pad(matrix: np.ndarray, columns: int) -> np.ndarray:
    if matrix.shape[1] >= columns:
        return matrix[:, :columns]
    return np.hstack([matrix, np.zeros((matrix.shape[0], columns - matrix.shape[1]))])


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """Hubert & Arabie's adjusted Rand index of two partitions (1 for identical ones).

    When the expected and maximal index coincide (both partitions trivial: one cluster, or
    every item alone) there is nothing to adjust and two equal partitions score 1, as
    scikit-learn does.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    n = a.size
    if n < 2:
        return 1.0
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(table, (ia, ib), 1)
    pairs = float((table * (table - 1)).sum() / 2)
    rows = float((table.sum(axis=1) * (table.sum(axis=1) - 1)).sum() / 2)
    cols = float((table.sum(axis=0) * (table.sum(axis=0) - 1)).sum() / 2)
    total = n * (n - 1) / 2
    expected = rows * cols / total
    maximum = (rows + cols) / 2
    if maximum == expected:
        return 1.0
    return (pairs - expected) / (maximum - expected)


def full_fit(inputs: marts.MartInputs) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The published embedding: models, scores (fct_lce) and categories (dim_model_categories)."""
    profiles = marts.embedding_profiles(inputs)
    fit = embedding.fit_pca(profiles.matrix, int(inputs.n_components))
    categories = marts.dim_model_categories(inputs).to_pandas().set_index("model")
    ids = categories.loc[profiles.models, "category_id"].to_numpy(dtype=int)
    return profiles.models, fit.scores, ids


def bootstrap(
    inputs: marts.MartInputs, units: pd.DataFrame, n_resamples: int, seed: int
) -> Bootstrap:
    """B resamples of every embedded model's units; PCA and k-means refitted on each."""
    if n_resamples < 1:
        raise ValueError(f"stability_resamples must be at least 1, got {n_resamples}")
    table = unit_columns(inputs, units)
    models, full_scores, full_ids = full_fit(inputs)
    k = len(set(full_ids.tolist()))
    n_models, n_comp = full_scores.shape
    rng = np.random.default_rng(seed)
    labels = np.zeros((n_resamples, n_models), dtype=int)
    scores = np.zeros((n_resamples, n_models, n_comp))
    ratios = np.zeros((n_resamples, n_comp))
    # One thread: on a busy machine OpenMP's k-means threads wait on each other (measured on
    # 2 shared cores: 180 ms per fit instead of 5 ms), and these matrices are tiny.
    with threadpool_limits(1):
        for b in range(n_resamples):
            matrix = resample_profiles(table, rng)
            scores[b], ratios[b], labels[b] = refit(
                matrix, int(inputs.n_components), full_scores, k
            )
    return Bootstrap(models, labels, scores, ratios)


def refit(
    matrix: np.ndarray, n_components: int, full_scores: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA and k-means refitted on another profile matrix (same models, same order) with the
    full data's settings and k: (scores rotated onto ``full_scores`` by orthogonal Procrustes,
    explained-variance ratios padded with 0 to the full components, category ids 1..k ordered
    as dim_model_categories' by the aligned first component)."""
    n_models, n_comp = full_scores.shape
    fit = embedding.fit_pca(matrix, n_components)
    resampled = _pad(fit.scores, n_comp)
    aligned = resampled @ procrustes_rotation(resampled, full_scores)
    ratios = _pad(fit.explained_variance_ratio[None, :], n_comp)[0]
    raw = embedding.kmeans_labels(matrix, k) if n_models else np.zeros(0, dtype=int)
    labels = embedding.order_by_score(raw, aligned) if n_comp else raw + 1
    return aligned, ratios, labels


def fct_lce_resamples(boot: Bootstrap) -> pa.Table:
    """One row per (resample, model, component); component is null without components."""
    n_resamples, n_models, n_comp = boot.scores.shape
    rows: list[tuple] = []
    for b in range(n_resamples):
        for i, model in enumerate(boot.models):
            category = int(boot.labels[b, i])
            if n_comp == 0:
                rows.append((b + 1, model, category, None, None, None))
            for c in range(n_comp):
                rows.append(
                    (
                        b + 1, model, category, c + 1, float(boot.scores[b, i, c]),
                        float(boot.explained_variance_ratio[b, c]),
                    )
                )  # fmt: skip
    return arrow.table(
        rows,
        [
            ("resample", pa.int32()),
            ("model", pa.string()),
            ("category_id", pa.int32()),
            ("component", pa.int32()),
            ("score", pa.float64()),
            ("explained_variance_ratio", pa.float64()),
        ],
    )


def _partitions(resamples: pd.DataFrame) -> pd.DataFrame:
    """resample x model table of category ids from fct_lce_resamples rows."""
    one = resamples[["resample", "model", "category_id"]].drop_duplicates()
    return one.pivot(index="resample", columns="model", values="category_id").sort_index()


def fct_model_category_stability(resamples: pd.DataFrame, categories: pd.DataFrame) -> pa.Table:
    """Adjusted Rand index of each resample's partition against the published one."""
    rows: list[tuple] = []
    if not resamples.empty and not categories.empty:
        wide = _partitions(resamples)
        full = categories.set_index("model").loc[list(wide.columns), "category_id"].to_numpy()
        for resample, labels in zip(wide.index.tolist(), wide.to_numpy(), strict=True):
            ari = adjusted_rand_index(labels, full)
            rows.append((int(resample), ari, same_partition(labels, full)))
    return arrow.table(
        rows,
        [
            ("resample", pa.int32()),
            ("adjusted_rand_index", pa.float64()),
            ("same_partition", pa.bool_()),
        ],
    )


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to renaming the categories."""
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def model_stability(categories: pd.DataFrame, coassignment: pd.DataFrame) -> dict[str, float]:
    """Per model: mean over the other models of agreement with the published partition.

    Agreement with another model is the share of resamples that put the two together when the
    published categories do, and the share that keep them apart when they do not.
    """
    ids = dict(zip(categories["model"], categories["category_id"], strict=True))
    share = {
        (a, b): float(s)
        for a, b, s in zip(
            coassignment["model_a"], coassignment["model_b"], coassignment["share"], strict=True
        )
    }
    result: dict[str, float] = {}
    for model in ids:
        agreements = [
            share[(model, other)] if ids[model] == ids[other] else 1.0 - share[(model, other)]
            for other in ids
            if other != model and (model, other) in share
        ]
        if agreements:
            result[model] = float(np.mean(agreements))
    return result


def with_stability(categories: pa.Table, coassignment: pd.DataFrame) -> pa.Table:
    """dim_model_categories plus its ``stability`` column (null without another model)."""
    frame = categories.to_pandas()
    stability = model_stability(frame, coassignment)
    values = [stability.get(m) for m in frame["model"]]
    return categories.append_column("stability", pa.array(values, type=pa.float64()))
