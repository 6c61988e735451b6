"""Units matched across models: does a unit of one network have a twin in another?

For each pair of models with image features on their primary layers (the layers
fct_model_similarity compares; lake table ``image_features``, every unit's spatial-mean
activation on every probe image), over the probe images both have:

- the Pearson correlation of every unit of A with every unit of B across the images (the
  matching of Li et al.'s "Convergent learning", 2016, and of the Rosetta Neurons), a product of
  column-standardised matrices;
- each unit's best match in the other model: its most positively correlated unit there (ties to
  the lower unit index); a unit that does not vary over the images has no correlation and no
  match;
- ``mutual`` when A's unit a picks b and B's unit b picks a;
- ``same_label`` when both units are interpretable (fct_unit_labels.is_interpretable, the units
  the concept profiles count) and carry the same concept; null when either is not.

Per pair: how many mutual matches, how many of them have both units labelled, and the share of
those with the same label, against a permutation baseline: the labels of one model's labelled
mutual units shuffled among them (both models' label counts kept, the pairing broken), K times
(var match_permutations, seeded by var seed and the pair). p = (1 + #{baseline share >= the
observed share}) / (1 + K).

Memory: the units x units correlations are formed a block of A's units at a time, with B's
best match kept as a running maximum, never more than ``_BLOCK_VALUES`` of them at once; the
pair's two standardised feature matrices are float64 copies (n x p x 8 bytes each).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from warehouse import dbt_vars
from warehouse.stats import arrow
from warehouse.stats.similarity import FeatureCache, feature_layers

_BLOCK_VALUES = 1 << 22  # correlations per block (float64: 32 MB)
_CONSTANT = 1e-9  # a column whose centred norm is below this share of its scale does not vary


@dataclass(frozen=True)
class Settings:
    min_images: int = dbt_vars.SPEC["similarity_min_images"].default
    permutations: int = dbt_vars.SPEC["match_permutations"].default
    seed: int = dbt_vars.SPEC["seed"].default


def settings(min_images: Any, permutations: Any, seed: Any) -> Settings:
    """Settings from a dbt Python model's (text) config values."""
    return Settings(
        min_images=dbt_vars.from_dbt("similarity_min_images", min_images),
        permutations=dbt_vars.from_dbt("match_permutations", permutations),
        seed=dbt_vars.from_dbt("seed", seed),
    )


# ---------------------------------------------------------------------------- matching


def standardised(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns centred and scaled to unit norm, in float64, so that z_a' z_b is Pearson's r;
    and which columns vary (a constant column is left at zero)."""
    z = x.astype(np.float64)
    z -= z.mean(axis=0)
    norm = np.sqrt(np.einsum("ij,ij->j", z, z))
    scale = np.abs(x).max(axis=0).astype(np.float64) * np.sqrt(len(x)) if len(x) else norm
    varies = (norm > 0) & (norm > _CONSTANT * scale)
    z[:, varies] /= norm[varies]
    z[:, ~varies] = 0.0
    return z, varies


@dataclass
class Matching:
    """Best matches both ways between A's p units and B's q units (-1 / NaN: no match)."""

    best_b: np.ndarray  # (p,) B's unit each unit of A correlates with most
    r_ab: np.ndarray  # (p,) that correlation
    best_a: np.ndarray  # (q,) A's unit each unit of B correlates with most
    r_ba: np.ndarray  # (q,)

    def mutual_ab(self) -> np.ndarray:
        """(p,) whether A's unit and its best match in B pick each other."""
        has = self.best_b >= 0
        out = np.zeros(len(self.best_b), dtype=bool)
        out[has] = self.best_a[self.best_b[has]] == np.flatnonzero(has)
        return out

    def mutual_ba(self) -> np.ndarray:
        return Matching(self.best_a, self.r_ba, self.best_b, self.r_ab).mutual_ab()


def best_matches(x: np.ndarray, y: np.ndarray) -> Matching:
    """Every unit's best-correlated unit in the other matrix (rows: the same images, in the same
    order). Ties go to the lower unit index, in both directions."""
    za, va = standardised(x)
    zb, vb = standardised(y)
    p, q = x.shape[1], y.shape[1]
    best_b, r_ab = np.full(p, -1), np.full(p, np.nan)
    best_a, r_ba = np.full(q, -1), np.full(q, -np.inf)
    units_a, units_b = np.flatnonzero(va), np.flatnonzero(vb)
    if len(units_a) and len(units_b):
        zb = zb[:, units_b]
        block = max(1, _BLOCK_VALUES // len(units_b))
        for s in range(0, len(units_a), block):
            rows = units_a[s : s + block]
            r = np.clip(za[:, rows].T @ zb, -1.0, 1.0)  # (block, q') Pearson r
            pick = r.argmax(axis=1)  # the first maximum: the lowest unit of B
            best_b[rows] = units_b[pick]
            r_ab[rows] = r[np.arange(len(rows)), pick]
            top = r.argmax(axis=0)
            value = r[top, np.arange(len(units_b))]
            better = value > r_ba[units_b]  # strictly: an earlier block (lower unit) keeps ties
            best_a[units_b[better]] = rows[top[better]]
            r_ba[units_b[better]] = value[better]
    r_ba[best_a < 0] = np.nan
    return Matching(best_b, r_ab, best_a, r_ba)


# ---------------------------------------------------------------------------- the baseline


def label_baseline(
    mine: np.ndarray, theirs: np.ndarray, permutations: int, rng: np.random.Generator
) -> np.ndarray:
    """The share of pairs (mine[i], theirs[i]) with equal labels after each of ``permutations``
    shuffles of ``theirs`` (``rng.permutation`` per shuffle, in order)."""
    codes, _ = pd.factorize(np.concatenate([mine, theirs]))
    a, b = codes[: len(mine)], codes[len(mine) :]
    return np.array([float(np.mean(a == b[rng.permutation(len(b))])) for _ in range(permutations)])


def baseline_summary(observed: float, null: np.ndarray) -> tuple[float, float, float]:
    """The baseline's mean, its 95th percentile (numpy's linear method) and the permutation p
    (1 + #{null >= observed}) / (1 + K)."""
    if not len(null) or not np.isfinite(observed):
        return float("nan"), float("nan"), float("nan")
    hits = int((null >= observed - 1e-12).sum())
    return float(null.mean()), float(np.quantile(null, 0.95)), (1 + hits) / (1 + len(null))


# ---------------------------------------------------------------------------- the marts


def concept_labels(labels: pd.DataFrame) -> dict[tuple[str, str], dict[int, str]]:
    """{(model, layer): {unit: concept}} of the interpretable units of fct_unit_labels."""
    keep = labels[labels["is_interpretable"].astype(bool) & labels["concept"].notna()]
    out: dict[tuple[str, str], dict[int, str]] = {}
    for model, layer, unit, concept in zip(
        keep["model"], keep["layer"], keep["unit"], keep["concept"], strict=True
    ):
        out.setdefault((str(model), str(layer)), {})[int(unit)] = str(concept)
    return out


MATCH_FIELDS: list[tuple[str, pa.DataType]] = [
    ("model", pa.string()),
    ("layer", pa.string()),
    ("unit", pa.int32()),
    ("other_model", pa.string()),
    ("other_layer", pa.string()),
    ("other_unit", pa.int32()),
    ("r", pa.float64()),
    ("mutual", pa.bool_()),
    ("concept", pa.string()),
    ("other_concept", pa.string()),
    ("same_label", pa.bool_()),
    ("n_images", pa.int64()),
]


def _direction(
    model: str,
    layer: str,
    other: str,
    other_layer: str,
    best: np.ndarray,
    r: np.ndarray,
    mutual: np.ndarray,
    n_images: int,
    names: dict[tuple[str, str], dict[int, str]],
) -> pd.DataFrame:
    """One model's rows against another: each unit with a match."""
    units = np.flatnonzero(best >= 0)
    mine, theirs = names.get((model, layer), {}), names.get((other, other_layer), {})
    concept = [mine.get(int(u)) for u in units]
    other_concept = [theirs.get(int(u)) for u in best[units]]
    same = [
        None if a is None or b is None else a == b
        for a, b in zip(concept, other_concept, strict=True)
    ]
    return pd.DataFrame(
        {
            "model": model,
            "layer": layer,
            "unit": units,
            "other_model": other,
            "other_layer": other_layer,
            "other_unit": best[units],
            "r": r[units],
            "mutual": mutual[units],
            "concept": concept,
            "other_concept": other_concept,
            "same_label": same,
            "n_images": n_images,
        }
    )


def model_pairs(index: pd.DataFrame, models: pd.DataFrame) -> tuple[dict[str, str], list]:
    """The compared layers and every unordered pair (i, j, a, b) of their models, a < b."""
    layers = feature_layers(index, models)
    names = sorted(layers)
    pairs = [
        (i, j, a, b) for i, a in enumerate(names) for j, b in enumerate(names) if i < j
    ]  # fmt: skip
    return layers, pairs


def fct_unit_matches(
    index: pd.DataFrame,
    models: pd.DataFrame,
    labels: pd.DataFrame,
    lake: Path,
    settings: Settings,
) -> pa.Table:
    """Every unit's best match in every other model, both orders of every pair sharing at
    least ``settings.min_images`` images (``index``: stg_image_features; ``models``:
    dim_models; ``labels``: fct_unit_labels)."""
    layers, pairs = model_pairs(index, models)
    cache = FeatureCache(lake, layers)
    names = concept_labels(labels)
    parts = []
    for _, _, a, b in pairs:
        images_a, xa = cache.images(a)
        images_b, xb = cache.images(b)
        _, rows_a, rows_b = np.intersect1d(
            images_a, images_b, assume_unique=True, return_indices=True
        )
        n = len(rows_a)
        if n < max(settings.min_images, 3):
            continue
        m = best_matches(xa[rows_a], xb[rows_b])
        la, lb = layers[a], layers[b]
        parts.append(_direction(a, la, b, lb, m.best_b, m.r_ab, m.mutual_ab(), n, names))
        parts.append(_direction(b, lb, a, la, m.best_a, m.r_ba, m.mutual_ba(), n, names))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    frame = frame.astype(object).where(frame.notna(), None)  # concat turns None into NaN
    return arrow.frame_table(frame, MATCH_FIELDS)


AGREEMENT_FIELDS: list[tuple[str, pa.DataType]] = [
    ("model_a", pa.string()),
    ("model_b", pa.string()),
    ("layer_a", pa.string()),
    ("layer_b", pa.string()),
    ("n_images", pa.int64()),
    ("n_mutual", pa.int64()),
    ("n_labelled", pa.int64()),
    ("n_same_label", pa.int64()),
    ("same_label_share", pa.float64()),
    ("baseline_mean", pa.float64()),
    ("baseline_p95", pa.float64()),
    ("p_value", pa.float64()),
    ("n_permutations", pa.int64()),
]


def shared_images(index: pd.DataFrame, layers: dict[str, str], a: str, b: str) -> int:
    """Images both models have features for on their compared layers (from the index)."""

    def images(model: str) -> set[str]:
        rows = index[(index["model"] == model) & (index["layer"] == layers[model])]
        return set(rows["image"])

    return len(images(a) & images(b))


def fct_unit_match_agreement(
    matches: pd.DataFrame, index: pd.DataFrame, models: pd.DataFrame, settings: Settings
) -> pa.Table:
    """Per pair of models with features (both orders, the same numbers): the mutual matches
    of fct_unit_matches, how many have both units labelled, the share with the same label and
    its permutation baseline. A pair below ``settings.min_images`` shared images keeps its rows
    with null counts, so the skip is visible."""
    layers, pairs = model_pairs(index, models)
    rows: list[tuple] = []
    for i, j, a, b in pairs:
        n = shared_images(index, layers, a, b)
        stats: tuple = (None,) * 8
        if n >= max(settings.min_images, 3):
            part = matches[(matches["model"] == a) & (matches["other_model"] == b)]
            mutual = part[part["mutual"].astype(bool)]
            both = mutual[mutual["same_label"].notna()]
            same = int(both["same_label"].astype(bool).sum())
            share = same / len(both) if len(both) else float("nan")
            null = np.zeros(0)
            if len(both):
                rng = np.random.default_rng([settings.seed, i, j])
                mine, theirs = both["concept"].to_numpy(), both["other_concept"].to_numpy()
                null = label_baseline(mine, theirs, settings.permutations, rng)
            summary = baseline_summary(share, null)
            stats = (len(mutual), len(both), same, share, *summary, len(null))
        for x, y in ((a, b), (b, a)):
            rows.append((x, y, layers[x], layers[y], n, *stats))
    return arrow.table(rows, AGREEMENT_FIELDS)
