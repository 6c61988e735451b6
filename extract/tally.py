"""Additive dissection state, in the torchmetrics Metric pattern (update / merge / compute).

All counts are integers, so merging partial tallies (shards, resumed runs, processes) gives
exactly the tally of the whole probe set.
"""

from __future__ import annotations

import numpy as np
import torch

from extract.broden import ImageLabels
from extract.upsample import label_counts


class ConceptTally:
    """I[u, c] intersections, A[u, k] mask pixels per annotated category, G[c] label pixels."""

    def __init__(
        self, n_units: int, n_concepts: int, n_categories: int, device: torch.device | str = "cpu"
    ) -> None:
        self.device = torch.device(device)
        self.intersection = torch.zeros((n_units, n_concepts), dtype=torch.int64, device=device)
        self.activation = torch.zeros((n_units, n_categories), dtype=torch.int64, device=device)
        self.label_pixels = torch.zeros(n_concepts, dtype=torch.int64, device=device)

    def state(self) -> dict[str, torch.Tensor]:
        return {
            "intersection": self.intersection,
            "activation": self.activation,
            "label_pixels": self.label_pixels,
        }

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.intersection = state["intersection"].to(self.device)
        self.activation = state["activation"].to(self.device)
        self.label_pixels = state["label_pixels"].to(self.device)

    def merge(self, other: ConceptTally) -> None:
        self.intersection += other.intersection
        self.activation += other.activation
        self.label_pixels += other.label_pixels

    def update(self, act: torch.Tensor, thresholds: torch.Tensor, labels: ImageLabels) -> None:
        """Add one image: ``act`` is the layer's raw (units, h, w) map, on any device.

        Only units with a cell near their threshold are upsampled (``extract.upsample``): bilinear
        upsampling cannot exceed the raw maximum by more than rounding.
        """
        sh, sw = labels.size
        device = self.device
        image_concepts = torch.from_numpy(labels.image_concepts).to(device)
        present = torch.from_numpy(labels.present).to(device)
        self.label_pixels.index_add_(0, present, torch.from_numpy(labels.pixel_counts).to(device))
        self.label_pixels[image_concepts] += sh * sw
        onehot = torch.from_numpy(labels.onehot()).to(device).float()
        # one product gives the intersections with every concept present in the image and, in
        # the last (all-ones) column, each mask's size
        units, counts = label_counts(act.to(device), thresholds.to(device), (sh, sw), onehot)
        if units.numel() == 0:
            return
        mask_sums = counts[:, -1]
        annotated = torch.from_numpy(np.nonzero(labels.annotated)[0]).to(device)
        if annotated.numel():
            self._add(self.activation, units, annotated, mask_sums.view(-1, 1))
        if present.numel():
            self._add(self.intersection, units, present, counts[:, :-1])
        if image_concepts.numel():
            self._add(self.intersection, units, image_concepts, mask_sums.view(-1, 1))

    @staticmethod
    def _add(
        target: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor
    ) -> None:
        """target[rows x cols] += values (broadcast), rows and cols each without repeats."""
        r = rows.view(-1, 1).expand(-1, cols.numel())
        c = cols.view(1, -1).expand(rows.numel(), -1)
        target.index_put_((r, c), values.expand(rows.numel(), cols.numel()), True)

    def iou(self, category_of: np.ndarray) -> np.ndarray:
        """IoU[u, c] = I / (A[u, cat(c)] + G[c] - I), 0 where the denominator is 0."""
        inter = self.intersection.cpu().numpy().astype(np.float64)
        act = self.activation.cpu().numpy()[:, category_of].astype(np.float64)
        denom = act + self.label_pixels.cpu().numpy()[None, :].astype(np.float64) - inter
        out = np.zeros_like(inter)
        np.divide(inter, denom, out=out, where=denom > 0)
        return out


class TopImages:
    """Per unit, the K images with the largest raw activation (ties: lower image index first)."""

    def __init__(self, n_units: int, k: int) -> None:
        self.k = k
        self.values = torch.zeros((n_units, 0), dtype=torch.float32)
        self.images = torch.zeros((n_units, 0), dtype=torch.int64)

    def update(self, maxima: torch.Tensor, image_index: torch.Tensor) -> None:
        """``maxima``: (batch, units) per-image maxima; ``image_index``: (batch,) probe indices."""
        units = maxima.shape[1]
        self.update_from(
            maxima.T.float().cpu(), image_index.view(1, -1).expand(units, -1).cpu().long()
        )

    def update_from(self, values: torch.Tensor, images: torch.Tensor) -> None:
        """Merge (units, n) candidate values and their image indices into the top K."""
        values = torch.cat([self.values, values], dim=1)
        images = torch.cat([self.images, images], dim=1)
        by_image = torch.argsort(images, dim=1, stable=True)
        values, images = values.gather(1, by_image), images.gather(1, by_image)
        by_value = torch.argsort(-values, dim=1, stable=True)[:, : self.k]
        self.values, self.images = values.gather(1, by_value), images.gather(1, by_value)


class ActivationStats:
    """Per-unit max and mean of the raw activations (float64 sums)."""

    def __init__(self, n_units: int) -> None:
        self.total = torch.zeros(n_units, dtype=torch.float64)
        self.count = 0
        self.maximum = torch.full((n_units,), float("-inf"), dtype=torch.float64)

    def update(self, act: torch.Tensor) -> None:
        """``act``: (batch, units, h, w)."""
        flat = act.transpose(0, 1).reshape(act.shape[1], -1)
        self.total += flat.sum(dim=1, dtype=torch.float64).cpu()
        self.count += flat.shape[1]
        self.maximum = torch.maximum(self.maximum, flat.amax(dim=1).double().cpu())
