"""Which upsampled pixels fire, bit for bit as ``F.interpolate`` gives them, computing few of them.

The semantics threshold S = bilinear upsampling (NCHW ``F.interpolate``, align_corners=False) of a
layer's whole (1, C, h, w) map for one image. Upsampling every unit costs most of the tally, yet a
pixel can only fire next to a *hot* cell (a raw value within rounding of the threshold): bilinear
values are convex combinations of the 2 x 2 cells around them. So lce upsamples only the units
with a hot cell, and where it can, only windows of whole cell rows around each unit's hot rows
(``_windows``). Every plan runs on the map's own device (CPU or CUDA).

That this equals the whole map's upsampling bit for bit is not something PyTorch promises, and on
this CPU it is false for some shapes: small output planes are vectorised across channels, so a
unit's values depend on its position in the stack; 3 x 3 crops, and windows of 28 x 28 maps under
five rows, round differently. (ATen's CPU rule, read in its UpSampleKernel.cpp: an output with
height + width <= 128 takes the channels-last kernel, which vectorises across channels; so does a
channels-last input with C > 3, and on one thread an input with C == 3, which ``upsample`` pads
away; the rest take the generic NCHW kernel. A 28 x 28 map's windows of 3 or 4 rows, 12 or 16 x
112 pixels, fall under 128 while the whole 112 x 112 map does not.) The rule is PyTorch's to
change, so each (C, h, w) -> (sh, sw) shape gets a plan once per process, device and CPU thread
count, from a check on random maps against the whole-map upsampling: "windows" (with the window
heights that reproduce it, ``window_heights``), else "units" if random subsets of units do, else
"whole" (upsample all C, then keep the units needed).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache

import torch
import torch.nn.functional as F

# The most pixels upsampled in one stack of windows (4 MB of float32): a batch's windows go in a
# few kernel calls, and each stack, its comparison and its selection stay in the CPU's caches
# (measured on pass 2's counting sweep, stand-in layer4, 30 batches: 2.03 s at 2^20 pixels,
# 2.06 s at 2^22, 2.57 s at 2^25, 2.49 s at 2^18; one call per image 3.2 s, strips 2.5 s).
STACK_PIXELS = 1 << 20

# A bilinear value exceeds the largest of its inputs by at most a few float32 roundings; a cell
# below threshold - MARGIN * |threshold| cannot produce a pixel above the threshold.
MARGIN = 1e-6


def upsample(act: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The semantics' upsampling of a (N, C, h, w) stack, kept in NCHW layout, rounded the same
    at every CPU thread count.

    PyTorch's CPU bilinear upsampling picks one of two kernels, which round differently: the
    channels-last one for inputs contiguous in that layout with C > 3, for outputs with
    height + width <= 128, and, on one thread only (``torch.get_num_threads() == 1``), for
    C == 3 (a speed choice for RGB images, ``upsample_bilinear2d_kernel_impl_float`` in
    ATen's UpSampleKernel.cpp); else the generic NCHW one. Stacks of windows or units can have
    any C, so a stack of three would change kernels with the thread count (found at
    ``OMP_NUM_THREADS=1``: windows one float32 step off the whole map). A fourth channel, a
    copy, keeps C == 3 on the kernel the other thread counts use. A (1, 1, h, w) tensor is
    contiguous in both layouts and could take the channels-last kernel; a second channel keeps
    it on the NCHW one.
    """
    c = act.shape[1]
    if act.shape[0] * c == 1 or c == 3:
        padded = torch.cat([act, act[:, :1]], dim=1)
        return F.interpolate(padded, size=size, mode="bilinear", align_corners=False)[:, :c]
    return F.interpolate(act.contiguous(), size=size, mode="bilinear", align_corners=False)


def hot_cells(act: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """(C, h, w) bool: the cells whose value could make a neighbouring pixel fire.

    Inputs all at or below T - MARGIN |T| give a value below T after rounding; for T = 0 the cut
    is exactly 0 (sums of non-positive products stay non-positive), so dead units cost nothing.
    """
    cut = thresholds - thresholds.abs() * MARGIN
    return act > cut.view(-1, 1, 1)


def label_counts(
    act: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int], onehot: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For the units that can fire: (units, counts) with counts[i, j] the number of pixels where
    S_unit > T_unit and onehot[:, j] is 1. ``act`` is one image's (C, h, w) raw map, ``onehot``
    the (sh * sw, k) float32 label matrix."""
    return batch_label_counts(act.unsqueeze(0), thresholds, size, [onehot])[0]


def batch_label_counts(
    act: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int], onehots: list[torch.Tensor]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``label_counts`` of each image of a batch's (B, C, h, w) maps (one size), with its own
    label matrix: the windows of the whole batch are found and upsampled together (one kernel
    call per window height, not one per image and height; per image, windows cost more Python
    than the three-row strips they replaced)."""
    b, c, h, w = act.shape
    plan = upsampling_plan(c, h, w, size[0], size[1], str(act.device))
    if plan != "windows":
        return [
            _dense_counts(act[j], thresholds, size, onehots[j], whole=plan == "whole")
            for j in range(b)
        ]
    heights = window_heights(c, h, w, size[0], size[1], str(act.device))
    return _window_counts(act, thresholds, size, onehots, heights)  # type: ignore[arg-type]


def _dense_counts(
    act: torch.Tensor,
    thresholds: torch.Tensor,
    size: tuple[int, int],
    onehot: torch.Tensor,
    whole: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    found, parts = [], []
    for units, up in _dense_stacks(act, thresholds, size, whole):
        masks = torch.empty_like(up)  # M_u = S_u > T_u, written straight into 0/1 float32
        torch.gt(up, thresholds[units].view(-1, 1, 1), out=masks)
        # sums of 0/1 below 2^24 are exact in float32
        found.append(units)
        parts.append((masks.reshape(units.numel(), -1) @ onehot).round_().to(torch.int64))
    if not found:
        empty = torch.zeros(0, dtype=torch.int64, device=act.device)
        return empty, torch.zeros((0, onehot.shape[1]), dtype=torch.int64, device=act.device)
    return torch.cat(found), torch.cat(parts)


def _dense_stacks(
    act: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int], whole: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(units, upsampled (M, sh, sw) maps) of the units with a hot cell, by upsampling whole
    maps: the "units" plan upsamples those units in stacks of ``STACK_PIXELS``; the "whole" plan
    (``whole``) upsamples every unit of the one image ``act`` holds, as checked, and keeps them."""
    units = torch.nonzero(hot_cells(act, thresholds).flatten(1).any(dim=1)).flatten()
    if units.numel() == 0:
        return
    if whole:
        yield units, upsample(act.unsqueeze(0), size)[0][units]
        return
    step = max(1, STACK_PIXELS // (size[0] * size[1]))
    for first in range(0, len(units), step):
        part = units[first : first + step]
        yield part, upsample(act[part].unsqueeze(0), size)[0]


def _windows(
    act: torch.Tensor,
    thresholds: torch.Tensor,
    size: tuple[int, int],
    heights: tuple[int, int],
    per_image: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The windows around hot cell rows, upsampled, in stacks of one window height: (unit,
    start, upsampled (M, H f, sw), exact (M, H f) 0/1 rows), sorted by start within a stack;
    none when no unit has a hot cell.

    A hot cell row i can only reach the pixel rows upsampled from the cell rows (i - 1, i) and
    (i, i + 1), so each unit needs the cell rows next to its hot rows; those rows, merged into
    runs, are its windows (disjoint, so no pixel is computed twice). ``heights`` = (lowest,
    tallest) are the window heights checked to round as the whole map (``window_heights``): a
    shorter run is widened to the lowest, a taller one to the whole map, and the runs are merged
    again until every one has a checked height. Three-row strips, one per hot row (the earlier
    plan), computed 15 rows of a 7 x 7 unit with five hot rows; its run computes 7."""
    h = act.shape[1]
    lowest, tallest = heights
    hot = hot_cells(act, thresholds).any(dim=2)  # (C, h)
    near = hot.clone()
    near[:, 1:] |= hot[:, :-1]
    near[:, :-1] |= hot[:, 1:]
    unit, start, height = _runs(near)
    while unit.numel():
        short, tall = height < lowest, (height > tallest) & (height < h)
        if not bool((short | tall).any()):
            break
        start = torch.where(short, start.clamp(max=h - lowest), torch.where(tall, 0, start))
        height = torch.where(short, lowest, torch.where(tall, h, height))
        edges = torch.zeros((act.shape[0], h + 1), dtype=torch.int32, device=act.device)
        one = torch.ones(1, dtype=torch.int32, device=act.device).expand(len(unit))
        edges.index_put_((unit, start), one, accumulate=True)
        edges.index_put_((unit, start + height), -one, accumulate=True)
        unit, start, height = _runs(edges.cumsum(1)[:, :h] > 0)
    return upsampled_windows(act, unit, start, height, size, per_image)


def _runs(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(unit, start, height) of every maximal run of True in a (C, h) bool matrix."""
    before = torch.zeros_like(rows)
    before[:, 1:] = rows[:, :-1]
    after = torch.zeros_like(rows)
    after[:, :-1] = rows[:, 1:]
    unit, start = torch.nonzero(rows & ~before, as_tuple=True)
    _, end = torch.nonzero(rows & ~after, as_tuple=True)  # row-major: the same runs in order
    return unit, start, end - start + 1


def upsampled_windows(
    act: torch.Tensor,
    unit: torch.Tensor,
    start: torch.Tensor,
    height: torch.Tensor,
    size: tuple[int, int],
    per_image: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Windows of whole cell rows (unit, first row, rows) upsampled, stacked by height: per
    height H, (unit, start, (M, H f, sw) values, (M, H f) 0/1 exact rows), in stacks of at most
    ``STACK_PIXELS`` pixels (one window at least), sorted by start (with ``per_image`` = C
    units an image, by image unit // C first).

    Local pixel row r of a window starting at cell row a is upsampled from its cell rows
    (slot, slot + 1), slot = floor((r - f/2) / f): rows of slots 0 to H - 2 equal the whole
    map's; slot -1 (the top f/2 rows) only where a = 0 and slot H - 1 (the bottom f/2) only
    where the window ends at the map's last row, where the whole map clamps the same way."""
    h, f, sw = act.shape[1], size[0] // act.shape[1], size[1]
    for rows in torch.unique(height).tolist():
        pick = torch.nonzero(height == rows).squeeze(1)
        units, starts = unit[pick], start[pick]
        key = starts if not per_image else (units // per_image) * h + starts
        order = torch.argsort(key, stable=True)
        units, starts = units[order], starts[order]
        slot = torch.div(
            torch.arange(rows * f, device=act.device) - f // 2, f, rounding_mode="floor"
        )
        step = max(1, STACK_PIXELS // (rows * f * sw))
        for first in range(0, len(units), step):
            u, a = units[first : first + step], starts[first : first + step]
            stack = act.unfold(1, rows, 1)[u, a].transpose(1, 2)  # (M, rows, w)
            up = upsample(stack.unsqueeze(0), (rows * f, sw))[0]
            exact = ((slot >= 0) & (slot <= rows - 2)).expand(len(u), -1).clone()
            exact[:, slot < 0] = (a == 0).view(-1, 1)
            exact[:, slot == rows - 1] = (a + rows == h).view(-1, 1)
            yield u, a, up, exact.float()


def _window_counts(
    act: torch.Tensor,
    thresholds: torch.Tensor,
    size: tuple[int, int],
    onehots: list[torch.Tensor],
    heights: tuple[int, int],
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    b, c, h, _ = act.shape
    sw, f = size[1], size[0] // h
    device = act.device
    flat, every = act.reshape(b * c, *act.shape[2:]), thresholds.repeat(b)
    parts: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in range(b)]
    for unit, start, up, exact in _windows(flat, every, size, heights, c):
        rows = up.shape[1] // f
        masks = torch.empty_like(up)
        torch.gt(up, every[unit].view(-1, 1, 1), out=masks)
        masks.mul_(exact.unsqueeze(2))
        # windows come sorted by image, then start row: each (image, start) is one slice, whose
        # pixels meet one block of rows of that image's labels
        key = (unit // c) * h + start
        bounds = torch.searchsorted(key, torch.arange(b * h + 1, device=device)).tolist()
        for slot in range(b * h):
            lo, hi = bounds[slot], bounds[slot + 1]
            if hi > lo:
                j, a = divmod(slot, h)
                labels = onehots[j][a * f * sw : (a + rows) * f * sw]
                parts[j].append((unit[lo:hi] % c, masks[lo:hi].reshape(hi - lo, -1) @ labels))
    out = []
    for j, found in enumerate(parts):
        k = onehots[j].shape[1]
        if not found:
            empty = torch.zeros(0, dtype=torch.int64, device=device)
            out.append((empty, torch.zeros((0, k), dtype=torch.int64, device=device)))
            continue
        units, inverse = torch.unique(torch.cat([u for u, _ in found]), return_inverse=True)
        total = torch.zeros((units.numel(), k), dtype=torch.float32, device=device)
        total.index_add_(0, inverse, torch.cat([n for _, n in found]))
        out.append((units, total.round_().to(torch.int64)))
    return out


def pixels_above(
    act: torch.Tensor,
    bounds: torch.Tensor,
    size: tuple[int, int],
    ceilings: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(units, values): every upsampled pixel of one image's (C, h, w) map, or of a batch's
    (B, C, h, w) maps (one size), that is above its unit's bound (and below its ceiling, if
    given: round 2 of the thresholds reads only the values of two bins), with its unit, bit for
    bit as each image's whole map upsampling gives it: ``pixels_above_chunks``, joined."""
    chunks = list(pixels_above_chunks(act, bounds, size, ceilings))
    if not chunks:
        return torch.zeros(0, dtype=torch.int64, device=act.device), torch.zeros(
            0, device=act.device
        )
    return torch.cat([u for u, _ in chunks]), torch.cat([v for _, v in chunks])


def pixels_above_chunks(
    act: torch.Tensor,
    bounds: torch.Tensor,
    size: tuple[int, int],
    ceilings: torch.Tensor | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``pixels_above`` one stack of windows (or one image) at a time, each (units, values).
    Pixels next to no hot cell are never computed: they cannot be above the bound (they can
    equal a bound of exactly 0, which callers count as not above). This is how pass 2 (the
    thresholds) sees the upsampled basis without upsampling every unit of every image: the
    batch's windows of one height go to the kernel in stacks of ``STACK_PIXELS``, and callers
    count each stack's pixels before the next (counting a batch's millions of values at once ran
    out of the CPU's caches and cost more than per image)."""
    maps = act if act.dim() == 4 else act.unsqueeze(0)
    b, c, h, w = maps.shape
    plan = upsampling_plan(c, h, w, size[0], size[1], str(act.device))
    if plan == "whole":  # each image's whole map: the layout in which that plan was checked
        for j in range(b):
            yield from _dense_above(maps[j], bounds, ceilings, size, whole=True)
        return
    # the batch's maps as b * c units of one stack: unit i is image i // c's unit i % c
    flat, every = maps.reshape(b * c, h, w), bounds.repeat(b)
    tops = None if ceilings is None else ceilings.repeat(b)
    if plan == "units":
        for units, values in _dense_above(flat, every, tops, size, whole=False):
            yield units % c, values
        return
    heights = window_heights(c, h, w, size[0], size[1], str(act.device))
    for unit, _, up, exact in _windows(flat, every, size, heights):  # type: ignore[arg-type]
        # rows that are not exact get a bound of +inf: one comparison selects both, and the
        # flat positions of one nonzero index the values and (divided by a window's size) the
        # units. Profiled on ResNet-50 and MobileNetV2 maps, selecting cost more than
        # upsampling; this took 1.24 s where a mask, an AND and a three-index gather took 1.48 s.
        cut = torch.where(exact > 0, every[unit].view(-1, 1), float("inf")).unsqueeze(2)
        keep = up > cut
        if tops is not None:
            keep &= up < tops[unit].view(-1, 1, 1)
        at = torch.nonzero(keep.view(-1)).squeeze(1)
        yield (unit % c)[at // (up.shape[1] * up.shape[2])], up.view(-1)[at]


def _dense_above(
    act: torch.Tensor,
    bounds: torch.Tensor,
    ceilings: torch.Tensor | None,
    size: tuple[int, int],
    whole: bool,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``pixels_above_chunks`` by upsampling whole maps (``_dense_stacks``)."""
    for units, up in _dense_stacks(act, bounds, size, whole):
        flat = up.reshape(units.numel(), -1)
        keep = flat > bounds[units].view(-1, 1)
        if ceilings is not None:
            keep &= flat < ceilings[units].view(-1, 1)
        row, col = torch.nonzero(keep, as_tuple=True)
        yield units[row], flat[row, col]


# Lattice points per raw cell along an axis for ``block_floors``: about one per 4 pixels, at most
# 4 (measured on the scale stand-in, layer4 7 x 7 -> 112: the bound reaches 0.70, 0.85, 0.90,
# 0.92 of the threshold with 1, 2, 3, 4 points a cell, and pass 2 then counts 3.1, 1.8, 1.5,
# 1.4 k pixels a unit, median over units).
MAX_LATTICE = 4


def block_floors(maps: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, B) lower bounds and (B,) int32 pixel counts: for each of M (h, w) maps (one image's
    unit each), B blocks of its upsampled pixels, each with a value that no pixel of the block is
    below, computed at the cost of a few raw maps, never by upsampling. A floor is never above
    the map's largest cell, so callers pass only the maps whose largest cell is above the bound.

    Why it holds: with align_corners=False a pixel's value is the bilinear function of its source
    position (t, u), t = (row + 0.5) h / sh - 0.5 clamped to [0, h - 1]; between consecutive
    cells the function is bilinear, and a bilinear function's minimum over a rectangle is at one
    of its corners. So the position axis is cut at a lattice of m points a cell (t = i / m, cells
    included), every pixel row falls in one lattice interval, and a block (an interval of rows by
    one of columns) is at least the smallest of the function at its four lattice corners. Those
    are a small matrix product (W_rows @ A @ W_cols^T, exact weights for m <= 4). Rounding: the
    product, the kernel's own arithmetic and its float source positions differ from the exact
    function by a few float32 units times the map's largest |value| and size, so the floor is
    lowered by (h + w + 16) 1e-6 max|A| per unit and image (checked against the full upsampling
    on random and ReLU maps in tests/test_upsample.py).

    Pass 1 counts these floors, weighted by the pixels they stand for, in a ThresholdSelect: any
    value with at least k pixels at or above it is a valid lower bound of the threshold, and this
    one sits near 0.9 of it from the first images on, so pass 2 counts about 1.4 k pixels a unit
    instead of (1 + ln(1 / q)) k (extract/quantile.py)."""
    m, h, w = maps.shape
    rows, row_counts = _lattice(h, size[0], str(maps.device))
    cols, col_counts = _lattice(w, size[1], str(maps.device))
    # two plain matrix products over all maps at once (a batched product of 7 x 7 maps by the
    # lattice's weights ran 10x slower)
    maps = maps.float()
    values = (maps.reshape(-1, w) @ cols.T).view(m, h, -1).transpose(1, 2)
    values = (values.reshape(-1, h) @ rows.T).view(m, cols.shape[0], rows.shape[0])
    # each interval's smallest corner: neighbours along the columns, then along the rows
    if values.shape[1] > 1:
        values = torch.minimum(values[:, :-1], values[:, 1:])
    if values.shape[2] > 1:
        values = torch.minimum(values[:, :, :-1], values[:, :, 1:])
    margin = maps.abs().amax(dim=(1, 2)) * ((h + w + 16) * 1e-6)
    floors = values.reshape(m, -1) - margin.view(-1, 1)
    weights = (col_counts.view(-1, 1) * row_counts.view(1, -1)).view(-1)  # (cols, rows) order
    if bool((weights == 0).any()):  # intervals no pixel falls in stand for nothing
        keep = torch.nonzero(weights).squeeze(1)
        floors, weights = floors[:, keep], weights[keep]
    return floors, weights.to(torch.int32)


@lru_cache(maxsize=64)
def _lattice(h: int, sh: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(points, h) float32 interpolation weights at t = i / m, and the number of pixel rows in
    each interval between consecutive points (a row on a point goes to the interval above it,
    the last point's row to the last interval); one point and one interval when h is 1."""
    if h == 1:
        return torch.ones((1, 1), device=device), torch.tensor([sh], device=device)
    m = max(1, min(MAX_LATTICE, sh // (4 * h)))
    points = torch.arange(m * (h - 1) + 1, dtype=torch.float64) / m
    left = points.floor().clamp(max=h - 2).long()
    frac = points - left
    weights = torch.zeros((len(points), h), dtype=torch.float64)
    weights[torch.arange(len(points)), left] = 1 - frac
    weights[torch.arange(len(points)), left + 1] += frac
    t = ((torch.arange(sh, dtype=torch.float64) + 0.5) * h / sh - 0.5).clamp(0, h - 1)
    interval = (t * m).floor().long().clamp(max=len(points) - 2)
    counts = torch.bincount(interval, minlength=len(points) - 1)
    return weights.float().to(device), counts.to(device)


# Window heights checked above the lowest that rounds as the whole map: a run of hot rows taller
# than that is upsampled as the whole unit (checked too), so a 56-row map's check upsamples 14
# heights of windows, not 54.
TALLER = 12


def kernel_threads(device: str) -> int:
    """The intra-op threads of the CPU kernels (0 on another device), part of every plan's key:
    PyTorch picks kernels by it (``upsample`` pads the one case known), so each count is checked
    rather than assumed."""
    return torch.get_num_threads() if device == "cpu" else 0


def upsampling_plan(c: int, h: int, w: int, sh: int, sw: int, device: str = "cpu") -> str:
    """ "windows", "units" or "whole" (see the module docstring), checked on random maps."""
    return _upsampling_plan(c, h, w, sh, sw, device, kernel_threads(device))


@lru_cache(maxsize=64)
def _upsampling_plan(c: int, h: int, w: int, sh: int, sw: int, device: str, threads: int) -> str:
    if window_heights(c, h, w, sh, sw, device) is not None:
        return "windows"
    act, full, generator = _check_maps(c, h, w, sh, sw, device)
    subsets = [torch.tensor([0]), torch.tensor([c - 1])]
    for k in (2, 3, 5, 13, 100):
        if k < c:
            subsets.append(torch.randperm(c, generator=generator)[:k].sort().values)
    if all(
        torch.equal(upsample(act[units.to(device)].unsqueeze(0), (sh, sw))[0], full[units])
        for units in subsets
    ):
        return "units"
    return "whole"


def window_heights(
    c: int, h: int, w: int, sh: int, sw: int, device: str = "cpu"
) -> tuple[int, int] | None:
    """(lowest, tallest): the window heights (in cell rows) that give the whole map's values,
    besides the whole map's own height h; None where windows do not (then "units" or "whole").

    Windows need an integer power-of-two row factor, so that a window's pixel-to-cell mapping is
    the whole map's shifted by whole cells with the same float scale; on any device (the check
    runs there: a CUDA kernel's rounding is checked on CUDA). Each height is checked on stacks
    of windows of many units and start rows, as ``upsampled_windows`` stacks them (on small
    planes a window's rounding depends on its place in the stack: seen with 6 x 6 -> 12 x 12 and
    7 units; short windows of 28 x 28 maps, under 2,048 pixels, round differently), then the
    production path ``_windows`` on several patterns of hot rows. Keyed by the CPU thread count
    (``kernel_threads``): PyTorch picks kernels by it (``upsample``; docs/NOTES.md, "No windows
    on one CPU thread")."""
    return _window_heights(c, h, w, sh, sw, device, kernel_threads(device))


@lru_cache(maxsize=64)
def _window_heights(
    c: int, h: int, w: int, sh: int, sw: int, device: str, threads: int
) -> tuple[int, int] | None:
    f = sh // h
    if not (h >= 3 and sh == f * h and f >= 2 and not f & (f - 1)):
        return None
    act, full, generator = _check_maps(c, h, w, sh, sw, device)
    if not _height_matches(act, full, h):
        return None
    lowest, tallest = h, h
    for rows in range(3, h):
        if not _height_matches(act, full, rows):
            lowest = tallest = h
            continue
        if lowest == h:
            lowest = rows
        tallest = rows
        if rows - lowest >= TALLER:
            break
    if not _windows_match(act, full, (lowest, tallest), generator):
        return None
    return lowest, tallest


def _check_maps(
    c: int, h: int, w: int, sh: int, sw: int, device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
    """The plans' check maps: seeded random (C, h, w) maps, their whole-map upsampling (the
    reference every plan must equal), and the generator, to draw the check's subsets from."""
    generator = torch.Generator().manual_seed(0)
    act = (torch.randn((c, h, w), generator=generator) * 3).to(device)
    return act, upsample(act.unsqueeze(0), (sh, sw))[0], generator


def _height_matches(act: torch.Tensor, full: torch.Tensor, rows: int) -> bool:
    """Whether windows of ``rows`` cell rows give the whole map's values on every exact pixel:
    one window for each of the first 64 units (start rows cycling, both ends included), a
    window alone, stacks of two and three (PyTorch has chosen kernels by small channel counts),
    and a stack as large as production stacks get (``STACK_PIXELS``: a batch's windows of one
    height, units and start rows cycling), so every position a window can take in a stack is
    checked."""
    c, h, _ = act.shape
    f, size = full.shape[1] // h, (full.shape[1], full.shape[2])
    k = min(c, 64)
    start = torch.arange(k) % (h - rows + 1)
    if k > 1:
        start[1] = h - rows
    n = max(1, STACK_PIXELS // (rows * f * size[1]))
    cases = [
        (torch.arange(k), start),
        (torch.tensor([c - 1]), torch.tensor([h - rows])),
        (torch.arange(2) % c, torch.arange(2) % (h - rows + 1)),
        (torch.arange(3) % c, torch.arange(3) % (h - rows + 1)),
        (torch.arange(n) % c, (torch.arange(n) + torch.arange(n) // c) % (h - rows + 1)),
    ]
    for unit, first in cases:
        height = torch.full_like(unit, rows)
        found = upsampled_windows(
            act, unit.to(act.device), first.to(act.device), height.to(act.device), size
        )
        if not _exact_match(found, full, f):
            return False
    return True


def _exact_match(
    found: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]],
    full: torch.Tensor,
    f: int,
) -> bool:
    """Whether every exact pixel of the windows equals the whole map's (``full``, (C, sh, sw))."""
    for unit, start, up, exact in found:
        # window a's pixel rows are the whole map's rows a f .. a f + H f - 1
        whole = full.unfold(1, up.shape[1], f)[unit, start].transpose(1, 2)
        if bool(((up != whole) & (exact > 0).unsqueeze(2)).any()):
            return False
    return True


def _windows_match(
    act: torch.Tensor, full: torch.Tensor, heights: tuple[int, int], generator: torch.Generator
) -> bool:
    """Whether ``_windows`` gives the whole map's values on every exact pixel, for thresholds
    that make every cell hot, a share of the cells (per unit, from its own values), or the cells
    of a single unit. The stacked patterns use the first 64 units (hundreds of windows, so every
    position of a vectorised loop occurs; more only costs time)."""
    c, h, w = act.shape
    f = full.shape[1] // h
    k = min(c, 64)
    order = torch.sort(act[:k].reshape(k, -1), dim=1, descending=True).values
    patterns = [(k, torch.full((k,), float("-inf")))]
    for share in (0.25, 0.05):
        patterns.append((k, order[:, max(0, int(share * h * w) - 1)] - 1e-3))
    single = torch.full((c,), float("inf"))
    single[int(torch.randint(c, (1,), generator=generator))] = float("-inf")
    patterns.append((c, single))
    size = (full.shape[1], full.shape[2])
    for n, thresholds in patterns:
        found = _windows(act[:n], thresholds.to(act.device), size, heights)
        if not _exact_match(found, full, f):
            return False
    return True
