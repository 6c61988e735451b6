"""A run's results and how they go into the lake: every table of every layer in one
all-or-nothing commit (warehouse/lake.py)."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import torch

from base import __version__
from base.download import weights_sha256
from base.errors import LceError
from extract import registry
from extract.broden import Probe, describe, describe_difference
from extract.tally import ActivationStats, ConceptTally, TopImages
from extract.top_maps import MapRows
from warehouse.lake import SCHEMAS, Write, commit, read_table

if TYPE_CHECKING:
    from extract.config import ExtractConfig

DISSECTION_TABLES = (
    "runs", "unit_thresholds", "unit_concept_tally", "unit_top_images", "unit_null_iou", "concepts",
    "image_features", "unit_top_maps", "unit_concept_tally_folds",
)  # fmt: skip


@dataclass
class LayerResult:
    layer: str
    n_units: int
    thresholds: np.ndarray
    tally: ConceptTally
    stats: ActivationStats
    top: TopImages
    # image_features: probe indices (ascending) and their (n, C) float32 mean vectors; empty
    # without --features
    feature_images: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    # unit_top_maps: (unit, image index) -> raw map, packed S > T mask, label size, for the
    # pairs of ``top`` (extract/top_maps.py)
    top_maps: MapRows = field(default_factory=dict)


@dataclass
class ExtractResult:
    model: str
    probe: Probe
    layers: list[LayerResult]
    n_images: int
    skipped: list[str]
    seconds: float
    device: str
    written: bool
    # work measured on this process: seconds per pass ("pass1", "pass2", "pass3": as the bars number them), the
    # activation cache's final (= peak) size and the largest checkpoint, in bytes
    timings: dict[str, float] = field(default_factory=dict)
    cache_bytes: int = 0
    checkpoint_bytes: int = 0


def study_conflict(lake: Path, probe: Probe, cfg: ExtractConfig, lock: bool = True) -> str | None:
    """What differs between this run and the study already in the lake, if anything.

    The input normalisation is not compared: it belongs to the model (each is fed the pixels it
    was trained on, e.g. SimCLR raw [0, 1], MoCo ImageNet-normalised), so one study mixes them;
    each run records its own in ``runs.normalize``. ``lock=False`` is for callers that already
    hold the lake's lock (the commit re-checks the study there)."""
    runs = read_table(lake, "runs", lock=lock).to_pylist()
    if not runs:
        return None
    first = runs[0]
    wanted = {"quantile": cfg.quantile, "basis": cfg.basis}
    diffs = [f"{k} {v!r} (lake has {first[k]!r})" for k, v in wanted.items() if first[k] != v]
    if first["probe_fingerprint"] != probe.fingerprint:
        diffs.insert(0, "another probe set: " + _probe_difference(probe, first))
    return ", ".join(diffs) or None


def _probe_difference(probe: Probe, first: dict[str, Any]) -> str:
    """What differs between this probe set and the one the lake's study was dissected on: image
    count, label size, each table file's sha256 (a lake older than that record: image count,
    else the fingerprints)."""
    recorded = json.loads(first.get("settings") or "{}").get("probe")
    if isinstance(recorded, dict):
        found = describe_difference(describe(probe), recorded)
    else:
        lake_images = int(first["n_images"] or 0) + int(first["n_skipped_images"] or 0)
        found = []
        if lake_images != len(probe.records):
            found.append(f"{len(probe.records)} images (lake has {lake_images})")
    if not found:
        found = [
            f"its tables differ (fingerprint {probe.fingerprint}, lake has "
            f"{first['probe_fingerprint']})"
        ]
    return "; ".join(found)


def write_results(
    lake: Path, cfg: ExtractConfig, result: ExtractResult, loaded: Any, started: datetime
) -> None:
    """Commit every table of the run (all layers) to the lake in one all-or-nothing step."""
    probe = result.probe
    category_of = probe.concept_category_index()
    numbers = np.array([c.number for c in probe.concepts], dtype=np.int64)
    writes = [Write("concepts", {"probe": probe.name}, _concepts_table(probe, result))]
    run_id = uuid.uuid4().hex
    for order, layer in enumerate(result.layers):
        keys = {"model": result.model, "layer": layer.layer}
        tables = {
            "unit_thresholds": _thresholds_table(layer),
            "unit_concept_tally": _tally_table(layer, category_of, numbers),
            "unit_concept_tally_folds": _fold_tally_table(layer, category_of, numbers),
            "unit_null_iou": pa.table(
                _null_rows(layer, category_of, numbers, cfg.null_permutations)
            ),
            "image_features": _feature_table(result, layer),
            "unit_top_images": _top_images_table(result, layer),
            "unit_top_maps": _top_map_table(result, layer),
            "runs": _runs_table(cfg, result, layer, cfg.layer_offset + order, run_id, started),
        }
        for table, data in tables.items():
            if "model" not in data.column_names:
                data = _with_ids(data, result.model, layer.layer)
            writes.append(Write(table, keys, data))

    def decide() -> tuple[str, ...]:
        # Re-checked under the lake's lock: another run may have committed since this one began.
        conflict = study_conflict(lake, probe, cfg, lock=False)
        if conflict and not cfg.new_study:
            raise LceError(
                f"lake {lake} now holds a study made with other settings: {conflict}; "
                "set new_study to replace it, or use another lake (LCE_HOME)"
            )
        # --new-study always replaces the old dissections, settings conflict or not: its help
        # says so, and keeping the old models would leave them in the new study's embedding.
        return DISSECTION_TABLES if conflict or cfg.new_study else ()

    commit(lake, writes, decide=decide)


def _with_ids(data: pa.Table, model: str, layer: str) -> pa.Table:
    """``data`` with the partition's model and layer as its first two columns."""
    n = len(data)
    data = data.add_column(0, "layer", pa.array([layer] * n, pa.string()))
    return data.add_column(0, "model", pa.array([model] * n, pa.string()))


def _concepts_table(probe: Probe, result: ExtractResult) -> pa.Table:
    return pa.table(
        {
            "probe": [probe.name] * len(probe.concepts),
            "concept_id": np.array([c.number for c in probe.concepts], dtype=np.int64),
            "concept": [c.name for c in probe.concepts],
            "category": [c.category for c in probe.concepts],
            "frequency": [c.frequency for c in probe.concepts],
            "coverage": [c.coverage for c in probe.concepts],
            "label_pixels": result.layers[0].tally.label_pixels.cpu().numpy(),
        }
    )


def _thresholds_table(layer: LayerResult) -> pa.Table:
    stats = layer.stats
    return pa.table(
        {
            "unit": np.arange(layer.n_units),
            "threshold": layer.thresholds.astype(np.float64),
            "act_max": stats.maximum.numpy(),
            "act_mean": (stats.total / max(stats.count, 1)).numpy(),
        }
    )


def _tally_table(layer: LayerResult, category_of: np.ndarray, numbers: np.ndarray) -> pa.Table:
    inter = layer.tally.intersection.cpu().numpy()
    iou = layer.tally.iou(category_of)
    act = layer.tally.activation.cpu().numpy()[:, category_of]
    label_pixels = layer.tally.label_pixels.cpu().numpy()
    u, c = np.nonzero(inter)
    return pa.table(
        {
            "unit": u,
            "concept_id": numbers[c],
            "intersection": inter[u, c],
            "activation_in_category": act[u, c],
            "label_pixels": label_pixels[c],
            "iou": iou[u, c],
        }
    )


def _fold_tally_table(layer: LayerResult, category_of: np.ndarray, numbers: np.ndarray) -> pa.Table:
    """unit_concept_tally_folds rows of one layer: for each (unit, concept) of the whole tally
    (I > 0), every fold's I, A and G, zeros included, so a leave-one-fold-out tally is the whole
    row minus the fold's, read from the lake alone; none without folds."""
    tally = layer.tally
    u, c = np.nonzero(tally.intersection.cpu().numpy())
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("unit", "concept_id", "fold", "intersection", "activation_in_category",
                        "label_pixels", "iou")
    }  # fmt: skip
    for fold in range(tally.n_folds):
        inter = tally.fold_intersection[fold].cpu().numpy()
        act = tally.fold_activation[fold].cpu().numpy()[:, category_of]
        parts["unit"].append(u)
        parts["concept_id"].append(numbers[c])
        parts["fold"].append(np.full(len(u), fold, dtype=np.int64))
        parts["intersection"].append(inter[u, c])
        parts["activation_in_category"].append(act[u, c])
        parts["label_pixels"].append(tally.fold_label_pixels[fold].cpu().numpy()[c])
        parts["iou"].append(tally.iou(category_of, fold=fold)[u, c])
    empty = {"iou": np.zeros(0, dtype=np.float64)}
    return pa.table(
        {
            k: np.concatenate(v) if v else empty.get(k, np.zeros(0, np.int64))
            for k, v in parts.items()
        }
    )


def _top_images_table(result: ExtractResult, layer: LayerResult) -> pa.Table:
    tv, ti = layer.top.values.numpy(), layer.top.images.numpy()
    rows_u, rows_r = np.nonzero(np.isfinite(tv) & (ti >= 0))
    return pa.table(
        {
            "unit": rows_u,
            "rank": rows_r + 1,
            "image": [result.probe.records[i].image for i in ti[rows_u, rows_r]],
            "max_activation": tv[rows_u, rows_r].astype(np.float64),
        }
    )


def _runs_table(
    cfg: ExtractConfig,
    result: ExtractResult,
    layer: LayerResult,
    order: int,
    run_id: str,
    started: datetime,
) -> pa.Table:
    probe = result.probe
    return pa.table(
        {
            "run_id": [run_id],
            "model": [result.model],
            "layer": [layer.layer],
            "layer_order": [order],
            "probe": [f"broden:{probe.root.resolve()}"],
            "probe_fingerprint": [probe.fingerprint],
            "quantile": [cfg.quantile],
            "basis": [cfg.basis],
            "normalize": [cfg.normalize],
            "n_images": [result.n_images],
            "n_skipped_images": [len(result.skipped)],
            "n_units": [layer.n_units],
            "non_strict": [not cfg.strict],
            "device": [result.device],
            "weights_sha256": [weights_sha256(cfg.weights)],
            "torch_version": [torch.__version__],
            "lce_version": [__version__],
            "started_at": [started],
            "seconds": [result.seconds],
            "settings": [json.dumps(_settings(cfg) | {"probe": describe(probe)}, default=str)],
        }
    )


def _top_pairs(top: TopImages) -> set[tuple[int, int]]:
    """The (unit, image index) pairs of the top lists (unit_top_images' rows)."""
    tv, ti = top.values.numpy(), top.images.numpy()
    units, ranks = np.nonzero(np.isfinite(tv) & (ti >= 0))
    return set(zip(units.tolist(), ti[units, ranks].tolist(), strict=True))


def _top_map_table(result: ExtractResult, layer: LayerResult) -> pa.Table:
    """unit_top_maps rows of one layer, one per unit_top_images row: the raw map and the packed
    S > T mask (extract/top_maps.py). A pair without a captured map (none should lack one) is a
    bug, not something to write around."""
    tv, ti = layer.top.values.numpy(), layer.top.images.numpy()
    units, ranks = np.nonzero(np.isfinite(tv) & (ti >= 0))
    columns: dict[str, list[Any]] = {name: [] for name in SCHEMAS["unit_top_maps"].names}
    for unit, rank in zip(units.tolist(), ranks.tolist(), strict=True):
        image = int(ti[unit, rank])
        found = layer.top_maps.get((unit, image))
        if found is None:
            raise LceError(
                f"internal error: no activation map kept for unit {unit} of {layer.layer} on "
                f"image {result.probe.records[image].image}"
            )
        values, packed, (sh, sw) = found
        columns["model"].append(result.model)
        columns["layer"].append(layer.layer)
        columns["unit"].append(unit)
        columns["rank"].append(rank + 1)
        columns["image"].append(result.probe.records[image].image)
        columns["h"].append(int(values.shape[0]))
        columns["w"].append(int(values.shape[1]))
        columns["values"].append(values.numpy().astype(np.float32).reshape(-1))
        columns["sh"].append(sh)
        columns["sw"].append(sw)
        columns["mask"].append(packed.numpy().astype(np.uint8).tobytes())
    return pa.table(columns, schema=SCHEMAS["unit_top_maps"])


def _feature_table(result: ExtractResult, layer: LayerResult) -> pa.Table:
    """image_features rows of one layer: each image's mean vector as a list<float32> (built from
    the flat array and offsets, no per-image Python loop); empty without --features."""
    n, width = layer.features.shape
    flat = pa.array(np.ascontiguousarray(layer.features, dtype=np.float32).reshape(-1))
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * width)
    return pa.table(
        {
            "model": [result.model] * n,
            "layer": [layer.layer] * n,
            "image": [result.probe.records[i].image for i in layer.feature_images.tolist()],
            "features": pa.ListArray.from_arrays(offsets, flat),
        }
    )


def _null_rows(
    layer: LayerResult, category_of: np.ndarray, numbers: np.ndarray, count: int
) -> dict[str, np.ndarray]:
    """Per unit and null permutation: the best concept against the permuted labels and its IoU
    (ties to the lowest concept id, as for the real labels; no concept where every IoU is 0)."""
    units, perms, concepts, ious = [], [], [], []
    order = np.argsort(numbers, kind="stable")  # dense index order by concept id
    for k in range(count):
        iou = layer.tally.iou(category_of, null=k)[:, order]
        best = np.argmax(iou, axis=1)
        value = iou[np.arange(len(iou)), best]
        units.append(np.arange(len(iou)))
        perms.append(np.full(len(iou), k))
        concepts.append(np.where(value > 0, numbers[order][best], -1))
        ious.append(value)
    if not count:
        return {k: np.zeros(0) for k in ("unit", "permutation", "concept_id", "iou")}
    concept = np.concatenate(concepts)
    return {
        "unit": np.concatenate(units),
        "permutation": np.concatenate(perms),
        "concept_id": pa.array(concept, mask=concept < 0),
        "iou": np.concatenate(ious),
    }


def _settings(cfg: ExtractConfig) -> dict[str, Any]:
    keep = ("model", "layers", "weights", "batch_size", "top_images", "cache", "skip_bad", "strict",
            "null_permutations", "null_seed", "folds", "fold_seed")  # fmt: skip
    out = {k: v for k, v in asdict(cfg).items() if k in keep}
    if cfg.weights is None and registry.lookup(cfg.model) is None:
        # an architecture without weights is a random network: the seed makes it this one
        out["init_seed"] = cfg.seed
    return out
