"""Would other probe images give a unit the same label? The leave-one-fold-out jackknife over the
fold tallies of `lce extract --folds K` (lake table unit_concept_tally_folds).

For each fold f, the tally without it is the whole tally minus the fold's (integers: I, A and G
each), its IoU is I / (A + G - I) as for the whole, and the unit's label without the fold is the
best concept by the same rule as the whole label (highest IoU, ties to the lowest concept id;
none when every IoU is 0). Per unit, ``fct_unit_label_stability`` gives the K labels, the share
agreeing with the full label, and the delete-a-group jackknife of the best IoU:
``se = sqrt((K - 1) / K * sum_f (t_f - mean t)^2)`` over the K leave-one-out best IoUs ``t_f``,
and the interval ``iou +- t_{0.975, K-1} * se`` (Student t with K - 1 degrees of freedom),
clipped to [0, 1]. The folds are a hash of the image names, so their sizes differ a little; the
jackknife treats them as equal groups.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import stats

FIELDS: list[tuple[str, pa.DataType]] = [
    ("model", pa.string()),
    ("layer", pa.string()),
    ("unit", pa.int32()),
    ("concept", pa.string()),
    ("category", pa.string()),
    ("iou", pa.float64()),
    ("n_folds", pa.int32()),
    ("loo_concepts", pa.list_(pa.string())),
    ("agreement", pa.float64()),
    ("iou_loo_mean", pa.float64()),
    ("iou_se", pa.float64()),
    ("iou_low", pa.float64()),
    ("iou_high", pa.float64()),
]
COUNTS = ("intersection", "activation_in_category", "label_pixels")


def run_setting(settings: str | None, key: str, default: object = None) -> object:
    """One value of a run's recorded settings (runs.settings, JSON); ``default`` where the run
    recorded none (an older lce) or its settings do not parse."""
    try:
        return json.loads(settings or "{}").get(key, default)
    except (json.JSONDecodeError, AttributeError):
        return default


def run_folds(settings: str | None) -> int:
    """The folds a run kept (runs.settings ``folds``; 1 where it recorded none: an older lce)."""
    value = run_setting(settings, "folds", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def folded_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs with fold tallies: model, layer, n_units, n_folds (> 1)."""
    out = runs[["model", "layer", "n_units"]].copy()
    out["n_folds"] = [run_folds(s) for s in runs["settings"]]
    return out[out["n_folds"] > 1].reset_index(drop=True)


def best_per_unit(units: np.ndarray, concepts: np.ndarray, iou: np.ndarray) -> pd.DataFrame:
    """Each unit's best row: highest IoU, ties to the lowest concept id (rows with IoU 0 name no
    concept); columns unit, concept_id (-1: none), iou."""
    order = np.lexsort((concepts, -iou, units))
    u, c, v = units[order], concepts[order], iou[order]
    first = np.ones(len(u), dtype=bool)
    first[1:] = u[1:] != u[:-1]
    best = pd.DataFrame({"unit": u[first], "concept_id": c[first], "iou": v[first]})
    best.loc[best["iou"] <= 0, "concept_id"] = -1
    return best


def _aligned(whole: pd.DataFrame, folds: pd.DataFrame, k: int, where: str) -> dict[str, np.ndarray]:
    """Each fold's counts as (rows of ``whole``, k) arrays; refuses fold rows that do not cover
    every whole row exactly once per fold, or do not sum to it."""
    index = pd.MultiIndex.from_arrays([whole["unit"], whole["concept_id"]])
    pos = index.get_indexer(pd.MultiIndex.from_arrays([folds["unit"], folds["concept_id"]]))
    fold = folds["fold"].to_numpy(dtype=np.int64)
    if (pos < 0).any() or ((fold < 0) | (fold >= k)).any():
        raise ValueError(f"unit_concept_tally_folds of {where}: rows outside its tally or folds")
    seen = np.zeros((len(whole), k), dtype=np.int64)
    np.add.at(seen, (pos, fold), 1)
    if (seen != 1).any():
        raise ValueError(
            f"unit_concept_tally_folds of {where} does not hold each tally row once per fold "
            f"({k} folds): re-run lce extract for it"
        )
    out = {}
    for name in COUNTS:
        counts = np.zeros((len(whole), k), dtype=np.int64)
        counts[pos, fold] = folds[name].to_numpy(dtype=np.int64)
        if not np.array_equal(counts.sum(axis=1), whole[name].to_numpy(dtype=np.int64)):
            raise ValueError(
                f"unit_concept_tally_folds of {where}: {name} does not sum to the tally"
            )
        out[name] = counts
    return out


def jackknife(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, se) over the last axis of leave-one-out estimates (K of them)."""
    k = theta.shape[-1]
    mean = theta.mean(axis=-1)
    se = np.sqrt((k - 1) / k * ((theta - mean[..., None]) ** 2).sum(axis=-1))
    return mean, se


def jackknife_interval(estimate: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, ...]:
    """(loo mean, se, low, high) over the last axis of ``theta`` (K leave-one-out estimates):
    ``estimate +- t_{0.975, K-1} * se``, unclipped."""
    mean, se = jackknife(theta)
    half = float(stats.t.ppf(0.975, theta.shape[-1] - 1)) * se
    return mean, se, estimate - half, estimate + half


def loo_best(
    whole: pd.DataFrame, folds: pd.DataFrame, n_units: int, k: int, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One layer's labels without each fold: (label, theta, full_label, full_iou); label and
    theta are (n_units, k) arrays of the best concept id (-1: none) and its IoU without fold f,
    full_label and full_iou the same from the whole tally (its stored IoU)."""
    whole = whole.sort_values(["unit", "concept_id"]).reset_index(drop=True)
    units = whole["unit"].to_numpy(dtype=np.int64)
    concepts = whole["concept_id"].to_numpy(dtype=np.int64)
    full = best_per_unit(units, concepts, whole["iou"].to_numpy(dtype=np.float64))
    parts = _aligned(whole, folds, k, where)
    inter = whole["intersection"].to_numpy(dtype=np.int64)[:, None] - parts["intersection"]
    act = whole["activation_in_category"].to_numpy(dtype=np.int64)[:, None]
    act = act - parts["activation_in_category"]
    pixels = whole["label_pixels"].to_numpy(dtype=np.int64)[:, None] - parts["label_pixels"]
    denom = (act + pixels - inter).astype(np.float64)
    loo = np.zeros(inter.shape, dtype=np.float64)
    np.divide(inter.astype(np.float64), denom, out=loo, where=denom > 0)

    label = np.full((n_units, k), -1, dtype=np.int64)
    theta = np.zeros((n_units, k), dtype=np.float64)
    for f in range(k):
        best = best_per_unit(units, concepts, loo[:, f])
        label[best["unit"].to_numpy(), f] = best["concept_id"].to_numpy()
        theta[best["unit"].to_numpy(), f] = best["iou"].to_numpy()
    full_label = np.full(n_units, -1, dtype=np.int64)
    full_iou = np.zeros(n_units, dtype=np.float64)
    full_label[full["unit"].to_numpy()] = full["concept_id"].to_numpy()
    full_iou[full["unit"].to_numpy()] = full["iou"].to_numpy()
    return label, theta, full_label, full_iou


def _layer_rows(
    model: str, layer: str, n_units: int, k: int, whole: pd.DataFrame, folds: pd.DataFrame,
    names: dict[int, tuple[str, str]],
) -> dict[str, list]:  # fmt: skip
    label, theta, full_label, full_iou = loo_best(whole, folds, n_units, k, f"{model} {layer}")
    all_units = np.arange(n_units, dtype=np.int64)
    mean, se, low, high = jackknife_interval(full_iou, theta)

    def name(concept: int, i: int = 0) -> str | None:
        return names[concept][i] if concept >= 0 and concept in names else None

    return {
        "model": [model] * n_units,
        "layer": [layer] * n_units,
        "unit": all_units.tolist(),
        "concept": [name(c) for c in full_label.tolist()],
        "category": [name(c, 1) for c in full_label.tolist()],
        "iou": full_iou.tolist(),
        "n_folds": [k] * n_units,
        "loo_concepts": [[name(c) for c in row] for row in label.tolist()],
        "agreement": (label == full_label[:, None]).mean(axis=1).tolist(),
        "iou_loo_mean": mean.tolist(),
        "iou_se": se.tolist(),
        "iou_low": np.clip(low, 0.0, 1.0).tolist(),
        "iou_high": np.clip(high, 0.0, 1.0).tolist(),
    }


def concept_names(concepts: pd.DataFrame) -> dict[int, tuple[str, str]]:
    """concept_id -> (concept, category) from stg_concepts rows (one per concept id)."""
    return {
        int(c): (str(n), str(g))
        for c, n, g in zip(
            concepts["concept_id"], concepts["concept"], concepts["category"], strict=True
        )
    }


def fct_unit_label_stability(
    runs: pd.DataFrame, tally: pd.DataFrame, folds: pd.DataFrame, concepts: pd.DataFrame
) -> pa.Table:
    """One row per unit of every run with fold tallies (see the module docstring); empty when
    no run kept any (`--folds 1`, an older lce, published labels)."""
    names = concept_names(concepts)
    columns: dict[str, list] = {name: [] for name, _ in FIELDS}
    for run in folded_runs(runs).sort_values(["model", "layer"]).itertuples(index=False):
        mine = (tally["model"] == run.model) & (tally["layer"] == run.layer)
        theirs = (folds["model"] == run.model) & (folds["layer"] == run.layer)
        rows = _layer_rows(
            run.model, run.layer, int(run.n_units), int(run.n_folds), tally[mine],
            folds[theirs], names,
        )  # fmt: skip
        for name, values in rows.items():
            columns[name] += values
    return pa.table(columns, schema=pa.schema(FIELDS))
