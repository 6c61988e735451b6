"""The dissection engine: settings, the run's lock and work folder, and the three passes in order.

``run_extract`` checks the settings, loads the model, takes the work folder's lock and runs the
passes of extract/passes.py (activations, exact thresholds, concept tally), then commits every table
to the lake in one step (extract/lake_write.py). Under torchrun each process takes every
WORLD_SIZE-th image and the running states are merged by one sync (extract/distributed.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from base.download import weights_sha256
from base.errors import LceError
from base.faults import pause_point
from extract import checkpoint, distributed
from extract.broden import Probe, open_probe
from extract.config import ExtractConfig, check_config
from extract.feed import batches_for
from extract.lake_write import (
    DISSECTION_TABLES,
    ExtractResult,
    LayerResult,
    study_conflict,
    write_results,
)
from extract.models import (
    LayerTaps,
    find_layers,
    infer_patch_size,
    load_model,
    resolve_normalize,
)
from extract.passes import (
    Interrupted,
    Pass1,
    Run,
    null_partners,
    pass1_activations,
    pass2_thresholds,
    pass3_tally,
)
from extract.top_maps import TopMaps
from warehouse.lake import check_name, ensure_writable, file_lock, os_error

# Names other modules and the tests use from here: the engine's public surface.
__all__ = [
    "DISSECTION_TABLES", "ExtractConfig", "ExtractResult", "Interrupted", "LayerResult",
    "batches_for", "null_partners", "resolve_device", "run_extract",
]  # fmt: skip


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LceError("device cuda: no CUDA device is available")
    if name not in {"cpu", "cuda"} and not name.startswith("cuda:"):
        raise LceError(f"device {name!r}: expected auto, cpu or cuda")
    return torch.device(name)


# What a checkpoint's running state means; a checkpoint of another format is not resumed. 2: on
# the upsampled basis pass 1 counts block floors, not pixels (extract/upsample.py block_floors).
STATE_FORMAT = 2


def settings_key(cfg: ExtractConfig, probe: Probe, name: str, world: int) -> str:
    weights = ""
    if cfg.weights is not None and Path(cfg.weights).is_file():
        st = Path(cfg.weights).stat()
        weights = f"{Path(cfg.weights).resolve()}:{st.st_size}:{st.st_mtime_ns}"
    parts = [cfg.model, name, weights, cfg.layers, probe.fingerprint, cfg.quantile, cfg.basis,
             cfg.normalize, cfg.batch_size, cfg.top_images, cfg.skip_bad, cfg.cache, world,
             cfg.null_permutations, cfg.null_seed, cfg.features, cfg.seed, cfg.folds,
             cfg.fold_seed, STATE_FORMAT]  # fmt: skip
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
            "set new_study to start a new study there, or use another lake (LCE_HOME)"
        )
    device = resolve_device(cfg.device)
    dist = distributed.setup(device)
    loaded = load_model(cfg.model, cfg.weights, strict=cfg.strict, name=cfg.name, seed=cfg.seed)
    check_name("model name", loaded.name)
    weights_sha256(cfg.weights)  # hashed once, as loaded; the runs table reads it back
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
            result = _run_locked(
                cfg, probe, loaded, model, layers, patch, device, dist, workdir, key
            )
        except Interrupted:
            raise  # the testing hook: the checkpoint stays, as after a kill
        except KeyboardInterrupt:
            if (workdir / "checkpoint.pt").is_file():
                raise LceError(
                    f"interrupted; the checkpoint {workdir / 'checkpoint.pt'} is kept: run again with "
                    f"the same settings and resume set to continue, or delete {workdir.parent}"
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
    key: str,
) -> ExtractResult:
    """The rounds and the lake commit, with the work folder's lock held; ``key`` (the
    settings key) marks the checkpoints this run may resume from."""
    started = datetime.now(UTC)
    clock = time.perf_counter()
    if not cfg.resume and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    mine = [i for i in range(len(probe.records)) if i % dist.world == dist.rank]
    batches = batches_for(probe, mine, cfg.batch_size)
    timings: dict[str, float] = {}
    with LayerTaps(layers, patch) as taps:
        # The blank passes that find the layers' shapes also teach the taps whether a pass may
        # stop at the last tapped layer (LayerTaps), so pass 1's first batch already stops
        # there: otherwise that batch ran the rest of the network for nothing (for ResNet-50
        # layer2, layers 3 and 4 on 16 images, about 4% of a 200-image run). One blank pass
        # did each job before, so a single-size probe ran two.
        shapes = layer_shapes(model, layers, probe, device, patch, taps)
        n_units = {name: next(iter(shapes[name].values()))[0] for name in cfg.layers}
        n_values = {name: planned_values(probe, shapes[name], cfg.basis) for name in cfg.layers}
        state = None
        if cfg.resume:
            state = checkpoint.load(
                workdir / "checkpoint.pt", key, n_units, cache=cfg.cache, features=cfg.features
            )
        run = Run(cfg, probe, model, taps, device, workdir, key)
        tic = time.perf_counter()
        p1 = pass1_activations(run, batches, n_units, n_values, state)
        timings["pass1"] = time.perf_counter() - tic
        tic = time.perf_counter()
        if state is not None and state["pass"] == 3:
            thresholds = {n: state["layers"][n]["thresholds"] for n in cfg.layers}
        else:
            thresholds = pass2_thresholds(run, p1, dist)
        timings["pass2"] = time.perf_counter() - tic
        tic = time.perf_counter()
        maps = TopMaps(p1.top)  # this process's top lists: final after pass 1
        tallies = pass3_tally(run, p1, thresholds, state, maps, len(batches))
        timings["pass3"] = time.perf_counter() - tic
        if taps.whole_pass_reason is not None:
            print(f"lce extract: {taps.whole_pass_reason}", file=sys.stderr)
    results = _layer_results(cfg, p1, thresholds, tallies, maps, n_units, dist)
    skipped = distributed.gather_lists(p1.skipped, dist)
    result = ExtractResult(
        loaded.name, probe, results, len(probe.records) - len(skipped), sorted(skipped),
        time.perf_counter() - clock, str(device), False, timings, p1.cache.size(),
        run.checkpoint_bytes,
    )  # fmt: skip
    if dist.rank == 0:
        write_results(Path(cfg.lake), cfg, result, loaded, started)
        result.written = True
    distributed.barrier(dist)
    shutil.rmtree(workdir.parent if dist.world == 1 else workdir, ignore_errors=True)
    return result


def planned_values(
    probe: Probe, shapes: dict[tuple[int, int], tuple[int, int, int]], basis: str
) -> int:
    """Values per unit over the whole probe set on the threshold's basis (cells of the layer's
    map, or pixels at label size). Skipped images only lower it; quantile.needed says why an
    upper bound is enough for the running bound."""
    if basis == "raw":
        return sum(shapes[(r.ih, r.iw)][1] * shapes[(r.ih, r.iw)][2] for r in probe.records)
    return sum(r.sh * r.sw for r in probe.records)


def _layer_results(
    cfg: ExtractConfig,
    p1: Pass1,
    thresholds: dict[str, torch.Tensor],
    tallies: dict[str, Any],
    maps: TopMaps,
    n_units: dict[str, int],
    dist: Any,
) -> list[LayerResult]:
    """Each layer's states merged over the processes, with its image features and top maps."""
    means = _read_features(cfg, p1, n_units)
    results = []
    for name in cfg.layers:
        for state in (tallies[name], p1.stats[name], p1.top[name]):
            distributed.sync(state, dist)
        best = p1.top[name]
        # each (unit, image) of the merged lists was captured by the rank that holds the image
        pairs = _top_pairs(best)
        top_maps = distributed.gather_dicts(maps.for_pairs(name, pairs), dist)
        images, rows = distributed.gather_rows(*means[name], dist)
        order = np.argsort(images, kind="stable")  # probe order, whatever the world size
        results.append(
            LayerResult(
                name, len(thresholds[name]), thresholds[name].numpy(), tallies[name],
                p1.stats[name], best, images[order], rows[order], top_maps,
            )
        )  # fmt: skip
    return results


def _top_pairs(top: Any) -> set[tuple[int, int]]:
    """The (unit, image index) pairs of the top lists (unit_top_images' rows)."""
    tv, ti = top.values.numpy(), top.images.numpy()
    units, ranks = np.nonzero(np.isfinite(tv) & (ti >= 0))
    return set(zip(units.tolist(), ti[units, ranks].tolist(), strict=True))


def _read_features(
    cfg: ExtractConfig, p1: Pass1, n_units: dict[str, int]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per layer: this process's image indices and their mean vectors, read back from pass 1's
    features file (batches in ``kept_batches`` order); empty without ``cfg.features``."""
    kept: list[list[int]] = p1.kept_batches if cfg.features else []
    parts: dict[str, list[np.ndarray]] = {
        n: [np.zeros((0, n_units[n]), np.float32)] for n in cfg.layers
    }
    shapes: list[list[tuple[int, ...]]] = [[(len(b), n_units[n]) for n in cfg.layers] for b in kept]
    for arrays in p1.features.read(shapes) if kept else []:
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
    taps: LayerTaps | None = None,
) -> dict[str, dict[tuple[int, int], tuple[int, int, int]]]:
    """(C, h, w) of each layer for each distinct image size, from one blank forward pass each.

    This also rejects layers with unusable outputs, and models that cannot take the probe's image
    size (a ViT built for 224 x 224), before any real work starts. Given the run's ``taps``,
    the first (whole) pass teaches them whether later passes may stop at the last tapped layer;
    otherwise it uses taps of its own and closes them.
    """
    sizes = sorted({(r.ih, r.iw) for r in probe.records})
    out: dict[str, dict[tuple[int, int], tuple[int, int, int]]] = {n: {} for n in layers}
    with nullcontext(taps) if taps is not None else LayerTaps(layers, patch) as taps:
        for ih, iw in sizes:
            try:
                with torch.no_grad():  # a later size's pass stops once the first has taught them
                    taps.run(model, torch.zeros((1, 3, ih, iw), device=device))
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
    return out
