"""The correlation marts: components, concept categories and concepts against task results, and
components against concept categories, each with the same statistics and correction.

Every pair (feature, target) gets n, Pearson r and p, Spearman rho and p, a seeded percentile
bootstrap 95% interval of r (resampling models), and a Benjamini-Hochberg q over its family, so
"significant" (q below the dbt var ``q_threshold``) means the same thing in every mart, the
summary and the explorer. dbt's Python models hand their refs to these functions; the tests call
the same functions.

Families (dbt var ``fdr_family``): ``build`` corrects over all pairs of the mart in the build;
``task`` over each task family (the ``task`` column) separately. Each mart is its own family:
the concept mart has far more tests than the others and would otherwise drown them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from warehouse import dbt_vars
from warehouse.stats import arrow, inference

FDR_FAMILIES = dbt_vars.SPEC["fdr_family"].choices
RESULT_KEYS = ["task", "dataset", "metric", "higher_is_better"]
# What each concept category is measured by, named after fct_category_profiles' columns.
CATEGORY_MEASURES = ("n_units", "n_unique_concepts", "unit_share")

STAT_FIELDS: list[tuple[str, pa.DataType]] = [
    ("n", pa.int32()),
    ("pearson_r", pa.float64()),
    ("p_value", pa.float64()),
    ("spearman_rho", pa.float64()),
    ("spearman_p", pa.float64()),
    ("r_lo", pa.float64()),
    ("r_hi", pa.float64()),
    ("n_boot_used", pa.int32()),
    ("q_value", pa.float64()),
    ("significant", pa.bool_()),
    ("fdr_family", pa.string()),
    ("q_threshold", pa.float64()),
]
RESULT_FIELDS: list[tuple[str, pa.DataType]] = [
    ("task", pa.string()),
    ("dataset", pa.string()),
    ("metric", pa.string()),
    ("higher_is_better", pa.bool_()),
]


@dataclass(frozen=True)
class Settings:
    """The dbt vars of the correlation marts (defaults from warehouse/dbt_vars.py)."""

    n_boot: int = dbt_vars.SPEC["n_boot"].default
    seed: int = dbt_vars.SPEC["seed"].default
    q_threshold: float = dbt_vars.SPEC["q_threshold"].default
    fdr_family: str = dbt_vars.SPEC["fdr_family"].default


def settings(n_boot: Any, seed: Any, q_threshold: Any, fdr_family: Any) -> Settings:
    """Settings from a dbt Python model's config values (dbt hands vars over as text; unset
    means the default).

    ``lce build`` refuses bad values before dbt runs; this check is for `dbt build` run by hand,
    where a ValueError fails the model and dbt leaves the other marts as they were.
    """
    return Settings(
        n_boot=dbt_vars.from_dbt("n_boot", n_boot),
        seed=dbt_vars.from_dbt("seed", seed),
        q_threshold=dbt_vars.from_dbt("q_threshold", q_threshold),
        fdr_family=dbt_vars.from_dbt("fdr_family", fdr_family),
    )


# ----------------------------------------------------------------------------------------------
# Features: one column per thing correlated, one row per embedded model
# ----------------------------------------------------------------------------------------------


def embedded_models(models: pd.DataFrame) -> list[str]:
    return sorted(models.loc[models["in_embedding"].astype(bool), "model"].tolist())


def category_features(category_profiles: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """Embedded models x (category, measure): interpretable units, distinct concepts and the
    category's share of the model's interpretable units (0 where a model has none of the
    category: a count of zero is a count)."""
    keep = embedded_models(models)
    rows = category_profiles[category_profiles["model"].isin(keep)]
    categories = sorted(set(rows["category"].dropna()))
    total = models.set_index("model")["n_interpretable_units"].astype(float)
    columns: dict[tuple[str, str], pd.Series] = {}
    for category in categories:
        part = rows[rows["category"] == category].set_index("model")
        units = part["n_units"].astype(float).reindex(keep, fill_value=0.0)
        concepts = part["n_unique_concepts"].astype(float).reindex(keep, fill_value=0.0)
        columns[(category, "n_units")] = units
        columns[(category, "n_unique_concepts")] = concepts
        columns[(category, "unit_share")] = units / total.reindex(keep)
    return pd.DataFrame(columns, index=pd.Index(keep, name="model"))


def concept_features(profiles: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """Embedded models x (category, concept): interpretable units of the concept, over every
    concept of the profile (the embedding's columns; 0 where a model has none)."""
    keep = embedded_models(models)
    concepts = (
        profiles[["category", "concept"]].drop_duplicates().sort_values(["category", "concept"])
    )
    keys = list(zip(concepts["category"], concepts["concept"], strict=True))
    index = {key: j for j, key in enumerate(keys)}
    row_of = {model: i for i, model in enumerate(keep)}
    matrix = np.zeros((len(keep), len(keys)))
    rows = profiles[profiles["model"].isin(row_of)]
    for model, category, concept, n_units in rows[
        ["model", "category", "concept", "n_units"]
    ].itertuples(index=False):
        matrix[row_of[model], index[(category, concept)]] += float(n_units)
    return pd.DataFrame(matrix, index=pd.Index(keep, name="model"), columns=keys)


def component_scores(lce: pd.DataFrame) -> pd.DataFrame:
    """fct_lce (model, component, value) -> embedded models x component."""
    if lce.empty:
        return pd.DataFrame(index=pd.Index([], name="model"))
    wide = lce.pivot(index="model", columns="component", values="value").sort_index()
    wide.columns = [int(c) for c in wide.columns]
    return wide


# ----------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------


def correlate(features: pd.DataFrame, target: pd.Series, settings: Settings) -> pd.DataFrame:
    """Every column of ``features`` against ``target`` over the models both have: n, r, p, rho,
    Spearman p and the bootstrap interval (one row per column, in column order)."""
    target = target.dropna()
    models = [m for m in features.index if m in target.index]
    x = features.loc[models].to_numpy(dtype=float) if models else np.zeros((0, features.shape[1]))
    y = target.loc[models].to_numpy(dtype=float)
    lo, hi, used = inference.bootstrap_intervals(x, y, settings.n_boot, settings.seed)
    out = []
    for j in range(features.shape[1]):
        r, p = inference.pearson(x[:, j], y)
        rho, sp = inference.spearman(x[:, j], y)
        out.append(
            {
                "n": len(models),
                "pearson_r": r,
                "p_value": p,
                "spearman_rho": rho,
                "spearman_p": sp,
                "r_lo": lo[j],
                "r_hi": hi[j],
                "n_boot_used": int(used[j]),
            }
        )
    columns = ["n", "pearson_r", "p_value", "spearman_rho", "spearman_p", "r_lo", "r_hi"]
    return pd.DataFrame(out, columns=columns + ["n_boot_used"])


def with_q(frame: pd.DataFrame, settings: Settings, by_task: bool) -> pd.DataFrame:
    """Add q_value (Benjamini-Hochberg over the family), significant, fdr_family, q_threshold.

    ``by_task`` says whether the mart has task families; without them the whole mart is the
    family whatever ``fdr_family`` says."""
    frame = frame.copy()
    frame["q_value"] = np.nan
    if by_task and settings.fdr_family == "task":
        frame["fdr_family"] = frame["task"]
    else:
        frame["fdr_family"] = "build"
    for _, index in frame.groupby("fdr_family", sort=False).groups.items():
        frame.loc[index, "q_value"] = inference.bh_q_values(frame.loc[index, "p_value"].to_numpy())
    frame["significant"] = (frame["q_value"] < settings.q_threshold).fillna(False).astype(bool)
    frame["q_threshold"] = settings.q_threshold
    return frame


def against_results(
    features: pd.DataFrame,
    benchmarks: pd.DataFrame | None,
    key_names: list[str],
    settings: Settings,
) -> pd.DataFrame:
    """Every feature column against every task result, with q over the chosen family."""
    columns = key_names + [name for name, _ in RESULT_FIELDS] + [name for name, _ in STAT_FIELDS]
    if benchmarks is None or benchmarks.empty or features.shape[1] == 0 or features.empty:
        return pd.DataFrame(columns=columns)
    parts = []
    for key, group in benchmarks.groupby(RESULT_KEYS, sort=True):
        target = group.set_index("model")["value"].astype(float)
        part = correlate(features, target, settings)
        labels = _key_columns(features.columns, len(key_names))
        for name, values in zip(key_names, labels, strict=True):
            part[name] = values
        for name, value in zip(RESULT_KEYS, key, strict=True):
            part[name] = value
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    frame = with_q(frame, settings, by_task=True)
    return frame.sort_values(key_names + RESULT_KEYS[:3], kind="stable")[columns]


def _key_columns(columns: pd.Index, width: int) -> list[list[Any]]:
    """A frame's column labels split into ``width`` lists (tuples for MultiIndex/tuple labels)."""
    labels = [c if isinstance(c, tuple) else (c,) for c in columns]
    return [[label[i] for label in labels] for i in range(width)]


# ----------------------------------------------------------------------------------------------
# The marts
# ----------------------------------------------------------------------------------------------


def component_task_table(
    scores: pd.DataFrame, benchmarks: pd.DataFrame | None, settings: Settings
) -> pa.Table:
    """fct_component_task_correlations from embedded models x component scores."""
    frame = against_results(scores, benchmarks, ["component"], settings)
    return arrow.frame_table(frame, [("component", pa.int32())] + RESULT_FIELDS + STAT_FIELDS)


def fct_category_task_correlations(
    category_profiles: pd.DataFrame,
    models: pd.DataFrame,
    benchmarks: pd.DataFrame | None,
    settings: Settings,
) -> pa.Table:
    features = category_features(category_profiles, models)
    frame = against_results(features, benchmarks, ["category", "measure"], settings)
    return arrow.frame_table(
        frame, [("category", pa.string()), ("measure", pa.string())] + RESULT_FIELDS + STAT_FIELDS
    )


def fct_concept_task_correlations(
    profiles: pd.DataFrame,
    models: pd.DataFrame,
    benchmarks: pd.DataFrame | None,
    settings: Settings,
) -> pa.Table:
    features = concept_features(profiles, models)
    frame = against_results(features, benchmarks, ["category", "concept"], settings)
    return arrow.frame_table(
        frame, [("category", pa.string()), ("concept", pa.string())] + RESULT_FIELDS + STAT_FIELDS
    )


def fct_component_category_correlations(
    lce: pd.DataFrame,
    category_profiles: pd.DataFrame,
    models: pd.DataFrame,
    settings: Settings,
) -> pa.Table:
    """Each component's scores against each category measure, over the embedded models."""
    fields: list[tuple[str, pa.DataType]] = [
        ("component", pa.int32()),
        ("category", pa.string()),
        ("measure", pa.string()),
    ]
    scores = component_scores(lce)
    features = category_features(category_profiles, models)
    columns = [name for name, _ in fields + STAT_FIELDS]
    parts = []
    if not scores.empty and features.shape[1]:
        features = features.reindex(scores.index)
        for category, measure in features.columns:
            part = correlate(scores, features[(category, measure)], settings)
            part["component"] = list(scores.columns)
            part["category"] = category
            part["measure"] = measure
            parts.append(part)
    if not parts:
        return arrow.frame_table(pd.DataFrame(columns=columns), fields + STAT_FIELDS)
    frame = with_q(pd.concat(parts, ignore_index=True), settings, by_task=False)
    frame = frame.sort_values(["component", "category", "measure"], kind="stable")[columns]
    return arrow.frame_table(frame, fields + STAT_FIELDS)
