"""Sharding and merging under torchrun: each process takes every WORLD_SIZE-th image.

The running states (threshold counts, tallies, stats, top images) are merged by one ``sync``
over torch.distributed (gloo on CPU, nccl on GPU), so the result equals a single-process run.
With WORLD_SIZE unset everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as td

from extract.running import Running, restored


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


def sync(state: Running, dist: Dist) -> None:
    """Make ``state`` the merge of every process's state, the same on every process: the one
    generic sync of the running-state interface (extract/running.py). States are gathered as
    state_dicts (small: the quantile counts are sparse) and merged in rank order."""
    if dist.world == 1:
        return
    parts: list[dict | None] = [None] * dist.world
    td.all_gather_object(parts, state.state_dict())
    state.load_state_dict(parts[0] or {})
    for part in parts[1:]:
        state.merge(restored(type(state), part or {}))


def sum_int(value: int, dist: Dist) -> int:
    if dist.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=dist.device)
    td.all_reduce(t)
    return int(t)


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
