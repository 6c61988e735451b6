"""What makes two dissections the same: of one study, and of one (model, layer) in it.

A study is its probe set (fingerprint), quantile, basis and null seed: runs that differ there
cannot share a warehouse (their IoUs and nulls are not comparable). Within a study, a (model,
layer) is the same dissection when everything that changes its numbers is the same: the weights
(sha256), the model spec, the input normalisation, the strictness of the checkpoint load, the
null permutations, top images, skipped images, the fold tallies (their number and, with more
than one, their seed) and, for a random network, its init seed. Batch
size, device, cache and workers are left out: they change how a run is computed, not what.
`lce study plan` calls a job done when the lake's run has the study's identity, and
`lce lake merge` refuses two different dissections of one (model, layer).
"""

from __future__ import annotations

import json
from typing import Any

STUDY_KEYS = ("probe_fingerprint", "quantile", "basis", "null_seed")
# runs.settings keys that change a dissection's numbers (extract/lake_write.py writes them)
SETTINGS_KEYS = ("model", "null_permutations", "null_seed", "top_images", "strict", "skip_bad",
                 "init_seed")  # fmt: skip


def settings_of(run: dict[str, Any]) -> dict[str, Any]:
    try:
        settings = json.loads(run.get("settings") or "{}")
    except json.JSONDecodeError:
        return {}
    return settings if isinstance(settings, dict) else {}


def study_identity(run: dict[str, Any]) -> dict[str, Any]:
    """The study a runs row belongs to (null seed 0 where the run did not record one)."""
    return {
        "probe_fingerprint": run["probe_fingerprint"],
        "quantile": run["quantile"],
        "basis": run["basis"],
        "null_seed": settings_of(run).get("null_seed", 0),
    }


def run_identity(run: dict[str, Any]) -> dict[str, Any]:
    """Everything that makes a runs row's dissection what it is (see the module docstring)."""
    settings = settings_of(run)
    folds = folds_of(run)
    return study_identity(run) | {
        "normalize": run["normalize"],
        "weights_sha256": run.get("weights_sha256"),
        **{key: settings.get(key) for key in SETTINGS_KEYS if key != "null_seed"},
        "folds": folds,
        "fold_seed": settings.get("fold_seed", 0) if folds > 1 else None,
    }


def folds_of(run: dict[str, Any]) -> int:
    """The folds a runs row kept fold tallies for: 1 (none) where the run did not record any,
    as a run of an lce from before the fold tallies, so such a run never counts as having them."""
    folds = settings_of(run).get("folds", 1)
    return folds if isinstance(folds, int) and not isinstance(folds, bool) else 1


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """``key a (b)`` for each key where two identities differ."""
    return [f"{key} {a.get(key)!r} ({b.get(key)!r})" for key in a if a.get(key) != b.get(key)]
