"""Exact per-unit quantiles in bounded memory, whatever the number of values.

numpy.quantile(v, p) with the default 'linear' method reads two order statistics of v, at
ascending positions ``prev`` and ``prev + 1`` around (N - 1) p, and interpolates. For p = 1 - q
those are among the largest q N values; at Broden scale on the upsampled basis that is still
about 4 million values per unit, too many to keep for 2,048 units. So lce never keeps values;
it counts them, in two rounds over the data:

1. ``ThresholdSelect`` (pass 1, streamed; on the upsampled basis a sweep of pass 2, see below):
   per unit, a histogram of the values by the top 16 bits
   of an order-preserving 32-bit key of each float32 (``float_keys``). It also keeps a running
   *lower bound* L of the threshold: the lower edge of the highest bin at or above which at least
   k values have been counted (k = N - prev; L only rises). Values at or below L can never be one
   of the two order statistics, so they are not counted, and the engine uses L to drop cells from
   its cache and upsampled pixels from the work (a bilinear pixel cannot exceed the largest of its
   four source cells by more than rounding; extract/upsample.py).
2. ``ThresholdRefine`` (a pass over the cache): the histogram locates, per unit, the 16-bit bin
   that holds each order statistic and its rank inside that bin; a second histogram over the
   low 16 bits of the values in that bin then gives the exact 32-bit key, i.e. the exact float.
   Values above both bins are never read, so a caller that must select values one by one (the
   upsampled pixels) selects only those below ``ceilings()``, the lower edge of the next bin.

Why the counts are exact where they are used: a value above the final bound's bin was above the
bound of its own moment (the bound only rises), so it was counted; the bins strictly above the
final bound's bin therefore hold exact counts. Values in the bound's own bin are recounted in the
refine round against the final bound. An order statistic that is not above L equals L: L is at or
below it (k values are at or above L) and it is not above L. Both rounds' states are additive
(sums of counts, max of bounds, min of minima), so shards and resumed runs merge exactly.

How fast the bound rises. The raw basis raises it after every batch; after n of N images it is
about the k-th largest value of those n images, so the next image counts about k / n values a
unit once n exceeds q N: about (1 + ln(1 / q)) k a unit in all (q = 1 - p), 6.3 k at q = 0.005,
whatever N, which on raw cells is cheap. On the upsampled basis it was not: every image's pixels
had to be upsampled and counted against a bound that was far below the threshold for the first
images (pass 1 ran at 38 images/s where the raw basis ran 450, bench_scale N = 3,000). So pass 1
counts no pixels there. It counts *block floors* (extract/upsample.py ``block_floors``): values,
each weighted by the pixels of its block, that no pixel of the block is below, computed from
the raw map by a small matrix product. Any value with at least k such weighted floors at or above
it has at least k pixels at or above it, so the bound found from the floors is a valid bound of
the pixels' threshold (``update_rows``; the cache and round 2 need nothing else), and it sits
near 0.9 of the threshold (stand-in layer4: 0.92 median). A sweep over the cache in pass 2 then
counts the upsampled pixels above that bound into a fresh table (about 1.4 k a unit), and round 2
reads those counts as before. Nothing here is guessed: a sample's value at rank f k would be
tighter but could be too high, and the cache, kept against the bound, would then lack cells the
tally needs.

Memory: one (units x 65,536) count table (int32 while N < 2^31), 256 MB per 1,024 units,
independent of N. The float keys treat -0.0 as +0.0 (they compare equal, so masks S > T are the
same; a threshold numpy would return as -0.0 is returned as +0.0).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

BINS = 1 << 16  # fine bins: the top 16 bits of the key; the refine round reads the low 16
COARSE = 1 << 8  # coarse bins (top 8 bits), to find the bound without scanning 65,536 bins


# ---------------------------------------------------------------- keys


def float_keys(values: torch.Tensor) -> torch.Tensor:
    """int64 keys in [0, 2^32) that sort as the float32 values do (-0.0 taken as +0.0)."""
    bits = (values.float() + 0.0).view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    return torch.where(bits >= 1 << 31, 0xFFFFFFFF - bits, bits + (1 << 31))


def top_bits(values: torch.Tensor) -> torch.Tensor:
    """``float_keys(values) >> 16`` in int32 arithmetic (one shift and one select; the hot path of
    round 1): an arithmetic shift of a negative float's bits gives ``(bits >> 16) - 65536``."""
    high = (values.float() + 0.0).view(torch.int32) >> 16
    return torch.where(high >= 0, high + (1 << 15), -1 - high)


def low_bits(values: torch.Tensor) -> torch.Tensor:
    """``float_keys(values) & 0xFFFF`` in int32 arithmetic."""
    bits = (values.float() + 0.0).view(torch.int32)
    low = bits & 0xFFFF
    return torch.where(bits >= 0, low, 0xFFFF - low)


def key_floats(keys: torch.Tensor) -> torch.Tensor:
    """The float32 values of ``float_keys`` keys (its inverse)."""
    keys = keys.to(torch.int64)
    bits = torch.where(keys >= 1 << 31, keys - (1 << 31), 0xFFFFFFFF - keys)
    bits = torch.where(bits >= 1 << 31, bits - (1 << 32), bits)  # as signed int32
    return bits.to(torch.int32).view(torch.float32)


def bin_edges(bins: torch.Tensor) -> torch.Tensor:
    """The smallest float32 of each fine bin (its lower edge)."""
    return key_floats(bins.to(torch.int64) << 16)


# ---------------------------------------------------------------- numpy's linear method


def order_positions(n_values: int, p: float) -> tuple[int, int, float]:
    """(prev, next, gamma) of numpy.quantile(v, p, method='linear') for len(v) = n_values:
    the ascending positions of the two order statistics it reads and the weight of the second."""
    virtual = (n_values - 1) * np.float64(p)
    prev = math.floor(virtual)
    nxt = prev + 1
    if virtual >= n_values - 1:
        prev = nxt = n_values - 1
    return prev, nxt, float(virtual - math.floor(virtual))


def lerp(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """numpy's interpolation between the order statistics ``a`` (lower) and ``b``, in their own
    dtype (numpy.quantile of float32 with a Python-float p computes it in float32), so the
    result is the number numpy returns, not merely close to it."""
    a, b = np.asarray(a), np.asarray(b)
    diff = b - a
    if gamma >= 0.5:
        return np.asarray(b - diff * (1 - gamma))
    return np.asarray(a + diff * gamma)


def needed(n_values: int, p: float) -> int:
    """How many of the largest values reach down to the lower order statistic: the bound may
    rise to the k-th largest value seen for this k. It never decreases as n_values falls (an
    image skipped in pass 1 only lowers it), so a bound made for the planned count holds."""
    prev, _, _ = order_positions(n_values, p)
    return n_values - prev


def suffix_counts(hist: torch.Tensor) -> torch.Tensor:
    """(rows, bins + 1) int64: entry b is the number counted in bins b and above; last is 0."""
    flipped = hist.to(torch.int64).flip(1).cumsum(1).flip(1)
    return torch.cat([flipped, torch.zeros_like(flipped[:, :1])], dim=1)


def last_at_least(suffix: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Per row, the highest bin b with suffix[b] >= k (-1 where none): suffix counts never rise
    with b, so that is the number of such bins minus one."""
    return (suffix[:, :-1] >= k.view(-1, 1)).sum(1) - 1


def highest_reaching(coarse: torch.Tensor, fine: torch.Tensor, need: torch.Tensor) -> torch.Tensor:
    """Per row, the highest fine bin b with at least ``need`` counted in bins b and above (-1
    where none), found from the coarse counts and then the 256 fine bins of one coarse bin, so
    it costs 512 bins a row, not 65,536. ``coarse`` must be ``fine``'s sums by 256 bins."""
    outer = suffix_counts(coarse)
    c = last_at_least(outer, need)
    found = c >= 0
    c = c.clamp(min=0)
    above = outer.gather(1, (c + 1).view(-1, 1))
    start = (c * COARSE).view(-1, 1) + torch.arange(COARSE, device=fine.device)
    inner = suffix_counts(fine.gather(1, start))[:, :-1] + above
    f = (inner >= need.view(-1, 1)).sum(1) - 1
    return torch.where(found, c * COARSE + f, -1)


def counted_from(coarse: torch.Tensor, fine: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row, the count in fine bins ``b`` and above (b may be 65,536: none), two-level."""
    b = b.clamp(max=BINS)
    c = (b // COARSE).clamp(max=COARSE - 1)
    outer = suffix_counts(coarse).gather(1, (c + 1).view(-1, 1)).view(-1)
    start = (c * COARSE).view(-1, 1) + torch.arange(COARSE, device=fine.device)
    inner = suffix_counts(fine.gather(1, start))
    offset = torch.where(b >= BINS, COARSE, b - c * COARSE)
    return outer + inner.gather(1, offset.view(-1, 1)).view(-1)


# ---------------------------------------------------------------- round 1


class ThresholdSelect:
    """Round 1: per-unit bin counts of the values above a rising lower bound of the threshold.

    ``update(units, values)`` takes candidate values (any order) with the unit of each; only
    those above the unit's bound count. ``refresh()`` raises the bounds from the counts.
    """

    def __init__(
        self, n_units: int, n_values: int, p: float, device: torch.device | str = "cpu"
    ) -> None:
        self.device = torch.device(device)
        self.n_units, self.n_values, self.p = n_units, n_values, p
        self.k = needed(n_values, p)
        dtype = torch.int32 if n_values < 2**31 else torch.int64
        self.fine = torch.zeros((n_units, BINS), dtype=dtype, device=self.device)
        self.coarse = torch.zeros((n_units, COARSE), dtype=torch.int64, device=self.device)
        self.bounds = torch.full((n_units,), float("-inf"), device=self.device)

    def candidates(self, block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(units, values) of a (units, n) block of values above the bounds."""
        units, cols = torch.nonzero(block > self.bounds.view(-1, 1), as_tuple=True)
        return units, block[units, cols]

    def update(
        self,
        units: torch.Tensor,
        values: torch.Tensor,
        above: bool = False,
        weights: torch.Tensor | None = None,
    ) -> None:
        """Count ``values`` of ``units`` that are above their bounds; ``above``: the caller kept
        only such values (``candidates``, ``upsample.pixels_above``), which saves a pass.
        ``weights``: each value counts as that many (the pixels a block floor stands for)."""
        if not above:
            keep = values > self.bounds[units]
            units, values = units[keep], values[keep]
            weights = None if weights is None else weights[keep]
        high = top_bits(values)
        row = units.to(high.dtype) if self.n_units < 1 << 15 else units.long()
        fine = row * BINS + high
        if weights is None:
            ones = torch.ones(1, dtype=self.fine.dtype, device=self.device).expand(len(fine))
            wide = torch.ones(1, dtype=torch.int64, device=self.device).expand(len(fine))
        else:
            ones, wide = weights.to(self.fine.dtype), weights.to(torch.int64)
        self.fine.view(-1).index_add_(0, fine, ones)
        coarse = row * COARSE + (high >> 8)
        self.coarse.view(-1).index_add_(0, coarse, wide)

    def update_block(self, block: torch.Tensor) -> None:
        """Count a (units, n) block of values."""
        self.update(*self.candidates(block), above=True)

    def update_rows(self, units: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor) -> None:
        """Count (M, B) ``rows`` of values, row i of unit ``units[i]``, each value of column j
        ``weights[j]`` times (the pixels a block floor stands for: upsample.block_floors)."""
        row, col = torch.nonzero(rows > self.bounds[units].view(-1, 1), as_tuple=True)
        self.update(units[row], rows[row, col], above=True, weights=weights[col])

    def refresh(self) -> None:
        """Raise each bound to the lower edge of the highest fine bin at or above which k
        values are counted (coarse bins first, then the 256 fine bins of one coarse bin)."""
        k = torch.full((self.n_units,), self.k, device=self.device, dtype=torch.int64)
        b = highest_reaching(self.coarse, self.fine, k)
        edge = bin_edges(b.clamp(min=0))
        self.bounds = torch.where(b >= 0, torch.maximum(self.bounds, edge), self.bounds)

    def merge(self, other: ThresholdSelect) -> None:
        """Counts add (each shard counted distinct values) and the bound is the higher one: the
        bins above it hold exact counts in both shards, so in their sum."""
        self.fine += other.fine.to(self.device, self.fine.dtype)
        self.coarse += other.coarse.to(self.device)
        self.bounds = torch.maximum(self.bounds, other.bounds.to(self.device))
        self.refresh()

    def state_dict(self) -> dict[str, Any]:
        """The counts at and above each unit's bound only (what the bound and the final
        answer can still read), as sparse (unit, bin, count) triples: a checkpoint stays small."""
        floor = float_keys(self.bounds) >> 16
        # the nonzero coarse bins that reach the bound's bin, then their fine bins
        cu, cb = torch.nonzero(
            (self.coarse > 0)
            & (torch.arange(COARSE, device=self.device) >= (floor >> 8).view(-1, 1)),
            as_tuple=True,
        )
        fine_bins = (cb * COARSE).view(-1, 1) + torch.arange(COARSE, device=self.device)
        rows = self.fine[cu.view(-1, 1), fine_bins]
        keep = (rows > 0) & (fine_bins >= floor[cu].view(-1, 1))
        units = cu.view(-1, 1).expand_as(keep)[keep].to(torch.int32).cpu()
        bins = fine_bins[keep].to(torch.int32).cpu()
        counts = rows[keep].to(torch.int64).cpu()
        return {
            "n_units": self.n_units, "n_values": self.n_values, "p": self.p,
            "bounds": self.bounds.cpu(), "units": units, "bins": bins, "counts": counts,
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = getattr(self, "device", torch.device("cpu"))
        self.__init__(state["n_units"], state["n_values"], state["p"], device)  # type: ignore[misc]
        units, bins = state["units"].to(self.device).long(), state["bins"].to(self.device).long()
        counts = state["counts"].to(self.device)
        self.fine.view(-1).index_put_((units * BINS + bins,), counts.to(self.fine.dtype))
        self.coarse.view(-1).index_add_(0, units * COARSE + (bins >> 8), counts)
        self.bounds = state["bounds"].to(self.device)

    def refine(self, n_values: int) -> ThresholdRefine:
        """Round 2's targets, for the number of values actually seen (``n_values``)."""
        return ThresholdRefine.from_select(self, n_values)


# ---------------------------------------------------------------- round 2


class ThresholdRefine:
    """Round 2: per unit, the bin of each order statistic and its rank there; counts of the low
    16 bits of the values in the lower one's bin, and the smallest value of the upper one's bin
    when the two differ (then it is the smallest value there: the lower one is in a lower bin).
    """

    def __init__(
        self, n_units: int, device: torch.device | str = "cpu", wide: bool = False
    ) -> None:
        self.device = torch.device(device)
        self.n_units, self.wide = n_units, wide
        zeros = torch.zeros(n_units, dtype=torch.int64, device=self.device)
        self.bounds = torch.full((n_units,), float("-inf"), device=self.device)
        self.gamma = 0.0
        self.bin_lo, self.rank_lo, self.bin_hi, self.rank_hi = zeros, zeros, zeros, zeros
        dtype = torch.int64 if wide else torch.int32
        self.low = torch.zeros((n_units, BINS), dtype=dtype, device=self.device)
        self.low_coarse = torch.zeros((n_units, COARSE), dtype=torch.int64, device=self.device)
        self.minimum = torch.full((n_units,), float("inf"), device=self.device)

    @classmethod
    def from_select(cls, select: ThresholdSelect, n_values: int) -> ThresholdRefine:
        prev, nxt, gamma = order_positions(n_values, select.p)
        out = cls(select.n_units, select.device, wide=n_values >= 2**31)
        out.bounds, out.gamma = select.bounds.clone(), gamma
        floor = float_keys(select.bounds) >> 16
        for rank, upper in ((n_values - 1 - prev, False), (n_values - 1 - nxt, True)):
            want = torch.full((select.n_units,), rank + 1, dtype=torch.int64, device=out.device)
            where = torch.maximum(highest_reaching(select.coarse, select.fine, want), floor)
            inside = rank - counted_from(select.coarse, select.fine, where + 1)
            if upper:
                out.bin_hi, out.rank_hi = where, inside
            else:
                out.bin_lo, out.rank_lo = where, inside
        return out

    def candidates(self, block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        units, cols = torch.nonzero(block > self.bounds.view(-1, 1), as_tuple=True)
        return units, block[units, cols]

    def ceilings(self) -> torch.Tensor:
        """Per unit, the lower edge of the bin above both order statistics' bins (+inf above
        the last bin): ``update`` reads nothing at or above it, so a caller that selects values
        (``upsample.pixels_above``) may leave those out."""
        top = torch.maximum(self.bin_lo, self.bin_hi) + 1
        return torch.where(top < BINS, bin_edges(top.clamp(max=BINS - 1)), float("inf"))

    def update(self, units: torch.Tensor, values: torch.Tensor, above: bool = False) -> None:
        if not above:
            keep = values > self.bounds[units]
            units, values = units[keep], values[keep]
        high = top_bits(values).long()
        lower = high == self.bin_lo[units]
        cells = units[lower] * BINS + low_bits(values[lower])
        ones = torch.ones(1, dtype=self.low.dtype, device=self.device).expand(len(cells))
        self.low.view(-1).index_add_(0, cells, ones)
        self.low_coarse.view(-1).index_add_(0, cells >> 8, ones.to(torch.int64))
        upper = (high == self.bin_hi[units]) & (self.bin_hi[units] != self.bin_lo[units])
        self.minimum.scatter_reduce_(0, units[upper], values[upper].float(), "amin")

    def merge(self, other: ThresholdRefine) -> None:
        self.low += other.low.to(self.device, self.low.dtype)
        self.low_coarse += other.low_coarse.to(self.device)
        self.minimum = torch.minimum(self.minimum, other.minimum.to(self.device))

    def state_dict(self) -> dict[str, Any]:
        units, cells = torch.nonzero(self.low, as_tuple=True)
        return {
            "n_units": self.n_units, "wide": self.wide, "gamma": self.gamma,
            "bounds": self.bounds.cpu(),
            "bin_lo": self.bin_lo.cpu(), "rank_lo": self.rank_lo.cpu(),
            "bin_hi": self.bin_hi.cpu(), "rank_hi": self.rank_hi.cpu(),
            "units": units.cpu(), "cells": cells.cpu(), "counts": self.low[units, cells].cpu(),
            "minimum": self.minimum.cpu(),
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = getattr(self, "device", torch.device("cpu"))
        self.__init__(state["n_units"], device, state["wide"])  # type: ignore[misc]
        self.gamma = state["gamma"]
        for name in ("bounds", "bin_lo", "rank_lo", "bin_hi", "rank_hi", "minimum"):
            setattr(self, name, state[name].to(self.device))
        cells = state["units"].to(self.device) * BINS + state["cells"].to(self.device)
        counts = state["counts"].to(self.device)
        self.low.view(-1).index_put_((cells,), counts.to(self.low.dtype))
        self.low_coarse.view(-1).index_add_(0, cells >> 8, counts.to(torch.int64))

    def thresholds(self) -> np.ndarray:
        """The exact numpy.quantile per unit (float32)."""
        lower = self._value(self.rank_lo)
        same = self.bin_hi == self.bin_lo
        upper = torch.where(same, self._value(self.rank_hi), self.minimum)
        return lerp(lower.cpu().numpy(), upper.cpu().numpy(), self.gamma).astype(np.float32)

    def _value(self, rank: torch.Tensor) -> torch.Tensor:
        """The value of the given rank (from the top) inside each unit's lower bin: found by
        the low-16-bit counts, or the bound itself where fewer values lie above it."""
        low = highest_reaching(self.low_coarse, self.low, rank + 1)
        found = key_floats((self.bin_lo << 16) | low.clamp(min=0))
        return torch.where(low >= 0, found, self.bounds)
