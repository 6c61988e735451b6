"""Additive dissection state with the running-state interface of extract/running.py (update,
merge, state_dict, load_state_dict).

All counts are integers, so merging partial tallies (shards, resumed runs, processes) gives
exactly the tally of the whole probe set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from extract.broden import ImageLabels
from extract.upsample import label_counts


class ConceptTally:
    """I[u, c] intersections, A[u, k] mask pixels per annotated category, G[c] label pixels.

    With ``n_null`` > 0 it also keeps, for each of ``n_null`` null permutations, the same I and A
    of every unit's mask against the labels of another image (``null_intersection[k]``,
    ``null_activation[k]``): how well a unit's masks match concepts they have nothing to do with.
    The permutations are bijections of the probe's images, so G is the same for every one.
    """

    def __init__(
        self,
        n_units: int,
        n_concepts: int,
        n_categories: int,
        device: torch.device | str = "cpu",
        n_null: int = 0,
    ) -> None:
        self.device = torch.device(device)
        self.intersection = torch.zeros((n_units, n_concepts), dtype=torch.int64, device=device)
        self.activation = torch.zeros((n_units, n_categories), dtype=torch.int64, device=device)
        self.label_pixels = torch.zeros(n_concepts, dtype=torch.int64, device=device)
        shape = (n_null, n_units)
        self.null_intersection = torch.zeros((*shape, n_concepts), dtype=torch.int64, device=device)
        self.null_activation = torch.zeros((*shape, n_categories), dtype=torch.int64, device=device)

    _COUNTS = ("intersection", "activation", "label_pixels", "null_intersection", "null_activation")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name).cpu() for name in self._COUNTS}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.device = getattr(self, "device", torch.device("cpu"))
        for name in self._COUNTS:
            setattr(self, name, state[name].to(self.device))

    def merge(self, other: ConceptTally) -> None:
        for name in self._COUNTS:
            getattr(self, name).add_(getattr(other, name).to(self.device))

    def update(
        self,
        act: torch.Tensor,
        thresholds: torch.Tensor,
        labels: ImageLabels,
        partners: Sequence[ImageLabels] = (),
    ) -> None:
        """Add one image: ``act`` is the layer's raw (units, h, w) map, on any device;
        ``partners`` are the null permutations' images for this one (their labels, same size).

        Only units with a cell near their threshold are upsampled (``extract.upsample``): bilinear
        upsampling cannot exceed the raw maximum by more than rounding.
        """
        sh, sw = labels.size
        device = self.device
        image_concepts = torch.from_numpy(labels.image_concepts).to(device)
        present = torch.from_numpy(labels.present).to(device)
        self.label_pixels.index_add_(0, present, torch.from_numpy(labels.pixel_counts).to(device))
        self.label_pixels[image_concepts] += sh * sw
        # one product gives the intersections with every concept present in the image, then with
        # those of each null partner, and in the last (all-ones) column each mask's size. Sums of
        # 0/1 are exact in float32, so the extra columns change no real count.
        matrix = labels.onehot()
        if partners:
            blocks = [matrix[:, :-1], *[p.onehot()[:, :-1] for p in partners], matrix[:, -1:]]
            matrix = np.concatenate(blocks, axis=1)
        onehot = torch.from_numpy(matrix).to(device).float()
        units, counts = label_counts(act.to(device), thresholds.to(device), (sh, sw), onehot)
        if units.numel() == 0:
            return
        mask_sums = counts[:, -1:]
        self._add_image(self.intersection, self.activation, units, counts[:, : len(labels.present)],
                        mask_sums, labels)  # fmt: skip
        start = len(labels.present)
        for k, partner in enumerate(partners):
            stop = start + len(partner.present)
            self._add_image(self.null_intersection[k], self.null_activation[k], units,
                            counts[:, start:stop], mask_sums, partner)  # fmt: skip
            start = stop

    def _add_image(
        self,
        intersection: torch.Tensor,
        activation: torch.Tensor,
        units: torch.Tensor,
        counts: torch.Tensor,
        mask_sums: torch.Tensor,
        labels: ImageLabels,
    ) -> None:
        device = self.device
        annotated = torch.from_numpy(np.nonzero(labels.annotated)[0]).to(device)
        present = torch.from_numpy(labels.present).to(device)
        image_concepts = torch.from_numpy(labels.image_concepts).to(device)
        if annotated.numel():
            self._add(activation, units, annotated, mask_sums)
        if present.numel():
            self._add(intersection, units, present, counts)
        if image_concepts.numel():
            self._add(intersection, units, image_concepts, mask_sums)

    @staticmethod
    def _add(
        target: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor
    ) -> None:
        """target[rows x cols] += values (broadcast), rows and cols each without repeats."""
        r = rows.view(-1, 1).expand(-1, cols.numel())
        c = cols.view(1, -1).expand(rows.numel(), -1)
        target.index_put_((r, c), values.expand(rows.numel(), cols.numel()), True)

    def iou(self, category_of: np.ndarray, null: int | None = None) -> np.ndarray:
        """IoU[u, c] = I / (A[u, cat(c)] + G[c] - I), 0 where the denominator is 0; of the
        ``null``-th null permutation instead when given."""
        intersection = self.intersection if null is None else self.null_intersection[null]
        activation = self.activation if null is None else self.null_activation[null]
        inter = intersection.cpu().numpy().astype(np.float64)
        act = activation.cpu().numpy()[:, category_of].astype(np.float64)
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

    def merge(self, other: TopImages) -> None:
        """The top K of both lists, by the same rule (each shard holds other images)."""
        self.update_from(other.values, other.images)

    def state_dict(self) -> dict[str, Any]:
        return {"k": self.k, "values": self.values, "images": self.images}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.k, self.values, self.images = state["k"], state["values"], state["images"]

    def holding(self, images: torch.Tensor) -> torch.Tensor:
        """(units, len(images)) bool: which of ``images`` (probe indices) each unit's list holds
        now. An image not in a list when it arrives never enters it later (the list only
        improves), so the pairs true right after an image's update are all the pairs that can
        end up in the final lists: the cache keeps their whole maps (extract/cache.py)."""
        return (self.images.unsqueeze(2) == images.view(1, 1, -1)).any(dim=1)

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

    def merge(self, other: ActivationStats) -> None:
        self.total += other.total
        self.count += other.count
        self.maximum = torch.maximum(self.maximum, other.maximum)

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total, "count": self.count, "maximum": self.maximum}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total, self.count, self.maximum = state["total"], state["count"], state["maximum"]
