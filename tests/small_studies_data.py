"""Hand-written studies of one to four models (unit labels and task results), with the build notes
each must give; shared by the small-study and sensitivity tests."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from warehouse.lake import write_partition

A = [("red", "color", 3), ("disc", "object", 2), ("stripes", "material", 1)]


B = [("red", "color", 1), ("square", "object", 4), ("dots", "material", 2)]


C = [("blue", "color", 2), ("disc", "object", 1), ("square", "object", 1), ("dots", "material", 3)]


DEAD = [("red", "color", 4), ("disc", "object", 4)]  # every IoU 0.01: nothing interpretable


# Every case is published labels only, without fold tallies: each says so (no_fold_tallies), and
# that the leave-one-fold-out embedding marts are empty (no_fold_embedding).
CASES: dict[str, tuple[dict[str, list[tuple[str, str, int]]], set[str], set[str]]] = {
    "one_model": (
        {"m1": A},
        set(),
        {
            "single_model",
            "categories_capped",
            "no_correlations",
            "no_distances",
            "no_fold_tallies",
            "no_fold_embedding",
        },  # fmt: skip
    ),
    "identical": (
        {"m1": A, "m2": A},
        set(),
        {
            "identical_profiles",
            "no_variance",
            "categories_capped",
            "no_correlations",
            "no_unit_matches",
            "no_fold_tallies",
            "no_fold_embedding",
        },  # fmt: skip
    ),
    "two_models": (
        {"m1": A, "m2": B},
        set(),
        {
            "components_capped",
            "categories_capped",
            "one_model_per_category",
            "too_few_models",
            "no_unit_matches",
            "no_fold_tallies",
            "no_fold_embedding",
        },  # fmt: skip
    ),
    "three_k3": (
        {"m1": A, "m2": B, "m3": C},
        set(),
        {
            "components_capped",
            "one_model_per_category",
            "few_models_bootstrap",
            "no_unit_matches",
            "no_fold_tallies",
            "no_fold_embedding",
        },  # fmt: skip
    ),
    "no_interpretable": (
        {"m1": A, "m2": B, "m3": C, "dead": DEAD},
        {"dead"},
        {
            "no_interpretable_units",
            "components_capped",
            "one_model_per_category",
            "few_models_bootstrap",
            "no_unit_matches",
            "no_fold_tallies",
            "no_fold_embedding",
        },  # fmt: skip
    ),
}


RESULTS = {"m1": 0.61, "m2": 0.47, "m3": 0.83, "dead": 0.30}


def write_study(lake: Path, models: dict[str, list[tuple[str, str, int]]], dead: set[str]) -> None:
    rows = []
    for model, spec in models.items():
        unit = 0
        for concept, category, count in spec:
            for _ in range(count):
                rows.append(
                    (model, "layer4", unit, concept, category, 0.01 if model in dead else 0.1)
                )
                unit += 1
    write_partition(
        lake,
        "unit_labels",
        {"source": "study"},
        pa.table(
            list(zip(*rows, strict=True)),
            names=["model", "layer", "unit", "concept", "category", "iou"],
        ),
    )
    names = list(models)
    write_partition(
        lake,
        "task_benchmarks",
        {"source": "tasks"},
        pa.table(
            {
                "model": names * 2,
                "task": ["probe"] * 2 * len(names),
                "dataset": ["shapes"] * len(names) + ["colours"] * len(names),
                "metric": ["accuracy"] * 2 * len(names),
                "value": [RESULTS[m] for m in names] + [1 - RESULTS[m] for m in names],
                "higher_is_better": [True] * 2 * len(names),
            }
        ),
    )
