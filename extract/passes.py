"""The three passes of a dissection over the probe set, each streamed batch by batch, named as
their progress bars number them.

1. ``pass1_activations`` (``pass 1/3 activations``) runs the model once: activation stats, top
   images, image means, a rising lower bound of each threshold (extract/quantile.py: counts above
   the bound of the raw values, or on the upsampled basis of block floors, which need no
   upsampling), and the sparse cache of the cells the later passes can use (extract/cache.py).
2. ``pass2_thresholds`` (``pass 2/3 exact thresholds``) reads the cache (or runs the model again
   without it) and finishes the thresholds exactly (quantile.py round 2); on the upsampled basis
   a sweep before it (``pass 2/3 counts above the bound``) counts the pixels above pass 1's
   bound, which round 2 reads. Both take a batch's maps at once (``pixels_above_chunks``,
   counted stack by stack), and round 2 selects only the pixels below each unit's ceiling (the
   two bins it reads).
3. ``pass3_tally`` (``pass 3/3 concept tally``) reads the cache again, thresholds, upsamples only
   the units that can fire, and tallies intersections against the label maps (and the null
   permutations' labels): a batch's labels go to the device in one copy, and each layer's tally
   takes the batch in one update; the tallies stay on the device until a checkpoint or the end.
   With ``folds`` > 1 each image's counts also go to its fold's tally (extract/folds.py).

Memory is bounded by the batch, one count table per layer and the tallies, never by the number
of images; the cache on disk holds a small share of the dense maps.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from base.errors import LceError
from base.faults import pause_point
from extract import checkpoint, distributed
from extract.broden import Probe
from extract.cache import ActivationCache, SparseCache, keep_cells
from extract.devices import to_device
from extract.feed import (
    ProbeItem,
    check_finite,
    forward,
    label_loader,
    loader,
    progress_bar,
    readable,
)
from extract.folds import fold_index
from extract.models import LayerTaps
from extract.quantile import ThresholdRefine, ThresholdSelect
from extract.tally import ActivationStats, ConceptTally, LabelBatch, TopImages
from extract.top_maps import TopMaps
from extract.upsample import block_floors, pixels_above_chunks

if TYPE_CHECKING:
    from extract.config import ExtractConfig


class Interrupted(Exception):
    """Raised by the testing hook that stops a run after a number of batches."""


@dataclass
class Run:
    """What every round needs: the settings, the probe, the model and its taps, where the work
    goes, and the checkpoint key; ``checkpoint_bytes`` is the largest checkpoint written."""

    cfg: ExtractConfig
    probe: Probe
    model: torch.nn.Module
    taps: LayerTaps
    device: torch.device
    workdir: Path
    key: str
    checkpoint_bytes: int = 0

    def save(self, state: dict[str, Any]) -> None:
        size = checkpoint.save(self.workdir / "checkpoint.pt", state, self.key)
        self.checkpoint_bytes = max(self.checkpoint_bytes, size)

    def stop_after(self, position: int) -> bool:
        """The testing hook: stop once ``position`` batches of passes 1 and 3 are done."""
        return self.cfg.stop_after_batches is not None and position >= self.cfg.stop_after_batches


@dataclass
class Pass1:
    """Pass 1's running state and the work files it writes."""

    select: dict[str, ThresholdSelect]
    stats: dict[str, ActivationStats]
    top: dict[str, TopImages]
    cache: SparseCache
    features: ActivationCache
    n_seen: dict[str, int]
    skipped: list[str] = field(default_factory=list)
    cache_shapes: list[list[tuple[int, ...]]] = field(default_factory=list)
    kept_batches: list[list[int]] = field(default_factory=list)

    def state_dict(self, with_select: bool = True) -> dict[str, Any]:
        layers = {
            n: {"stats": self.stats[n].state_dict(), "top": self.top[n].state_dict()}
            for n in self.stats
        }
        for n in layers if with_select else ():
            layers[n]["select"] = self.select[n].state_dict()
        return {
            "layers": layers, "n_seen": dict(self.n_seen), "skipped": list(self.skipped),
            "cache_shapes": list(self.cache_shapes), "kept_batches": list(self.kept_batches),
            "cache_bytes": self.cache.size(), "feature_bytes": self.features.size(),
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for n, layer in state["layers"].items():
            self.stats[n].load_state_dict(layer["stats"])
            self.top[n].load_state_dict(layer["top"])
            if "select" in layer:
                self.select[n].load_state_dict(layer["select"])
        self.n_seen, self.skipped = dict(state["n_seen"]), list(state["skipped"])
        self.cache_shapes, self.kept_batches = state["cache_shapes"], state["kept_batches"]
        self.cache.truncate(state["cache_bytes"])
        self.features.truncate(state["feature_bytes"])


def pass1_activations(
    run: Run,
    batches: list[list[int]],
    n_units: dict[str, int],
    n_values: dict[str, int],
    state: dict[str, Any] | None,
) -> Pass1:
    cfg, probe = run.cfg, run.probe
    p = 1 - cfg.quantile
    p1 = Pass1(
        select={n: ThresholdSelect(n_units[n], n_values[n], p, run.device) for n in cfg.layers},
        stats={n: ActivationStats(n_units[n]) for n in cfg.layers},
        top={n: TopImages(n_units[n], cfg.top_images) for n in cfg.layers},
        cache=SparseCache(run.workdir / "activations.bin"),
        # each image's spatial mean per layer (image_features), appended in kept_batches order
        features=ActivationCache(run.workdir / "features.bin"),
        n_seen=dict.fromkeys(cfg.layers, 0),
    )
    start = 0
    if state is not None:
        p1.load_state_dict(state)
        start = state["batch"] if state["pass"] == 1 else len(batches)
    else:
        p1.cache.truncate(0)
        p1.features.truncate(0)
    progress, task = progress_bar(cfg, len(probe.records), "pass 1/3 activations")
    images_done = sum(len(b) for b in batches[:start])
    progress.update(task, completed=images_done)
    tic = time.perf_counter()
    with progress:
        # Under --skip-bad the labels are read here too, so an image with a bad label file is
        # skipped before any threshold depends on it; otherwise pass 3 finds bad labels, still
        # before anything is written.
        items_of = loader(cfg, probe, batches[start:], images=True, labels=cfg.skip_bad)
        for offset, items in enumerate(items_of):
            position = start + offset
            good = readable(items, cfg, p1.skipped, probe)
            if good:
                _pass1_batch(run, p1, good)
            images_done += len(items)
            rate = images_done / max(time.perf_counter() - tic, 1e-9)
            progress.update(task, completed=images_done, rate=f"{rate:.1f}")
            last, stop = position + 1 == len(batches), run.stop_after(position + 1)
            if (offset + 1) % cfg.checkpoint_every == 0 or last or stop:
                run.save({"pass": 1, "batch": position + 1, **p1.state_dict()})
                pause_point("extract-checkpoint")  # a kill test's moment: loader workers alive
            if stop:
                raise Interrupted(f"stopped after {position + 1} batches (testing hook)")
    return p1


def _pass1_batch(run: Run, p1: Pass1, good: list) -> None:
    cfg, probe = run.cfg, run.probe
    indices = [it.image_index for it in good]
    acts = forward(
        run.model, run.taps, torch.stack([it.image for it in good]), cfg.layers, run.device
    )
    record = probe.records[indices[0]]  # a batch shares its sizes (feed.batches_for)
    index = torch.tensor(indices)
    sparse, means = [], []
    for name in cfg.layers:
        a = acts[name]
        check_finite(a, name, probe, indices)
        p1.stats[name].update(a)
        peak = a.amax(dim=(2, 3))
        p1.top[name].update(peak, index)
        select = p1.select[name]
        if cfg.basis == "raw":
            select.update_block(a.transpose(0, 1).reshape(a.shape[1], -1))
            p1.n_seen[name] += a.shape[0] * a.shape[2] * a.shape[3]
        else:
            # no upsampling here: the floors of blocks of pixels, weighted by their pixels,
            # give a bound near 0.9 of the threshold from the first images on (upsample.py
            # block_floors); pass 2 counts the pixels above it. Upsampling every image here
            # against a bound that rises image by image counted (1 + ln(1 / q)) k pixels a unit
            # and ran pass 1 at 38 images/s where the raw basis runs 450 (bench_scale, N = 3,000)
            image, unit = torch.nonzero(peak > select.bounds, as_tuple=True)
            select.update_rows(unit, *block_floors(a[image, unit], (record.sh, record.sw)))
            p1.n_seen[name] += len(a) * record.sh * record.sw
        select.refresh()
        if cfg.cache:
            whole = p1.top[name].holding(index).T.to(a.device)
            sparse.append((a, keep_cells(a, select.bounds, whole)))
        if cfg.features:
            means.append(a.mean(dim=(2, 3)).cpu().numpy())
    if cfg.features:
        p1.features.append(means)
    if cfg.cache:
        p1.cache.append_sparse(sparse)
        p1.cache_shapes.append([tuple(a.shape) for a in acts.values()])
    p1.kept_batches.append(indices)


def inputs(
    run: Run, p1: Pass1, start: int, labels: bool, partners: list[dict[int, int]] | None = None
) -> Iterator[tuple[list[ProbeItem], dict[str, torch.Tensor]]]:
    """Per kept batch from ``start`` on: its items with their label masks and their null
    partners' (empty unless ``labels``) and its layers' raw maps, from pass 1's cache, or from
    the model again without it (--no-cache)."""
    partners = partners or []
    cfg, kept = run.cfg, p1.kept_batches
    if cfg.cache:
        cached = p1.cache.read_sparse(p1.cache_shapes)
        for _ in range(start):
            next(cached)
        if not labels:
            for arrays in cached:
                yield [], dict(zip(cfg.layers, arrays, strict=True))
            return
        for items in label_loader(cfg, run.probe, kept[start:], run.device, partners):
            _check_read(items)
            maps = dict(zip(cfg.layers, next(cached), strict=True))
            yield items, maps
        return
    for items in loader(cfg, run.probe, kept[start:], True, labels, partners if labels else []):
        _check_read(items)
        stack = torch.stack([it.image for it in items])
        maps = forward(run.model, run.taps, stack, cfg.layers, run.device)
        yield items if labels else [], maps


def _check_read(items: list) -> None:
    errors = [it.error for it in items if it.error is not None]
    if errors:  # a file that read fine in pass 1 but not now
        raise LceError(errors[0])


def pass2_thresholds(run: Run, p1: Pass1, dist: Any) -> dict[str, torch.Tensor]:
    """Pass 2: round 2 of the exact thresholds over the cache; every process ends with the same."""
    cfg, probe = run.cfg, run.probe
    refine: dict[str, ThresholdRefine] = {}
    totals = {}
    for name in cfg.layers:
        distributed.sync(p1.select[name], dist)
        totals[name] = distributed.sum_int(p1.n_seen[name], dist)  # p1 keeps this process's own
        if totals[name] == 0:
            raise LceError(f"{probe.root}: no images could be read")
    if cfg.basis == "upsampled":
        p1.select = _count_pixels(run, p1, dist)
    for name in cfg.layers:
        refine[name] = p1.select[name].refine(totals[name])
    p1.select.clear()  # round 1's count tables are spent: free them before round 2 fills its own
    ceilings = {name: r.ceilings() for name, r in refine.items()}
    for record, acts in _sweep(run, p1, "pass 2/3 exact thresholds"):
        for name in cfg.layers:
            a, r = acts[name].to(run.device), refine[name]
            if cfg.basis == "raw":
                r.update(*r.candidates(a.transpose(0, 1).reshape(a.shape[1], -1)), above=True)
            else:
                size = (record.sh, record.sw)
                for found in pixels_above_chunks(a, r.bounds, size, ceilings[name]):
                    r.update(*found, above=True)
    out = {}
    for name in cfg.layers:
        distributed.sync(refine[name], dist)
        out[name] = torch.from_numpy(refine[name].thresholds())
    return out


def _sweep(run: Run, p1: Pass1, title: str) -> Iterator[tuple[Any, dict[str, torch.Tensor]]]:
    """Each kept batch's first probe record (a batch shares its sizes) and raw maps, from the
    cache (or the model), under a progress bar."""
    kept = p1.kept_batches
    progress, task = progress_bar(run.cfg, sum(len(b) for b in kept), title)
    done, tic = 0, time.perf_counter()
    with progress:
        for position, (_, acts) in enumerate(inputs(run, p1, 0, labels=False)):
            yield run.probe.records[kept[position][0]], acts
            done += len(kept[position])
            rate = done / max(time.perf_counter() - tic, 1e-9)
            progress.update(task, completed=done, rate=f"{rate:.1f}")


def _count_pixels(run: Run, p1: Pass1, dist: Any) -> dict[str, ThresholdSelect]:
    """Round 1 on the upsampled basis: pass 1 counted block floors, whose bound is valid for
    the pixels (upsample.block_floors); this sweep counts the upsampled pixels above it, raising
    it after each batch, so round 2 reads pixel counts. Every process starts from the same
    synced bound, so the counts merge exactly (ThresholdSelect.merge)."""
    floors = p1.select
    select = {}
    for name, f in floors.items():
        select[name] = ThresholdSelect(f.n_units, f.n_values, f.p, run.device)
        select[name].bounds = f.bounds.clone()
    floors.clear()  # the floors' count tables are spent
    for record, acts in _sweep(run, p1, "pass 2/3 counts above the bound"):
        for name, s in select.items():
            a = acts[name].to(run.device)
            for found in pixels_above_chunks(a, s.bounds, (record.sh, record.sw)):
                s.update(*found, above=True)
            s.refresh()
    for s in select.values():
        distributed.sync(s, dist)
    return select


def pass3_tally(
    run: Run,
    p1: Pass1,
    thresholds: dict[str, torch.Tensor],
    state: dict[str, Any] | None,
    maps: TopMaps,
    n_batches_pass1: int,
) -> dict[str, ConceptTally]:
    cfg, probe, device = run.cfg, run.probe, run.device
    n_concepts, n_categories = len(probe.concepts), len(probe.categories)
    n_folds = cfg.folds if cfg.folds > 1 else 0  # one fold is the whole tally: none kept
    tallies = {
        n: ConceptTally(
            len(thresholds[n]), n_concepts, n_categories, device, cfg.null_permutations, n_folds
        )
        for n in cfg.layers
    }
    kept = p1.kept_batches
    fold = fold_index([r.image for r in probe.records], max(cfg.folds, 1), cfg.fold_seed)
    partners = null_partners(
        probe, [i for b in kept for i in b], cfg.null_permutations, cfg.null_seed
    )
    start = 0
    if state is not None and state["pass"] == 3:
        start = state["batch"]
        for n in cfg.layers:
            tallies[n].load_state_dict(state["layers"][n]["tally"])
        maps.load_state_dict(state["top_maps"])
    on_device = {n: t.to(device) for n, t in thresholds.items()}
    progress, task = progress_bar(cfg, sum(len(b) for b in kept), "pass 3/3 concept tally")
    done = sum(len(b) for b in kept[:start])
    progress.update(task, completed=done)
    tic = time.perf_counter()
    with progress:
        for offset, (items, acts) in enumerate(inputs(run, p1, start, True, partners)):
            position = start + offset
            labels = [it.labels for it in items if it.labels is not None]  # all: read checked
            nulls = [list(it.nulls) for it in items]  # decoded where the labels were
            sizes = [(probe.records[i].sh, probe.records[i].sw) for i in kept[position]]
            folds = [int(fold[it.image_index]) for it in items] if n_folds else []
            # one copy for all layers
            batch = LabelBatch(labels, nulls, n_concepts, device, folds, n_folds)
            for name in cfg.layers:
                a = to_device(acts[name], device)
                tallies[name].update_batch(a, on_device[name], batch)
                maps.capture(name, kept[position], a, on_device[name], sizes)
            done += len(labels)
            progress.update(
                task, completed=done, rate=f"{done / max(time.perf_counter() - tic, 1e-9):.1f}"
            )
            last, stop = position + 1 == len(kept), run.stop_after(n_batches_pass1 + position + 1)
            if (offset + 1) % cfg.checkpoint_every == 0 or last or stop:
                run.save(_pass3_state(p1, thresholds, tallies, maps, position + 1))
            if stop:
                raise Interrupted(
                    f"stopped after {n_batches_pass1 + position + 1} batches (testing hook)"
                )
    return tallies


def _pass3_state(
    p1: Pass1,
    thresholds: dict[str, torch.Tensor],
    tallies: dict[str, ConceptTally],
    maps: TopMaps,
    batch: int,
) -> dict[str, Any]:
    state = p1.state_dict(with_select=False)
    for name, layer in state["layers"].items():
        layer["thresholds"] = thresholds[name]
        layer["tally"] = tallies[name].state_dict()
    return {"pass": 3, "batch": batch, **state, "top_maps": maps.state_dict()}


def null_partners(
    probe: Probe, indices: list[int], count: int, seed: int = 0
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
