"""A small generated study, written with the real lake writer: tallies for two models (tA with
two layers, tB with one), published labels for three, task results for five (one, "ghost", with
no profile). tests/test_build.py checks the marts built from it against brute force; the app,
similarity, fault and summary tests build their warehouses on it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from warehouse.lake import write_partition

CONCEPTS = {
    1: ("red", "color"),
    2: ("blue", "color"),
    3: ("disc", "object"),
    4: ("square", "object"),
    5: ("stripes", "material"),
    6: ("food", "object"),
    7: ("food", "material"),
}
PUBLISHED_LABELS = [(n, c) for n, c in CONCEPTS.values()] + [("-", "object")]
N_UNITS = 12
TALLY_LAYERS = {"tA": ["l4", "l3"], "tB": ["l4"]}
# What extraction records for the weights each run loaded: tA a weights file (its sha256), tB
# none (a model that builds its own weights: empty).
TOY_WEIGHTS_SHA256 = {"tA": hashlib.sha256(b"toy weights of tA").hexdigest(), "tB": ""}


def make_toy_lake(lake: Path, seed: int = 0) -> dict[str, list[tuple]]:
    """A study with full tallies for two models and published labels for three."""
    rng = np.random.default_rng(seed)
    tallies: dict[str, list[tuple]] = {}
    write_partition(
        lake,
        "concepts",
        {"probe": "toy"},
        pa.table(
            {
                "probe": ["toy"] * len(CONCEPTS),
                "concept_id": list(CONCEPTS),
                "concept": [n for n, _ in CONCEPTS.values()],
                "category": [c for _, c in CONCEPTS.values()],
                "frequency": [10] * len(CONCEPTS),
                "coverage": [0.1] * len(CONCEPTS),
                "label_pixels": [100] * len(CONCEPTS),
            }
        ),
    )
    for model, layers in TALLY_LAYERS.items():
        for order, layer in enumerate(layers):
            rows = []
            for unit in range(N_UNITS):
                ids = rng.choice(list(CONCEPTS), size=rng.integers(0, 4), replace=False)
                ious = rng.choice([0.02, 0.05, 0.08, 0.11], size=len(ids))
                if unit == 1 and len(ids) == 0:
                    ids, ious = np.array([5, 2]), np.array([0.09, 0.09])  # a tie
                rows += [
                    (model, layer, unit, int(c), 7, 50, 100, float(i))
                    for c, i in zip(ids, ious, strict=True)
                ]
            tallies[f"{model}/{layer}"] = rows
            cols = ["model", "layer", "unit", "concept_id", "intersection",
                    "activation_in_category", "label_pixels", "iou"]  # fmt: skip
            keys = {"model": model, "layer": layer}
            write_partition(
                lake,
                "unit_concept_tally",
                keys,
                pa.table(list(zip(*rows, strict=True)) if rows else [[]] * 8, names=cols),
            )
            write_partition(
                lake,
                "unit_thresholds",
                keys,
                pa.table(
                    {
                        "model": [model] * N_UNITS,
                        "layer": [layer] * N_UNITS,
                        "unit": list(range(N_UNITS)),
                        "threshold": [1.0] * N_UNITS,
                        "act_max": [2.0] * N_UNITS,
                        "act_mean": [0.5] * N_UNITS,
                    }
                ),
            )
            write_partition(
                lake,
                "runs",
                keys,
                pa.table(
                    {
                        "run_id": [f"run-{model}"],
                        "model": [model],
                        "layer": [layer],
                        "layer_order": [order],
                        "probe": ["broden:toy"],
                        "probe_fingerprint": ["f"],
                        "quantile": [0.005],
                        "basis": ["raw"],
                        "normalize": ["imagenet"],
                        "n_images": [10],
                        "n_skipped_images": [0],
                        "n_units": [N_UNITS],
                        "non_strict": [False],
                        "device": ["cpu"],
                        "torch_version": ["x"],
                        "lce_version": ["0"],
                        "started_at": [datetime(2026, 1, 1, tzinfo=UTC)],
                        "seconds": [1.0],
                        "settings": ["{}"],
                        "weights_sha256": [TOY_WEIGHTS_SHA256[model]],
                    }  # fmt: skip
                ),
            )
    published = []
    for model in ["p1", "p2", "p3"]:
        for unit in range(N_UNITS):
            name, category = PUBLISHED_LABELS[rng.integers(len(PUBLISHED_LABELS))]
            published.append(
                (model, "layer4", unit, name, category, float(rng.choice([0.03, 0.06, 0.1])))
            )
    write_partition(
        lake,
        "unit_labels",
        {"source": "pub"},
        pa.table(
            list(zip(*published, strict=True)),
            names=["model", "layer", "unit", "concept", "category", "iou"],
        ),
    )
    tallies["published"] = published
    bench = []
    for model in ["tA", "tB", "p1", "p2", "ghost"]:
        bench.append((model, "probe", "shapes", "accuracy", float(rng.random()), True))
        bench.append((model, "probe", "colours", "accuracy", float(rng.random()), True))
    write_partition(
        lake,
        "task_benchmarks",
        {"source": "toy"},
        pa.table(
            list(zip(*bench, strict=True)),
            names=["model", "task", "dataset", "metric", "value", "higher_is_better"],
        ),
    )
    return tallies


def top_images_table(model: str, layer: str, rows: list[tuple[int, int, str, float]]) -> pa.Table:
    """A unit_top_images partition of (unit, rank, image, max_activation) rows."""
    return pa.table(
        {
            "model": [model] * len(rows),
            "layer": [layer] * len(rows),
            "unit": [r[0] for r in rows],
            "rank": [r[1] for r in rows],
            "image": [r[2] for r in rows],
            "max_activation": [r[3] for r in rows],
        }
    )
