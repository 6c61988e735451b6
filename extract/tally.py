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
from extract.devices import to_device
from extract.upsample import batch_label_counts


def _cells(
    null: tuple[int, ...], rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """The flat (index..., value) of ``target[null][rows x cols] += values`` (broadcast)."""
    n_rows, n_cols = rows.numel(), cols.numel()
    r = rows.view(-1, 1).expand(-1, n_cols).reshape(-1)
    c = cols.view(1, -1).expand(n_rows, -1).reshape(-1)
    lead = tuple(torch.full_like(r, k) for k in null)
    return (*lead, r, c, values.expand(n_rows, n_cols).reshape(-1))


class LabelBatch:
    """A batch's labels and their null partners' on the device, moved in two copies.

    The label matrices travel bit-packed (a few KB an image) and are unpacked on the device
    one image at a time; the concept indices travel as one int64 vector, sliced on the device.
    From pinned memory with ``non_blocking`` when the device is a GPU, so the copy overlaps
    the work already queued."""

    def __init__(
        self,
        labels: Sequence[ImageLabels],
        partners: Sequence[Sequence[ImageLabels]],
        n_concepts: int,
        device: torch.device,
        folds: Sequence[int] = (),
        n_folds: int = 0,
    ) -> None:
        """``folds``: each image's fold (0 .. n_folds - 1), when the tally keeps fold tallies."""
        self.size = labels[0].size
        self.folds = [int(f) for f in folds]
        pixels = np.zeros(n_concepts, dtype=np.int64)
        fold_pixels = np.zeros((n_folds, n_concepts), dtype=np.int64)
        for fold, own in zip(self.folds, labels if self.folds else (), strict=True):
            np.add.at(fold_pixels[fold], own.present, own.pixel_counts)
            np.add.at(fold_pixels[fold], own.image_concepts, self.size[0] * self.size[1])
        ints: list[np.ndarray] = [pixels, fold_pixels.reshape(-1)]
        bits: list[np.ndarray] = []
        spans: list[list[tuple[tuple[int, int], ...]]] = []
        self.rows: list[tuple[int, int]] = []
        at, row = n_concepts * (1 + n_folds), 0
        for own, others in zip(labels, partners, strict=True):
            np.add.at(pixels, own.present, own.pixel_counts)
            np.add.at(pixels, own.image_concepts, self.size[0] * self.size[1])
            image_spans = []
            for lab in (own, *others):
                parts = (lab.present, np.flatnonzero(lab.annotated), lab.image_concepts)
                image_spans.append(tuple((at, at := at + len(x)) for x in parts))
                ints += [x.astype(np.int64) for x in parts]
            spans.append(image_spans)
            blocks = [own.bits[:-1], *[o.bits[:-1] for o in others], own.bits[-1:]]
            bits += blocks
            self.rows.append((row, row := row + sum(len(b) for b in blocks)))
        flat = to_device(torch.from_numpy(np.concatenate(ints)), device)
        self.host_bits = np.concatenate(bits)
        self.bits = to_device(torch.from_numpy(self.host_bits), device)
        self.label_pixels = flat[:n_concepts]
        self.fold_label_pixels = flat[n_concepts : n_concepts * (1 + n_folds)].view(
            n_folds, n_concepts
        )
        self.entries = [[tuple(flat[a:b] for a, b in entry) for entry in image] for image in spans]

    def onehot(self, j: int) -> torch.Tensor:
        """Image j's (sh * sw, columns) float32 0/1 label matrix: its present concepts, each
        partner's, and a last all-ones column (a transposed view)."""
        a, b = self.rows[j]
        pixels = self.size[0] * self.size[1]
        if self.bits.device.type == "cpu":  # numpy's unpacking is about twice as fast here
            unpacked = torch.from_numpy(np.unpackbits(self.host_bits[a:b], axis=1, count=pixels))
        else:
            unpacked = unpack_bits(self.bits[a:b], pixels)
        return unpacked.T.float()


def unpack_bits(bits: torch.Tensor, count: int) -> torch.Tensor:
    """(rows, bytes) uint8 -> (rows, count) 0/1 uint8, as ``numpy.unpackbits(axis=1, count=count)``
    gives it (big bit order), computed where ``bits`` are (a GPU: no copy back to the host)."""
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=bits.device)
    shifted = (bits.unsqueeze(2) >> shifts).bitwise_and_(1)
    return shifted.reshape(len(bits), -1)[:, :count]


class ConceptTally:
    """I[u, c] intersections, A[u, k] mask pixels per annotated category, G[c] label pixels.

    With ``n_null`` > 0 it also keeps, for each of ``n_null`` null permutations, the same I and A
    of every unit's mask against the labels of another image (``null_intersection[k]``,
    ``null_activation[k]``): how well a unit's masks match concepts they have nothing to do with.
    The permutations are bijections of the probe's images, so G is the same for every one.

    With ``n_folds`` > 0 it also keeps I, A and G of each fold of the images apart
    (``fold_intersection[f]``, ``fold_activation[f]``, ``fold_label_pixels[f]``): an image's
    counts come from the one product that gives its whole counts and are added to its fold's
    tables too, so the whole tally is exactly the sum of the fold tallies.
    """

    def __init__(
        self,
        n_units: int,
        n_concepts: int,
        n_categories: int,
        device: torch.device | str = "cpu",
        n_null: int = 0,
        n_folds: int = 0,
    ) -> None:
        self.device = torch.device(device)
        self.intersection = torch.zeros((n_units, n_concepts), dtype=torch.int64, device=device)
        self.activation = torch.zeros((n_units, n_categories), dtype=torch.int64, device=device)
        self.label_pixels = torch.zeros(n_concepts, dtype=torch.int64, device=device)
        shape = (n_null, n_units)
        self.null_intersection = torch.zeros((*shape, n_concepts), dtype=torch.int64, device=device)
        self.null_activation = torch.zeros((*shape, n_categories), dtype=torch.int64, device=device)
        folds = (n_folds, n_units)
        self.fold_intersection = torch.zeros((*folds, n_concepts), dtype=torch.int64, device=device)
        self.fold_activation = torch.zeros((*folds, n_categories), dtype=torch.int64, device=device)
        self.fold_label_pixels = torch.zeros(
            (n_folds, n_concepts), dtype=torch.int64, device=device
        )

    _COUNTS = ("intersection", "activation", "label_pixels", "null_intersection", "null_activation",
               "fold_intersection", "fold_activation", "fold_label_pixels")  # fmt: skip
    _FOLDS = _COUNTS[5:]

    @property
    def n_folds(self) -> int:
        return len(self.fold_label_pixels)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name).cpu() for name in self._COUNTS}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.device = getattr(self, "device", torch.device("cpu"))
        for name in self._COUNTS:
            if name in self._FOLDS and name not in state:  # a state of a tally without folds
                state = {**state, name: _no_folds(name, state)}
            setattr(self, name, state[name].to(self.device))

    def merge(self, other: ConceptTally) -> None:
        if other.n_folds != self.n_folds:
            raise ValueError(f"cannot merge tallies of {other.n_folds} and {self.n_folds} folds")
        for name in self._COUNTS:
            getattr(self, name).add_(getattr(other, name).to(self.device))

    def update(
        self,
        act: torch.Tensor,
        thresholds: torch.Tensor,
        labels: ImageLabels,
        partners: Sequence[ImageLabels] = (),
        fold: int | None = None,
    ) -> None:
        """Add one image: ``act`` is the layer's raw (units, h, w) map, on any device;
        ``partners`` are the null permutations' images for this one (their labels, same size);
        ``fold`` its fold, for a tally with folds."""
        folds = () if fold is None else [fold]
        batch = LabelBatch(
            [labels], [partners], len(self.label_pixels), self.device, folds, self.n_folds
        )
        self.update_batch(act.unsqueeze(0), thresholds, batch)

    def update_batch(self, acts: torch.Tensor, thresholds: torch.Tensor, batch: LabelBatch) -> None:
        """Add a batch: ``acts`` is the layer's raw (B, units, h, w) maps, ``batch`` the images'
        labels and their null partners', already on the device (one copy per batch, shared by
        the layers).

        The masks are each image's own, bit for bit as upsampling its whole map gives S; only
        windows of cell rows near a unit's threshold are upsampled, the batch's together
        (extract/upsample.py: bilinear upsampling cannot exceed the raw maximum by more than
        rounding). The counts of every image and partner are then added with one scatter per
        table: integer sums, so the order of the additions changes nothing."""
        device = self.device
        thresholds = thresholds.to(device)
        folded = self.n_folds > 0
        if folded and len(batch.folds) != len(acts):
            raise ValueError("a tally with folds needs each image's fold (LabelBatch folds)")
        self.label_pixels += batch.label_pixels
        if folded:
            self.fold_label_pixels += batch.fold_label_pixels
        names = [n for n in self._COUNTS if n not in ("label_pixels", "fold_label_pixels")]
        adds: dict[str, list[tuple[torch.Tensor, ...]]] = {n: [] for n in names}
        # one product per image gives the intersections with every concept present in it, then
        # with those of each null partner, and in the last (all-ones) column each mask's size.
        # Sums of 0/1 are exact in float32, so the extra columns change no real count.
        found = batch_label_counts(
            acts.to(device), thresholds, batch.size, [batch.onehot(j) for j in range(len(acts))]
        )
        for j, (units, counts) in enumerate(found):
            if units.numel() == 0:
                continue
            mask_sums = counts[:, -1:]
            start = 0
            for k, (present, annotated, image_concepts) in enumerate(batch.entries[j]):
                stop = start + len(present)
                null = () if k == 0 else (k - 1,)
                inter, act_name = (
                    ("intersection", "activation") if k == 0
                    else ("null_intersection", "null_activation")
                )  # fmt: skip
                image_cells = {
                    act_name: [_cells(null, units, annotated, mask_sums)],
                    inter: [
                        _cells(null, units, present, counts[:, start:stop]),
                        _cells(null, units, image_concepts, mask_sums),
                    ],
                }
                for name, parts in image_cells.items():
                    adds[name] += parts
                    if k == 0 and folded:  # the same cells, in the image's fold's table
                        fold = batch.folds[j]
                        adds["fold_" + name] += [
                            (torch.full_like(part[0], fold), *part) for part in parts
                        ]
                start = stop
        for name, cells in adds.items():
            if cells:
                index = [torch.cat(parts) for parts in zip(*cells, strict=True)]
                getattr(self, name).index_put_(tuple(index[:-1]), index[-1], accumulate=True)

    def iou(
        self, category_of: np.ndarray, null: int | None = None, fold: int | None = None
    ) -> np.ndarray:
        """IoU[u, c] = I / (A[u, cat(c)] + G[c] - I), 0 where the denominator is 0; of the
        ``null``-th null permutation, or of the images of fold ``fold`` alone, when given."""
        intersection, activation, pixels = self.intersection, self.activation, self.label_pixels
        if null is not None:
            intersection, activation = self.null_intersection[null], self.null_activation[null]
        if fold is not None:
            intersection, activation = self.fold_intersection[fold], self.fold_activation[fold]
            pixels = self.fold_label_pixels[fold]
        inter = intersection.cpu().numpy().astype(np.float64)
        act = activation.cpu().numpy()[:, category_of].astype(np.float64)
        denom = act + pixels.cpu().numpy()[None, :].astype(np.float64) - inter
        out = np.zeros_like(inter)
        np.divide(inter, denom, out=out, where=denom > 0)
        return out


def _no_folds(name: str, state: dict[str, torch.Tensor]) -> torch.Tensor:
    """The empty fold table ``name`` for a tally state that has none (0 folds)."""
    like = {"fold_intersection": "intersection", "fold_activation": "activation",
            "fold_label_pixels": "label_pixels"}[name]  # fmt: skip
    return state[like].new_zeros((0, *state[like].shape))


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
