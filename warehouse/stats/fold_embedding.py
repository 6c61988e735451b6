"""Would other probe images give the same profiles, embedding and model categories? The
leave-one-fold-out jackknife of the study's main analysis over the fold tallies of
`lce extract --folds K`.

This is the probe-image resampling; the unit bootstrap (``warehouse.stats.stability``,
``fct_lce_intervals``) resamples each model's units instead. For each fold f, every embedded
model's primary-layer units get their label and best IoU without fold f
(``warehouse.stats.folds.loo_best``: the whole tally minus the fold's), and a unit is
interpretable without f when it has a label whose IoU exceeds var ``min_iou`` (the fixed rule:
the null rule's per-unit null IoUs come from permutations of the whole probe set and cannot be
recomputed without a fold, so under ``interpretable_rule = 'null'`` the leave-one-out sets use
the fixed rule while the full build's figures keep the null rule). Units of models outside the
embedding keep their full labels (they only count towards a category's vocabulary). From those
units, ``fct_concept_profiles``' recipe (interpretable units per concept over the distinct
concepts of the category) gives fold f's profiles, and the embedding's own code refits the PCA
and k-means on them exactly as each unit-bootstrap resample does (``stability.refit``: the full
data's components and k, scores rotated onto the full scores by orthogonal Procrustes).

The jackknife over the K leave-one-out estimates t_f is folds.py's:
``se = sqrt((K - 1) / K * sum_f (t_f - mean t)^2)``, and the 95% interval is the full
estimate ``+- t_{0.975, K-1} * se``. The marts exist only when every embedded model's primary
layer kept fold tallies with the same K and fold seed (the same images left out together);
otherwise they are empty and ``fct_build_notes`` says why (``no_fold_embedding``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from threadpoolctl import threadpool_limits

from warehouse import dbt_vars
from warehouse.stats import arrow, folds, marts, stability
from warehouse.stats.wording import join

MARTS = ("fct_profile_fold_intervals", "fct_lce_fold_intervals", "fct_fold_resamples")


@dataclass(frozen=True)
class FoldInputs:
    study: marts.MartInputs  # profiles, models (dim_models), settings, runs (stg_runs)
    units: pd.DataFrame  # fct_unit_labels
    tally: pd.DataFrame  # stg_unit_concept_tally
    folds: pd.DataFrame  # stg_unit_concept_tally_folds
    concepts: pd.DataFrame  # stg_concepts
    min_iou: float


@dataclass(frozen=True)
class Plan:
    """What the leave-one-fold-out builds use: K, and each embedded model's primary layer and
    its units; k = 0 and a reason (one sentence) where they cannot be built."""

    k: int
    layers: dict[str, tuple[str, int]]
    reason: str | None = None


def _latest(runs: pd.DataFrame, model: str, layer: str) -> pd.Series | None:
    mine = runs[(runs["model"] == model) & (runs["layer"] == layer)]
    if mine.empty:
        return None
    order = [c for c in ("started_at", "run_id") if c in mine.columns]
    return mine.sort_values(order).iloc[-1] if order else mine.iloc[-1]


def plan(models: pd.DataFrame, runs: pd.DataFrame | None) -> Plan:
    """K and the layers when every embedded model's primary layer has fold tallies with one K
    and one fold seed (its latest run's settings); else why not."""
    embedded = models[models["in_embedding"].astype(bool)].sort_values("model")
    if embedded.empty:
        return Plan(0, {}, "No model is in the embedding")
    runs = runs if runs is not None else pd.DataFrame(columns=["model", "layer", "settings"])
    found: dict[str, tuple[str, int, int, object]] = {}
    missing = []
    for model, layer in zip(embedded["model"], embedded["primary_layer"], strict=True):
        run = None if layer is None else _latest(runs, model, layer)
        k = 1 if run is None else folds.run_folds(run["settings"])
        if run is None or k < 2:
            missing.append(model)
        else:
            found[model] = (
                layer,
                int(run["n_units"]),
                k,
                folds.run_setting(run["settings"], "fold_seed"),
            )
    if missing:
        layers = "layer" if len(missing) == 1 else "layers"
        return Plan(0, {}, f"The primary {layers} of {join(missing)} kept no fold tallies")
    ks = sorted({v[2] for v in found.values()})
    if len(ks) > 1:
        counts = ", ".join(str(k) for k in ks)
        return Plan(0, {}, f"The embedded models' primary layers kept different folds ({counts})")
    if len({json.dumps(v[3]) for v in found.values()}) > 1:
        return Plan(0, {}, "The embedded models' folds were drawn with different fold seeds")
    return Plan(ks[0], {m: (v[0], v[1]) for m, v in found.items()})


def unit_sets(fi: FoldInputs, p: Plan) -> list[pd.DataFrame]:
    """Fold f's primary-layer units (model, unit, concept, category, is_interpretable), f in
    0..K-1: leave-one-out labels for the embedded models, full labels for the others."""
    names = folds.concept_names(fi.concepts)
    primary = fi.units[fi.units["is_primary_layer"].astype(bool)]
    keep = ["model", "unit", "concept", "category", "is_interpretable"]
    others = primary[~primary["model"].isin(set(p.layers))][keep]
    sets: list[list[pd.DataFrame]] = [[others] for _ in range(p.k)]
    for model, (layer, n_units) in sorted(p.layers.items()):
        whole = fi.tally[(fi.tally["model"] == model) & (fi.tally["layer"] == layer)]
        parts = fi.folds[(fi.folds["model"] == model) & (fi.folds["layer"] == layer)]
        label, theta, _, _ = folds.loo_best(whole, parts, n_units, p.k, f"{model} {layer}")
        units = primary.loc[primary["model"] == model, "unit"].to_numpy(dtype=np.int64)
        if ((units < 0) | (units >= n_units)).any():
            raise ValueError(f"fct_unit_labels of {model} {layer}: units beyond its run's n_units")
        for f in range(p.k):
            ids, iou = label[units, f], theta[units, f]
            sets[f].append(
                pd.DataFrame({
                    "model": model, "unit": units,
                    "concept": [names[c][0] if c >= 0 else None for c in ids.tolist()],
                    "category": [names[c][1] if c >= 0 else None for c in ids.tolist()],
                    "is_interpretable": (ids >= 0) & (iou > fi.min_iou),
                })
            )  # fmt: skip
    return [pd.concat([q for q in parts if len(q)] or parts, ignore_index=True) for parts in sets]


def profile_rows(units: pd.DataFrame) -> pd.DataFrame:
    """fct_concept_profiles from primary-layer units: interpretable units per concept, weight =
    n_units / distinct concepts of the category across all models."""
    kept = units[units["is_interpretable"].astype(bool)]
    counts = kept.groupby(["model", "concept", "category"]).size().rename("n_units").reset_index()
    vocabulary = kept.groupby("category")["concept"].nunique()
    counts["weight"] = counts["n_units"] / counts["category"].map(vocabulary)
    return counts


def category_shares(units: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """model x category: the category's share of the model's interpretable units (0 where the
    model has none)."""
    kept = units[units["is_interpretable"].astype(bool) & units["model"].isin(set(models))]
    counts = kept.groupby(["model", "category"]).size().unstack(fill_value=0)
    counts = counts.reindex(index=models, fill_value=0)
    total = counts.sum(axis=1).replace(0, np.nan)
    return counts.div(total, axis=0).fillna(0.0)


PROFILE_FIELDS: list[tuple[str, pa.DataType]] = [
    ("model", pa.string()),
    ("category", pa.string()),
    ("share", pa.float64()),
    ("share_loo_mean", pa.float64()),
    ("share_se", pa.float64()),
    ("share_low", pa.float64()),
    ("share_high", pa.float64()),
    ("n_folds", pa.int32()),
]


def fct_profile_fold_intervals(fi: FoldInputs) -> pa.Table:
    """Per embedded model and concept category (every category with an interpretable unit of an
    embedded model in the full build or a leave-one-fold-out one): its share of the model's
    interpretable primary-layer units, and the probe-image-fold jackknife of that share."""
    p = plan(fi.study.models, fi.study.runs)
    if not p.k:
        return arrow.table([], PROFILE_FIELDS)
    models = sorted(p.layers)
    primary = fi.units[fi.units["is_primary_layer"].astype(bool)]
    loo = [category_shares(units, models) for units in unit_sets(fi, p)]
    full = category_shares(primary, models)
    categories = sorted(set(full.columns).union(*(s.columns for s in loo)))
    full = full.reindex(columns=categories, fill_value=0.0)
    theta = np.stack(
        [s.reindex(columns=categories, fill_value=0.0).to_numpy() for s in loo], axis=-1
    )
    share = full.to_numpy()
    mean, se, low, high = folds.jackknife_interval(share, theta)
    rows = [
        (model, category, share[i, j], mean[i, j], se[i, j],
         float(np.clip(low[i, j], 0.0, 1.0)), float(np.clip(high[i, j], 0.0, 1.0)), p.k)
        for i, model in enumerate(models)
        for j, category in enumerate(categories)
    ]  # fmt: skip
    return arrow.table(rows, PROFILE_FIELDS)


@dataclass(frozen=True)
class FoldFits:
    models: list[str]
    full_scores: np.ndarray  # models x components (fct_lce)
    full_ids: np.ndarray  # dim_model_categories' ids
    scores: np.ndarray  # folds x models x components, Procrustes-aligned to the full scores
    explained_variance_ratio: np.ndarray  # folds x components (0 beyond a fold's rank)
    labels: np.ndarray  # folds x models: category ids 1..k


def fold_fits(fi: FoldInputs, p: Plan) -> FoldFits:
    """The embedding and categories refitted on each fold's leave-one-out profiles."""
    models, full_scores, full_ids = stability.full_fit(fi.study)
    k = len(set(full_ids.tolist()))
    n_comp = full_scores.shape[1]
    scores = np.zeros((p.k, len(models), n_comp))
    ratios = np.zeros((p.k, n_comp))
    labels = np.zeros((p.k, len(models)), dtype=int)
    with threadpool_limits(1):  # tiny matrices: see stability.bootstrap
        for f, units in enumerate(unit_sets(fi, p)):
            study = dataclasses.replace(fi.study, profiles=profile_rows(units))
            profiles = marts.embedding_profiles(study)
            # a model without an interpretable unit without fold f keeps a zero profile
            rows = {m: i for i, m in enumerate(profiles.models)}
            matrix = np.zeros((len(models), profiles.matrix.shape[1]))
            for i, model in enumerate(models):
                if model in rows:
                    matrix[i] = profiles.matrix[rows[model]]
            scores[f], ratios[f], labels[f] = stability.refit(
                matrix, int(fi.study.n_components), full_scores, k
            )
    return FoldFits(models, full_scores, full_ids, scores, ratios, labels)


LCE_FIELDS: list[tuple[str, pa.DataType]] = [
    ("model", pa.string()),
    ("component", pa.int32()),
    ("coordinate", pa.float64()),
    ("se", pa.float64()),
    ("lo", pa.float64()),
    ("hi", pa.float64()),
    ("n_folds", pa.int32()),
]


def fct_lce_fold_intervals(fi: FoldInputs) -> pa.Table:
    """Per embedded model and component: its coordinate (fct_lce) and the probe-image-fold
    jackknife of it over the K leave-one-fold-out embeddings (Procrustes-aligned)."""
    p = plan(fi.study.models, fi.study.runs)
    if not p.k:
        return arrow.table([], LCE_FIELDS)
    fits = fold_fits(fi, p)
    _, se, lo, hi = folds.jackknife_interval(fits.full_scores, np.moveaxis(fits.scores, 0, -1))
    rows = [
        (model, c + 1, fits.full_scores[i, c], se[i, c], lo[i, c], hi[i, c], p.k)
        for i, model in enumerate(fits.models)
        for c in range(fits.full_scores.shape[1])
    ]
    return arrow.table(rows, LCE_FIELDS)


RESAMPLE_FIELDS: list[tuple[str, pa.DataType]] = [
    ("fold", pa.int32()),
    ("component", pa.int32()),
    ("explained_variance_ratio", pa.float64()),
    ("adjusted_rand_index", pa.float64()),
    ("same_partition", pa.bool_()),
    ("n_folds", pa.int32()),
]


def fct_fold_resamples(fi: FoldInputs) -> pa.Table:
    """One row per left-out fold and component: the explained-variance ratio without the fold,
    and the adjusted Rand index of its categories against dim_model_categories (component is
    null where the embedding has no component)."""
    p = plan(fi.study.models, fi.study.runs)
    if not p.k:
        return arrow.table([], RESAMPLE_FIELDS)
    fits = fold_fits(fi, p)
    rows: list[tuple] = []
    for f in range(p.k):
        ari = stability.adjusted_rand_index(fits.labels[f], fits.full_ids)
        same = stability.same_partition(fits.labels[f], fits.full_ids)
        n_comp = fits.explained_variance_ratio.shape[1]
        if n_comp == 0:
            rows.append((f, None, None, ari, same, p.k))
        for c in range(n_comp):
            rows.append((f, c + 1, fits.explained_variance_ratio[f, c], ari, same, p.k))
    return arrow.table(rows, RESAMPLE_FIELDS)


def inputs(
    study: marts.MartInputs, units: pd.DataFrame, tally: pd.DataFrame, fold_rows: pd.DataFrame,
    concepts: pd.DataFrame, min_iou: object,
) -> FoldInputs:  # fmt: skip
    """FoldInputs from a dbt Python model's refs and its (text) min_iou."""
    return FoldInputs(
        study, units, tally, fold_rows, concepts.drop_duplicates("concept_id"),
        float(dbt_vars.from_dbt("min_iou", min_iou)),
    )  # fmt: skip
