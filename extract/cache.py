"""The work files of an extraction: pass 1's activations for the later rounds, and image means.

``SparseCache`` keeps, of each batch's raw (B, C, h, w) maps, only the cells the later rounds can
use. Pass 3 counts pixels ``S > T`` (bilinear S, whole-map semantics, extract/upsample.py), and a
bilinear pixel is a convex combination of the 2 x 2 cells it is drawn from: it can only exceed T
if one of them is *hot* (above T less rounding). Pass 1 does not know T yet, but it knows a lower
bound L of it (extract/quantile.py: L only rises, so any L is at or below the final T), and a
cell that is not hot for L is not hot for T. So per unit and image the cache keeps:

- the hot cells for L and their 3 x 3 neighbourhood (every source cell of every pixel that can
  fire: a pixel's sources are adjacent, so all lie within one cell of its hot source);
- the whole map where the image is, at that moment, in the unit's top-image list (the explorer
  stores those maps; tally.TopImages.holding says why that moment is enough).

Reading fills the other cells with -inf. A pixel with a hot source reads only stored cells, so it
is bit for bit what the full map gives (bilinear output depends on its own four sources only,
and filling leaves every unit at its place in the stack, which is what the kernels' rounding can
depend on); a pixel without one was at or below T and stays so (-inf, or NaN from 0 x -inf,
neither of which is above T). Trained networks fire sparsely, so this is a small share of the
dense float32 maps; benchmarks/bench_scale.py measures it.

Plain reads and writes (not a memory map) keep the data in the OS page cache rather than in the
process, so resident memory does not grow with the probe set.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from extract.upsample import hot_cells

FILL = float("-inf")


class ActivationCache:
    """Dense float32 arrays in append order (pass 1's image means: a few floats per image)."""

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


def keep_cells(act: torch.Tensor, bounds: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) bool: the cells of ``act`` the cache keeps (module docstring): hot for
    ``bounds`` and their 3 x 3 neighbourhood, and every cell of the (image, unit) maps that
    ``whole`` (B, C) marks."""
    hot = hot_cells(act, bounds).float()
    near = F.max_pool2d(hot, kernel_size=3, stride=1, padding=1) > 0
    return near | whole[:, :, None, None]


class SparseCache(ActivationCache):
    """Per batch and layer: the (image, unit) maps with a kept cell, a bit mask of their kept
    cells and the kept values (header: two int64 counts; then int32 map indices, packed bits
    and float32 values)."""

    def append_sparse(self, batch: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """``batch``: per layer, (raw maps (B, C, h, w), keep mask of the same shape)."""
        with self.path.open("ab") as fh:
            for act, keep in batch:
                b, c, h, w = act.shape
                keep = keep.reshape(b * c, h * w).cpu()
                maps = torch.nonzero(keep.any(dim=1)).flatten()
                cells = keep[maps]
                values = act.reshape(b * c, h * w).cpu()[maps][cells]
                header = np.array([maps.numel(), values.numel()], dtype=np.int64)
                fh.write(header.tobytes())
                fh.write(maps.numpy().astype(np.int32).tobytes())
                fh.write(np.packbits(cells.numpy(), axis=1).tobytes())
                fh.write(values.numpy().astype(np.float32).tobytes())

    def read_sparse(self, shapes: list[list[tuple[int, ...]]]) -> Iterator[list[torch.Tensor]]:
        """Each batch's maps as written, the cells not kept filled with -inf."""
        with self.path.open("rb") as fh:
            for batch in shapes:
                out = []
                for shape in batch:
                    b, c, h, w = shape
                    n_maps, n_values = (int(x) for x in np.fromfile(fh, np.int64, count=2))
                    maps = np.fromfile(fh, np.int32, count=n_maps)
                    width = (h * w + 7) // 8
                    packed = np.fromfile(fh, np.uint8, count=n_maps * width)
                    values = np.fromfile(fh, np.float32, count=n_values)
                    bits = np.unpackbits(packed.reshape(n_maps, width), axis=1, count=h * w)
                    kept = np.full((n_maps, h * w), FILL, dtype=np.float32)
                    kept[bits.astype(bool)] = values
                    full = torch.full((b * c, h * w), FILL)
                    full[torch.from_numpy(maps.astype(np.int64))] = torch.from_numpy(kept)
                    out.append(full.reshape(b, c, h, w))
                yield out
