"""Moving host tensors to the device the model runs on."""

from __future__ import annotations

import torch


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``. A host tensor goes to a GPU through pinned memory without waiting
    (``non_blocking``), so the copy overlaps the work already queued there; PyTorch's pinned
    allocator keeps the page-locked buffer until the copy has run."""
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)
