"""Sharding and merging under torchrun: each process takes every WORLD_SIZE-th image.

Thresholds (top-k buffers), tallies (integer sums), stats and top images are merged with
torch.distributed (gloo on CPU, nccl on GPU), so the result equals a single-process run. With
WORLD_SIZE unset everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as td

from extract.tally import ActivationStats, ConceptTally, TopImages


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    device: torch.device  # where collective tensors must live (cuda for nccl)


def setup(device: torch.device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(0, 1, device)
    if not td.is_initialized():
        td.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(
        td.get_rank(), td.get_world_size(), device if device.type == "cuda" else torch.device("cpu")
    )


def _gather_padded(tensor: torch.Tensor, dist: Dist, fill: float | int) -> torch.Tensor:
    """All ranks' (units, n_r) tensors side by side, padded to the longest n_r with ``fill``."""
    length = torch.tensor([tensor.shape[1]], device=dist.device)
    lengths = [torch.zeros_like(length) for _ in range(dist.world)]
    td.all_gather(lengths, length)
    longest = int(max(int(x) for x in lengths))
    padded = torch.full((tensor.shape[0], longest), fill, dtype=tensor.dtype, device=dist.device)
    padded[:, : tensor.shape[1]] = tensor.to(dist.device)
    parts = [torch.empty_like(padded) for _ in range(dist.world)]
    td.all_gather(parts, padded)
    return torch.cat(parts, dim=1)


def gather_topk(values: torch.Tensor, dist: Dist) -> torch.Tensor:
    """The union of the ranks' top-k buffers, cut back to k: the global top-k."""
    if dist.world == 1:
        return values
    k = values.shape[1]
    merged = _gather_padded(values.float(), dist, float("-inf"))
    k_global = torch.tensor([k], device=dist.device)
    td.all_reduce(k_global, op=td.ReduceOp.MAX)
    k = min(int(k_global), merged.shape[1])
    return torch.topk(merged, k, dim=1).values


def sum_int(value: int, dist: Dist) -> int:
    if dist.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=dist.device)
    td.all_reduce(t)
    return int(t)


def sum_tally(tally: ConceptTally, dist: Dist) -> None:
    if dist.world == 1:
        return
    for name, tensor in tally.state().items():
        t = tensor.to(dist.device)
        td.all_reduce(t)
        setattr(tally, name, t.to(tally.device))


def sum_stats(stats: ActivationStats, dist: Dist) -> None:
    if dist.world == 1:
        return
    total = stats.total.to(dist.device)
    td.all_reduce(total)
    maximum = stats.maximum.to(dist.device)
    td.all_reduce(maximum, op=td.ReduceOp.MAX)
    stats.total, stats.maximum = total.cpu(), maximum.cpu()
    stats.count = sum_int(stats.count, dist)


def merge_top_images(top: TopImages, dist: Dist) -> TopImages:
    if dist.world == 1:
        return top
    values = _gather_padded(top.values, dist, float("-inf")).cpu()
    images = _gather_padded(top.images, dist, -1).cpu()
    merged = TopImages(values.shape[0], top.k)
    keep = images >= 0
    # re-rank the union with the same rule (value desc, image index asc)
    big = torch.iinfo(torch.int64).max
    merged.update_from(values.masked_fill(~keep, float("-inf")), images.masked_fill(~keep, big))
    return merged


def gather_lists(items: list[str], dist: Dist) -> list[str]:
    if dist.world == 1:
        return items
    out: list[list[str]] = [[] for _ in range(dist.world)]
    td.all_gather_object(out, items)
    return [x for part in out for x in part]


def gather_rows(images: np.ndarray, rows: np.ndarray, dist: Dist) -> tuple[np.ndarray, np.ndarray]:
    """Every rank's (image index, row) pairs, concatenated in rank order (image_features; the
    caller sorts by image index, so the result does not depend on the world size)."""
    if dist.world == 1:
        return images, rows
    out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * dist.world
    td.all_gather_object(out, (images, rows))
    parts = [part for part in out if part is not None]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def gather_dicts(items: dict, dist: Dist) -> dict:
    """Every rank's dict merged (unit_top_maps: each (unit, image) pair comes from the one rank
    that holds the image, so no key is in two parts)."""
    if dist.world == 1:
        return items
    out: list[dict | None] = [None] * dist.world
    td.all_gather_object(out, items)
    merged: dict = {}
    for part in out:
        merged.update(part or {})
    return merged


def barrier(dist: Dist) -> None:
    if dist.world > 1:
        td.barrier()
