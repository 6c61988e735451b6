"""The dissection engine: two streaming passes over a probe set, then the lake.

Pass 1 runs the model once, keeps per-unit top-k buffers (exact thresholds), activation stats and
top images, and appends the raw activations to a file cache. Pass 2 reads the cache (or runs the
model again with --no-cache), thresholds, upsamples only the units that can fire, and tallies
intersections against the label maps. Memory is bounded by the batch, the top-k buffers
(q of the values) and the tallies; never by the number of images.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, Dataset

from base import __version__
from base.errors import LceError
from base.faults import pause_point
from extract import distributed
from extract.broden import ImageLabels, Probe, load_image, load_labels, open_probe
from extract.models import (
    NORMALIZATIONS,
    LayerTaps,
    find_layers,
    infer_patch_size,
    load_model,
    resolve_normalize,
)
from extract.quantile import TopK, buffer_size, quantile_from_top
from extract.tally import ActivationStats, ConceptTally, TopImages
from extract.top_maps import MapRows, TopMaps
from extract.upsample import upsample
from warehouse.lake import (
    Write,
    check_name,
    commit,
    ensure_writable,
    file_lock,
    os_error,
    read_table,
)

DISSECTION_TABLES = (
    "runs", "unit_thresholds", "unit_concept_tally", "unit_top_images", "unit_null_iou", "concepts",
    "image_features", "unit_top_maps",
)  # fmt: skip
# Default seed of the null permutations (--null-seed): one seed for every run of a study, so
# each model is compared with the same shuffled pairs of images.
NULL_SEED = 0


@dataclass
class ExtractConfig:
    model: str
    layers: list[str]
    probe: Path
    lake: Path
    name: str | None = None
    weights: Path | None = None
    quantile: float = 0.005
    basis: str = "raw"
    batch_size: int = 16
    device: str = "auto"
    top_images: int = 5
    normalize: str = "auto"  # the model's own (registry, timm), else imagenet
    strict: bool = True
    skip_bad: bool = False
    cache: bool = True
    resume: bool = False
    new_study: bool = False
    workers: int = 0
    checkpoint_every: int = 20
    null_permutations: int = 0
    null_seed: int = NULL_SEED
    features: bool = True  # each image's spatially averaged vector per layer (image_features)
    progress: bool = True
    stop_after_batches: int | None = field(default=None, repr=False)  # testing hook


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


class Interrupted(Exception):
    """Raised by the testing hook that stops a run after a number of batches."""


# ---------------------------------------------------------------- datasets


class _ProbeItems(Dataset):
    """Images and/or label masks of a probe set; errors come back as text, not exceptions.

    DataLoader workers would wrap an exception in a multi-line traceback; returning the message
    keeps the user's error to one line (or lets --skip-bad count it).
    """

    def __init__(self, probe: Probe, images: bool, labels: bool, normalize: str) -> None:
        self.probe = probe
        self.images = images
        self.labels = labels
        self.category_of = probe.concept_category_index()
        mean, std = NORMALIZATIONS[normalize]
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.probe.records)

    def __getitem__(
        self, i: int
    ) -> tuple[int, torch.Tensor | None, ImageLabels | None, str | None]:
        record = self.probe.records[i]
        try:
            tensor = None
            if self.images:
                pixels = load_image(self.probe, record)
                tensor = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div_(255.0)
                tensor = (tensor - self.mean) / self.std
            labels = load_labels(self.probe, record, self.category_of) if self.labels else None
        except LceError as exc:
            return i, None, None, str(exc)
        return i, tensor, labels, None


def _collate(items: list) -> list:
    return items


def batches_for(probe: Probe, indices: list[int], batch_size: int) -> list[list[int]]:
    """Consecutive batches of images that share (ih, iw, sh, sw), so they stack and upsample together."""
    groups: dict[tuple[int, int, int, int], list[int]] = {}
    for i in indices:
        r = probe.records[i]
        groups.setdefault((r.ih, r.iw, r.sh, r.sw), []).append(i)
    out = []
    for members in groups.values():
        out += [members[s : s + batch_size] for s in range(0, len(members), batch_size)]
    return sorted(out, key=lambda b: b[0])


# ---------------------------------------------------------------- cache


class ActivationCache:
    """Raw activations in pass-1 order, appended to a file and read back sequentially.

    Plain reads and writes (not a memory map) keep the data in the OS page cache rather than in
    the process, so resident memory does not grow with the probe set.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate(self, size: int) -> None:
        with self.path.open("ab") as fh:
            fh.truncate(size)

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def append(self, arrays: list[np.ndarray]) -> None:
        with self.path.open("ab") as fh:
            for a in arrays:
                fh.write(np.ascontiguousarray(a, dtype=np.float32).tobytes())

    def read(self, shapes: list[list[tuple[int, ...]]]) -> Iterator[list[np.ndarray]]:
        with self.path.open("rb") as fh:
            for batch in shapes:
                out = []
                for shape in batch:
                    count = int(np.prod(shape))
                    out.append(np.fromfile(fh, dtype=np.float32, count=count).reshape(shape))
                yield out


# ---------------------------------------------------------------- engine


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LceError("--device cuda: no CUDA device is available")
    if name not in {"cpu", "cuda"} and not name.startswith("cuda:"):
        raise LceError(f"--device {name!r}: expected auto, cpu or cuda")
    return torch.device(name)


def check_config(cfg: ExtractConfig) -> None:
    if not 0 < cfg.quantile < 1:
        raise LceError(f"--quantile {cfg.quantile}: expected a number between 0 and 1")
    if cfg.basis not in {"raw", "upsampled"}:
        raise LceError(f"--basis {cfg.basis!r}: expected raw or upsampled")
    if cfg.normalize not in {"auto", *NORMALIZATIONS}:
        raise LceError(f"--normalize {cfg.normalize!r}: expected auto, {', '.join(NORMALIZATIONS)}")
    if cfg.batch_size < 1 or cfg.top_images < 0:
        raise LceError("--batch-size must be >= 1 and --top-images >= 0")
    if not 0 <= cfg.null_permutations <= 1000:
        raise LceError(f"--null-permutations {cfg.null_permutations}: expected 0 to 1000")
    if cfg.null_seed < 0:
        raise LceError(f"--null-seed {cfg.null_seed}: expected an integer >= 0")
    if not cfg.layers:
        raise LceError("give at least one --layer")
    if len(set(cfg.layers)) != len(cfg.layers):
        raise LceError(f"--layer given twice: {cfg.layers}")
    for layer in cfg.layers:
        check_name("--layer", layer)
    if cfg.name is not None:
        check_name("--name", cfg.name)


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
    wanted = {
        "probe_fingerprint": probe.fingerprint,
        "quantile": cfg.quantile,
        "basis": cfg.basis,
    }
    diffs = [f"{k} {v!r} (lake has {first[k]!r})" for k, v in wanted.items() if first[k] != v]
    return ", ".join(diffs) or None


def settings_key(cfg: ExtractConfig, probe: Probe, name: str, world: int) -> str:
    weights = ""
    if cfg.weights is not None and Path(cfg.weights).is_file():
        st = Path(cfg.weights).stat()
        weights = f"{Path(cfg.weights).resolve()}:{st.st_size}:{st.st_mtime_ns}"
    parts = [cfg.model, name, weights, cfg.layers, probe.fingerprint, cfg.quantile, cfg.basis,
             cfg.normalize, cfg.batch_size, cfg.top_images, cfg.skip_bad, cfg.cache, world,
             cfg.null_permutations, cfg.null_seed, cfg.features]  # fmt: skip
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:12]


def run_extract(cfg: ExtractConfig) -> ExtractResult:
    """Dissect the model's layers over the probe set and write the lake partitions."""
    check_config(cfg)
    cfg = replace(cfg, normalize=resolve_normalize(cfg.model, cfg.normalize))
    lake = Path(cfg.lake)
    ensure_writable(lake)
    probe = open_probe(cfg.probe)
    if not probe.concepts:
        raise LceError(f"{probe.root}: label.csv defines no concepts used by any category")
    conflict = study_conflict(lake, probe, cfg)
    if conflict and not cfg.new_study:
        raise LceError(
            f"lake {lake} holds a study made with other settings: {conflict}; "
            "use --new-study to start a new study there, or another --lake / LCE_HOME"
        )
    device = resolve_device(cfg.device)
    dist = distributed.setup(device)
    loaded = load_model(cfg.model, cfg.weights, strict=cfg.strict, name=cfg.name)
    check_name("model name", loaded.name)
    model = loaded.module.to(device)
    layers = find_layers(model, cfg.layers)
    patch = infer_patch_size(model)

    key = settings_key(cfg, probe, loaded.name, dist.world)
    workdir = lake / ".tmp" / f"extract-{key}" / f"rank{dist.rank}"
    lock = lake / ".locks" / f"extract-{key}-rank{dist.rank}.lock"
    busy = (
        f"another lce extract with the same model and settings is running on lake {lake} "
        f"(it holds {lock}); wait for it to finish or stop it"
    )
    # One writer per work folder: two identical runs would share (and corrupt) one cache.
    with file_lock(lock, exclusive=True, wait=False, busy=busy):
        pause_point("extract-locked")
        try:
            result = _run_locked(cfg, probe, loaded, model, layers, patch, device, dist, workdir)
        except Interrupted:
            raise  # the testing hook: the checkpoint stays, as after a kill
        except KeyboardInterrupt:
            if (workdir / "checkpoint.pt").is_file():
                raise LceError(
                    f"interrupted; the checkpoint {workdir / 'checkpoint.pt'} is kept: run the "
                    f"same command with --resume to continue, or delete {workdir.parent}"
                ) from None
            shutil.rmtree(workdir.parent if dist.world == 1 else workdir, ignore_errors=True)
            raise LceError("interrupted before the first checkpoint; nothing was kept") from None
        except BaseException as exc:
            # A failed run frees its cache (a full disk must not stay full); only an
            # interruption is resumable.
            shutil.rmtree(workdir.parent if dist.world == 1 else workdir, ignore_errors=True)
            if isinstance(exc, OSError):
                raise os_error(exc, str(workdir)) from exc
            raise
    return result


def _run_locked(
    cfg: ExtractConfig,
    probe: Probe,
    loaded: Any,
    model: torch.nn.Module,
    layers: dict[str, torch.nn.Module],
    patch: tuple[int, int] | None,
    device: torch.device,
    dist: Any,
    workdir: Path,
) -> ExtractResult:
    """The two passes and the lake commit, with the work folder's lock held."""
    lake = Path(cfg.lake)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    if not cfg.resume and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = workdir / "checkpoint.pt"

    mine = [i for i in range(len(probe.records)) if i % dist.world == dist.rank]
    batches = batches_for(probe, mine, cfg.batch_size)
    shapes = layer_shapes(model, layers, probe, device, patch)
    n_values = {
        name: sum(
            (s[1] * s[2] if cfg.basis == "raw" else r.sh * r.sw)
            for r in probe.records
            for s in [shapes[name][(r.ih, r.iw)]]
        )
        for name in cfg.layers
    }

    taps = LayerTaps(layers, patch)
    try:
        n_units = {name: next(iter(shapes[name].values()))[0] for name in cfg.layers}
        state = _load_checkpoint(checkpoint_path, cfg, n_units) if cfg.resume else None
        pass1 = _pass_one(
            cfg, probe, model, taps, batches, shapes, n_values, device, workdir, state
        )
        thresholds = {}
        for name in cfg.layers:
            top = distributed.gather_topk(pass1["topk"][name].values, dist)
            total = pass1["n_seen"][name] = distributed.sum_int(pass1["n_seen"][name], dist)
            if total == 0:
                raise LceError(f"{probe.root}: no images could be read")
            per_unit = quantile_from_top(top.float().cpu().numpy(), total, 1 - cfg.quantile)
            thresholds[name] = torch.from_numpy(per_unit.astype(np.float32))
        maps = TopMaps(pass1["top"])  # this process's top lists: final after pass 1
        tallies = _pass_two(
            cfg, probe, model, taps, batches, pass1, thresholds, device, workdir, state, maps
        )
    finally:
        taps.close()

    skipped = distributed.gather_lists(pass1["skipped"], dist)
    means = _read_features(cfg, pass1, n_units)
    results = []
    for name in cfg.layers:
        tally = tallies[name]
        distributed.sum_tally(tally, dist)
        stats = pass1["stats"][name]
        distributed.sum_stats(stats, dist)
        best = distributed.merge_top_images(pass1["top"][name], dist)
        # each (unit, image) of the merged lists was captured by the rank that holds the image
        pairs = _top_pairs(best)
        top_maps = distributed.gather_dicts(maps.for_pairs(name, pairs), dist)
        images, rows = distributed.gather_rows(*means[name], dist)
        order = np.argsort(images, kind="stable")  # probe order, whatever the world size
        results.append(
            LayerResult(
                name, len(thresholds[name]), thresholds[name].numpy(), tally, stats, best,
                images[order], rows[order], top_maps,
            )
        )  # fmt: skip
    n_images = len(probe.records) - len(skipped)
    seconds = time.perf_counter() - clock
    result = ExtractResult(
        loaded.name, probe, results, n_images, sorted(skipped), seconds, str(device), False
    )
    if dist.rank == 0:
        write_results(lake, cfg, result, loaded, started)
        result.written = True
    distributed.barrier(dist)
    shutil.rmtree(workdir.parent if dist.world == 1 else workdir, ignore_errors=True)
    return result


def _read_features(
    cfg: ExtractConfig, pass1: dict[str, Any], n_units: dict[str, int]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per layer: this process's image indices and their mean vectors, read back from pass 1's
    features file (batches in ``kept_batches`` order); empty without ``cfg.features``."""
    kept: list[list[int]] = pass1["kept_batches"] if cfg.features else []
    parts: dict[str, list[np.ndarray]] = {
        n: [np.zeros((0, n_units[n]), np.float32)] for n in cfg.layers
    }
    shapes = [[(len(b), n_units[n]) for n in cfg.layers] for b in kept]
    for arrays in pass1["features"].read(shapes) if kept else []:
        for name, array in zip(cfg.layers, arrays, strict=True):
            parts[name].append(array)
    images = np.array([i for b in kept for i in b], dtype=np.int64)
    return {n: (images, np.concatenate(parts[n])) for n in cfg.layers}


def layer_shapes(
    model: torch.nn.Module,
    layers: dict[str, torch.nn.Module],
    probe: Probe,
    device: torch.device,
    patch: tuple[int, int] | None = None,
) -> dict[str, dict[tuple[int, int], tuple[int, int, int]]]:
    """(C, h, w) of each layer for each distinct image size, from one blank forward pass each.

    This also rejects layers with unusable outputs, and models that cannot take the probe's image
    size (a ViT built for 224 x 224), before any real work starts.
    """
    sizes = sorted({(r.ih, r.iw) for r in probe.records})
    out: dict[str, dict[tuple[int, int], tuple[int, int, int]]] = {n: {} for n in layers}
    taps = LayerTaps(layers, patch)
    try:
        for ih, iw in sizes:
            try:
                with torch.no_grad():
                    model(torch.zeros((1, 3, ih, iw), device=device))
            except (RuntimeError, AssertionError, ValueError) as exc:
                reason = (
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                )
                raise LceError(
                    f"the model cannot run on the probe's {ih} x {iw} images: {reason}"
                ) from None
            for name in layers:
                if name not in taps.outputs:
                    raise LceError(f"layer {name!r} was not called in the model's forward pass")
                grid = taps.grid(name, (ih, iw))
                out[name][(ih, iw)] = tuple(grid.shape[1:])  # type: ignore[assignment]
    finally:
        taps.close()
    return out


def _loader(
    cfg: ExtractConfig, probe: Probe, batches: list[list[int]], images: bool, labels: bool
) -> DataLoader:
    dataset = _ProbeItems(probe, images=images, labels=labels, normalize=cfg.normalize)
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=cfg.workers,
        collate_fn=_collate,
        persistent_workers=False,
    )


def _progress(cfg: ExtractConfig, total: int, description: str, done: int = 0) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} img/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not cfg.progress,
    )
    task = progress.add_task(description, total=total, completed=done, rate="-")
    return progress, task


def _forward(
    model: torch.nn.Module,
    taps: LayerTaps,
    images: torch.Tensor,
    layers: list[str],
    device: torch.device,
) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        model(images.to(device, non_blocking=True))
    size = (images.shape[2], images.shape[3])
    return {name: taps.grid(name, size).float() for name in layers}


def _check_finite(acts: torch.Tensor, layer: str, probe: Probe, indices: list[int]) -> None:
    finite = torch.isfinite(acts)
    if bool(finite.all()):
        return
    bad = torch.nonzero(~finite)[0].tolist()
    image = probe.records[indices[bad[0]]].image
    raise LceError(f"layer {layer!r}: non-finite activation on image {image}, unit {bad[1]}")


def _split(items: list, cfg: ExtractConfig, skipped: list[str], probe: Probe) -> list:
    good = []
    for item in items:
        if item[3] is None:
            good.append(item)
        elif cfg.skip_bad:
            if probe.records[item[0]].image not in skipped:
                skipped.append(probe.records[item[0]].image)
        else:
            raise LceError(item[3])
    return good


def _pass_one(
    cfg: ExtractConfig,
    probe: Probe,
    model: torch.nn.Module,
    taps: LayerTaps,
    batches: list[list[int]],
    shapes: dict[str, dict[tuple[int, int], tuple[int, int, int]]],
    n_values: dict[str, int],
    device: torch.device,
    workdir: Path,
    state: dict | None,
) -> dict[str, Any]:
    n_units = {name: next(iter(shapes[name].values()))[0] for name in cfg.layers}
    topk = {n: TopK(n_units[n], buffer_size(n_values[n], cfg.quantile), device) for n in cfg.layers}
    stats = {n: ActivationStats(n_units[n]) for n in cfg.layers}
    top = {n: TopImages(n_units[n], cfg.top_images) for n in cfg.layers}
    n_seen = dict.fromkeys(cfg.layers, 0)
    skipped: list[str] = []
    cache_shapes: list[list[tuple[int, ...]]] = []
    kept_batches: list[list[int]] = []
    cache = ActivationCache(workdir / "activations.bin")
    # Per image and layer, the spatial mean of the map (image_features): appended per batch in
    # kept_batches order, like the cache, so memory does not grow with the probe set.
    features = ActivationCache(workdir / "features.bin")
    start = 0
    if state is not None and state["pass"] >= 1:
        start = state["batch"]
        for n in cfg.layers:
            topk[n].values = state["topk"][n].to(device)
            stats[n].total, stats[n].count, stats[n].maximum = state["stats"][n]
            top[n].values, top[n].images = state["top"][n]
        n_seen, skipped = state["n_seen"], state["skipped"]
        cache_shapes, kept_batches = state["cache_shapes"], state["kept_batches"]
        cache.truncate(state["cache_bytes"])
        features.truncate(state["feature_bytes"])
    else:
        cache.truncate(0)
        features.truncate(0)
    if state is not None and state["pass"] == 2:
        start = len(batches)

    def snapshot(batch: int) -> dict[str, Any]:
        return {
            "pass": 1,
            "batch": batch,
            "topk": {n: topk[n].values.cpu() for n in cfg.layers},
            "stats": {n: (stats[n].total, stats[n].count, stats[n].maximum) for n in cfg.layers},
            "top": {n: (top[n].values, top[n].images) for n in cfg.layers},
            "n_seen": dict(n_seen),
            "skipped": list(skipped),
            "cache_shapes": list(cache_shapes),
            "kept_batches": list(kept_batches),
            "cache_bytes": cache.size(),
            "feature_bytes": features.size(),
        }

    progress, task = _progress(cfg, len(probe.records), "pass 1/2 activations")
    images_done = sum(len(b) for b in batches[:start])
    progress.update(task, completed=images_done)
    tic = time.perf_counter()
    with progress:
        # Under --skip-bad the labels are read here too, so an image with a bad label file is
        # skipped before any threshold depends on it; otherwise pass 2 finds bad labels, still
        # before anything is written.
        loader = _loader(cfg, probe, batches[start:], images=True, labels=cfg.skip_bad)
        for offset, items in enumerate(loader):
            position = start + offset
            good = _split(items, cfg, skipped, probe)
            if good:
                indices = [it[0] for it in good]
                acts = _forward(
                    model, taps, torch.stack([it[1] for it in good]), cfg.layers, device
                )
                arrays, means = [], []
                for name in cfg.layers:
                    a = acts[name]
                    _check_finite(a, name, probe, indices)
                    stats[name].update(a)
                    top[name].update(a.amax(dim=(2, 3)), torch.tensor(indices))
                    if cfg.basis == "raw":
                        values = a.transpose(0, 1).reshape(a.shape[1], -1)
                    else:
                        # one image at a time, as the semantics define S: for small maps
                        # PyTorch's values depend on what else is in the stack
                        r = probe.records[indices[0]]
                        up = torch.cat(
                            [upsample(a[j : j + 1], (r.sh, r.sw)) for j in range(len(a))]
                        )
                        values = up.transpose(0, 1).reshape(a.shape[1], -1)
                    n_seen[name] += values.shape[1]
                    topk[name].update(values)
                    if cfg.cache:
                        arrays.append(a.cpu().numpy())
                    if cfg.features:
                        means.append(a.mean(dim=(2, 3)).cpu().numpy())
                if cfg.features:
                    features.append(means)
                if cfg.cache:
                    cache.append(arrays)
                    cache_shapes.append([x.shape for x in arrays])
                kept_batches.append(indices)
            images_done += len(items)
            rate = images_done / max(time.perf_counter() - tic, 1e-9)
            progress.update(task, completed=images_done, rate=f"{rate:.1f}")
            if (offset + 1) % cfg.checkpoint_every == 0 or position + 1 == len(batches):
                _save_checkpoint(workdir / "checkpoint.pt", snapshot(position + 1), cfg, probe)
            if cfg.stop_after_batches is not None and position + 1 >= cfg.stop_after_batches:
                _save_checkpoint(workdir / "checkpoint.pt", snapshot(position + 1), cfg, probe)
                raise Interrupted(f"stopped after {position + 1} batches (testing hook)")
    return {
        "topk": topk,
        "stats": stats,
        "top": top,
        "n_seen": n_seen,
        "skipped": skipped,
        "cache": cache,
        "features": features,
        "cache_shapes": cache_shapes,
        "kept_batches": kept_batches,
        "pass1_state": snapshot(len(batches)),
    }


def _pass_two(
    cfg: ExtractConfig,
    probe: Probe,
    model: torch.nn.Module,
    taps: LayerTaps,
    batches: list[list[int]],
    pass1: dict[str, Any],
    thresholds: dict[str, torch.Tensor],
    device: torch.device,
    workdir: Path,
    state: dict | None,
    maps: TopMaps,
) -> dict[str, ConceptTally]:
    n_concepts, n_categories = len(probe.concepts), len(probe.categories)
    k_null = cfg.null_permutations
    tallies = {
        n: ConceptTally(len(thresholds[n]), n_concepts, n_categories, device, n_null=k_null)
        for n in cfg.layers
    }
    kept: list[list[int]] = pass1["kept_batches"]
    partners = null_partners(probe, [i for batch in kept for i in batch], k_null, cfg.null_seed)
    category_of = probe.concept_category_index()
    start = 0
    if state is not None and state["pass"] == 2:
        start = state["batch"]
        for n in cfg.layers:
            tallies[n].load(state["tally"][n])
        maps.load(state["top_maps"])
    dev_thresholds = {n: t.to(device) for n, t in thresholds.items()}
    progress, task = _progress(cfg, sum(len(b) for b in kept), "pass 2/2 concept tally")
    done = sum(len(b) for b in kept[:start])
    progress.update(task, completed=done)
    tic = time.perf_counter()
    inputs = _pass_two_inputs(cfg, probe, model, taps, kept, pass1, device, start)
    with progress:
        for offset, (labels, acts) in enumerate(inputs):
            position = start + offset
            nulls = [
                [load_labels(probe, probe.records[p[i]], category_of) for p in partners]
                for i in kept[position]
            ]
            sizes = [(probe.records[i].sh, probe.records[i].sw) for i in kept[position]]
            for name in cfg.layers:
                a = acts[name].to(device)
                for j, image_labels in enumerate(labels):
                    tallies[name].update(a[j], dev_thresholds[name], image_labels, nulls[j])
                maps.capture(name, kept[position], a, dev_thresholds[name], sizes)
            done += len(labels)
            rate = done / max(time.perf_counter() - tic, 1e-9)
            progress.update(task, completed=done, rate=f"{rate:.1f}")
            last = position + 1 == len(kept)
            stopping = (
                cfg.stop_after_batches is not None
                and len(batches) + position + 1 >= cfg.stop_after_batches
            )
            if (offset + 1) % cfg.checkpoint_every == 0 or last or stopping:
                snap = dict(pass1["pass1_state"], **{
                    "pass": 2,
                    "batch": position + 1,
                    "tally": {n: {k: v.cpu() for k, v in tallies[n].state().items()} for n in cfg.layers},
                    "top_maps": maps.state(),
                })  # fmt: skip
                _save_checkpoint(workdir / "checkpoint.pt", snap, cfg, probe)
            if (
                cfg.stop_after_batches is not None
                and len(batches) + position + 1 >= cfg.stop_after_batches
            ):
                raise Interrupted(
                    f"stopped after {len(batches) + position + 1} batches (testing hook)"
                )
    return tallies


def null_partners(
    probe: Probe, indices: list[int], count: int, seed: int = NULL_SEED
) -> list[dict[int, int]]:
    """``count`` derangements of ``indices``, drawn from ``seed``: in each, every image is paired with another
    image of the same label size (a random single cycle through each size group, so no image is
    its own partner). An image alone in its size group has no other partner and keeps itself;
    Broden-style probes have one size, so this does not arise there."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i in indices:
        groups.setdefault((probe.records[i].sh, probe.records[i].sw), []).append(i)
    out = []
    for k in range(count):
        rng = np.random.default_rng([seed, k])
        mapping: dict[int, int] = {}
        for members in groups.values():
            order = rng.permutation(np.array(members, dtype=np.int64))
            for a, b in zip(order.tolist(), np.roll(order, -1).tolist(), strict=True):
                mapping[a] = b
        out.append(mapping)
    return out


def _pass_two_inputs(
    cfg: ExtractConfig,
    probe: Probe,
    model: torch.nn.Module,
    taps: LayerTaps,
    kept: list[list[int]],
    pass1: dict[str, Any],
    device: torch.device,
    start: int,
) -> Iterator[tuple[list[ImageLabels], dict[str, torch.Tensor]]]:
    """Per batch from ``start`` on: its label masks and its layers' raw maps.

    With the cache, the maps come from pass 1's file and only labels are read. On CPU they are
    decoded in this process: a loader worker would compete with the tally for the same cores
    (on two cores, a label-decoding worker beside the tally tripled its time, as OpenMP threads
    wait on each other). On GPU the tally leaves the cores free, so the workers decode.
    Without the cache (--no-cache), images and labels are read again and the model runs again.
    """
    if cfg.cache:
        workers = cfg.workers if device.type != "cpu" else 0
        loader = _loader(replace(cfg, workers=workers), probe, kept[start:], False, True)
        cached = pass1["cache"].read(pass1["cache_shapes"])
        for _ in range(start):
            next(cached)
    else:
        loader = _loader(cfg, probe, kept[start:], images=True, labels=True)
        cached = None
    for items in loader:
        errors = [it[3] for it in items if it[3] is not None]
        if errors:  # a file that read fine in pass 1 but not now
            raise LceError(errors[0])
        if cached is not None:
            arrays = next(cached)
            acts = {n: torch.from_numpy(a) for n, a in zip(cfg.layers, arrays, strict=True)}
        else:
            acts = _forward(model, taps, torch.stack([it[1] for it in items]), cfg.layers, device)
        yield [it[2] for it in items], acts


def _save_checkpoint(path: Path, state: dict[str, Any], cfg: ExtractConfig, probe: Probe) -> None:
    state = dict(state, key=path.parent.parent.name)
    tmp = path.with_suffix(".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as a RuntimeError
        tmp.unlink(missing_ok=True)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LceError(f"{path}: cannot write the checkpoint: {reason}") from None


_CHECKPOINT_KEYS = {"pass", "batch", "topk", "stats", "top", "n_seen", "skipped", "cache_shapes",
                    "kept_batches", "cache_bytes", "feature_bytes", "key"}  # fmt: skip


def _warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def _load_checkpoint(path: Path, cfg: ExtractConfig, n_units: dict[str, int]) -> dict | None:
    """The checkpoint of this run's work folder, or None to start over.

    A checkpoint that cannot be read or does not fit this run (truncated, tampered with, from
    another version, its cache gone) is discarded with a warning: resuming from it could only
    give wrong numbers or a traceback, and starting over costs time, not correctness."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        problem = _checkpoint_problem(state, path, cfg, n_units)
    except Exception as exc:
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if problem:
        _warn(f"{path}: checkpoint discarded, starting over ({problem[:200]})")
        path.unlink(missing_ok=True)
        return None
    return state


def _checkpoint_problem(
    state: Any, path: Path, cfg: ExtractConfig, n_units: dict[str, int]
) -> str | None:
    if not isinstance(state, dict) or not set(state) >= _CHECKPOINT_KEYS:
        return "not an lce checkpoint"
    if state["key"] != path.parent.parent.name or state["pass"] not in (1, 2):
        return "made by a run with other settings"
    for name in cfg.layers:
        values = state["topk"].get(name)
        if not isinstance(values, torch.Tensor) or values.ndim != 2 or len(values) != n_units[name]:
            return f"layer {name!r} does not match"
        if state["pass"] == 2 and name not in state.get("tally", {}):
            return f"layer {name!r} has no tally"
        if state["pass"] == 2 and name not in state.get("top_maps", {}):
            return f"layer {name!r} has no top-image maps (a checkpoint of an older version)"
    cache = path.parent / "activations.bin"
    if cfg.cache and (not cache.is_file() or cache.stat().st_size < state["cache_bytes"]):
        return "its activation cache is missing or shorter than recorded"
    means = path.parent / "features.bin"
    if cfg.features and (not means.is_file() or means.stat().st_size < state["feature_bytes"]):
        return "its image features file is missing or shorter than recorded"
    return None


# ---------------------------------------------------------------- output


def write_results(
    lake: Path, cfg: ExtractConfig, result: ExtractResult, loaded: Any, started: datetime
) -> None:
    """Commit every table of the run (all layers) to the lake in one all-or-nothing step."""
    probe = result.probe
    category_of = probe.concept_category_index()
    numbers = np.array([c.number for c in probe.concepts], dtype=np.int64)
    first = result.layers[0].tally
    writes: list[Write] = []

    def write_partition(_lake: Path, table: str, keys: dict[str, str], data: pa.Table) -> None:
        writes.append(Write(table, keys, data))

    write_partition(
        lake,
        "concepts",
        {"probe": probe.name},
        pa.table(
            {
                "probe": [probe.name] * len(probe.concepts),
                "concept_id": numbers,
                "concept": [c.name for c in probe.concepts],
                "category": [c.category for c in probe.concepts],
                "frequency": [c.frequency for c in probe.concepts],
                "coverage": [c.coverage for c in probe.concepts],
                "label_pixels": first.label_pixels.cpu().numpy(),
            }
        ),
    )
    run_id = uuid.uuid4().hex
    for order, layer in enumerate(result.layers):
        keys = {"model": result.model, "layer": layer.layer}
        units = np.arange(layer.n_units)
        stats = layer.stats
        write_partition(
            lake,
            "unit_thresholds",
            keys,
            pa.table(
                {
                    "model": [result.model] * layer.n_units,
                    "layer": [layer.layer] * layer.n_units,
                    "unit": units,
                    "threshold": layer.thresholds.astype(np.float64),
                    "act_max": stats.maximum.numpy(),
                    "act_mean": (stats.total / max(stats.count, 1)).numpy(),
                }
            ),
        )
        inter = layer.tally.intersection.cpu().numpy()
        iou = layer.tally.iou(category_of)
        act = layer.tally.activation.cpu().numpy()[:, category_of]
        label_pixels = layer.tally.label_pixels.cpu().numpy()
        u, c = np.nonzero(inter)
        write_partition(
            lake,
            "unit_concept_tally",
            keys,
            pa.table(
                {
                    "model": [result.model] * len(u),
                    "layer": [layer.layer] * len(u),
                    "unit": u,
                    "concept_id": numbers[c],
                    "intersection": inter[u, c],
                    "activation_in_category": act[u, c],
                    "label_pixels": label_pixels[c],
                    "iou": iou[u, c],
                }
            ),
        )
        null_rows = _null_rows(layer, category_of, numbers, cfg.null_permutations)
        write_partition(
            lake,
            "unit_null_iou",
            keys,
            pa.table(
                {
                    "model": [result.model] * len(null_rows["unit"]),
                    "layer": [layer.layer] * len(null_rows["unit"]),
                    **null_rows,
                }
            ),
        )
        write_partition(lake, "image_features", keys, _feature_table(result, layer))
        tv, ti = layer.top.values.numpy(), layer.top.images.numpy()
        rows_u, rows_r = np.nonzero(np.isfinite(tv) & (ti >= 0))
        write_partition(
            lake,
            "unit_top_images",
            keys,
            pa.table(
                {
                    "model": [result.model] * len(rows_u),
                    "layer": [layer.layer] * len(rows_u),
                    "unit": rows_u,
                    "rank": rows_r + 1,
                    "image": [probe.records[i].image for i in ti[rows_u, rows_r]],
                    "max_activation": tv[rows_u, rows_r].astype(np.float64),
                }
            ),
        )
        write_partition(lake, "unit_top_maps", keys, _top_map_table(result, layer))
        write_partition(
            lake,
            "runs",
            keys,
            pa.table(
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
                    "torch_version": [torch.__version__],
                    "lce_version": [__version__],
                    "started_at": [started],
                    "seconds": [result.seconds],
                    "settings": [json.dumps(_settings(cfg), default=str)],
                }
            ),
        )

    def decide() -> tuple[str, ...]:
        # Re-checked under the lake's lock: another run may have committed since this one began.
        conflict = study_conflict(lake, probe, cfg, lock=False)
        if conflict and not cfg.new_study:
            raise LceError(
                f"lake {lake} now holds a study made with other settings: {conflict}; "
                "use --new-study to replace it, or another --lake / LCE_HOME"
            )
        return DISSECTION_TABLES if conflict else ()

    commit(lake, writes, decide=decide)


def _top_pairs(top: TopImages) -> set[tuple[int, int]]:
    """The (unit, image index) pairs of the top lists (unit_top_images' rows)."""
    tv, ti = top.values.numpy(), top.images.numpy()
    units, ranks = np.nonzero(np.isfinite(tv) & (ti >= 0))
    return set(zip(units.tolist(), ti[units, ranks].tolist(), strict=True))


def _top_map_table(result: ExtractResult, layer: LayerResult) -> pa.Table:
    """unit_top_maps rows of one layer, one per unit_top_images row: the raw map and the packed
    S > T mask (extract/top_maps.py). A pair without a captured map (none should lack one) is a
    bug, not something to write around."""
    from warehouse.lake import SCHEMAS

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
            "null_permutations", "null_seed")  # fmt: skip
    return {k: v for k, v in asdict(cfg).items() if k in keep}
