"""Exact per-unit quantiles from bounded top-k buffers.

numpy.quantile(v, p) with the default 'linear' method reads only the two order statistics around
position (N-1)*p. For p = 1 - q close to 1 those sit among the largest ceil(q(N-1)) + 2 values,
so a running top-k buffer per unit gives the exact answer while holding a q fraction of the data.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def buffer_size(n_values: int, q: float) -> int:
    """Values per unit the buffer must keep to answer numpy.quantile(v, 1 - q) exactly."""
    return max(1, min(n_values, math.ceil(q * (n_values - 1)) + 2))


class TopK:
    """Per-unit running top-k of activation values (float32), mergeable across shards."""

    def __init__(self, n_units: int, k: int, device: torch.device | str = "cpu") -> None:
        self.k = k
        self.values = torch.full((n_units, 0), float("-inf"), device=device)

    def update(self, values: torch.Tensor) -> None:
        """Add a (units, n) block of new values."""
        merged = torch.cat([self.values, values.to(self.values.dtype)], dim=1)
        if merged.shape[1] > self.k:
            merged = torch.topk(merged, self.k, dim=1, sorted=False).values
        self.values = merged

    def merge(self, other_values: torch.Tensor) -> None:
        self.update(other_values)


def quantile_from_top(top: np.ndarray, n_values: int, p: float) -> np.ndarray:
    """numpy.quantile(all_values, p) per row, given each row's largest values (any order).

    Mirrors numpy's linear method step by step, in the values' own dtype (numpy.quantile of a
    float32 array with a Python-float p computes its lerp in float32), so the result is the same
    number numpy returns, not merely close to it.
    """
    top = np.sort(np.asarray(top), axis=1)  # ascending
    k = top.shape[1]
    virtual = (n_values - 1) * np.float64(p)
    prev = math.floor(virtual)
    nxt = prev + 1
    if virtual >= n_values - 1:
        prev = nxt = n_values - 1
    gamma = float(virtual - math.floor(virtual))
    # ascending position i of the full array is position i - (N - k) of the ascending top-k
    offset = n_values - k
    if prev - offset < 0:
        raise ValueError(f"top-k buffer of {k} values is too small for N={n_values}, p={p}")
    a = top[:, prev - offset]
    b = top[:, nxt - offset]
    diff = b - a
    if gamma >= 0.5:
        return np.asarray(b - diff * (1 - gamma))
    return np.asarray(a + diff * gamma)
