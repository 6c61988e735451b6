"""The activation maps of each unit's top images, kept for the explorer's mask outlines.

The top images are only known at the end of pass 1, so the maps are taken in pass 3, which sees
every image's raw map again (from the cache or a second forward pass). For each image that is in
some unit's top list (this process's list: under torchrun each image belongs to one rank, and the
global top list is a subset of the union of the ranks' lists) it keeps, for those few units only:

- the raw map (the layer's own h x w, float32), and
- the mask ``S > T`` at label resolution, computed as the tally computes it: S upsampled from the
  layer's whole (1, C, h, w) map (extract/upsample.py), packed eight pixels to a byte.

The mask is stored, not only the map, because S of one unit's map alone can differ from the whole
map's in the last float32 bit for some shapes (upsample.py); so the app draws exactly the pixels
the IoU counted. Where one unit's map does reproduce S (checked per shape, below), upsampling the
stored map gives the same mask, which tests/test_top_maps.py checks on the demo.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from extract.upsample import kernel_threads, upsample

# (unit, probe image index) -> (raw map (h, w) float32, packed mask uint8, (sh, sw)); the tensors
# stay on the device the tally runs on until a checkpoint (state_dict) or the end (for_pairs)
MapRows = dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, tuple[int, int]]]


def subsets_exact(c: int, h: int, w: int, sh: int, sw: int, device: str = "cpu") -> bool:
    """Whether upsampling a few units' maps gives the whole map's values bit for bit for this
    shape (random maps; single units and small subsets), so the few needed units can be
    upsampled alone. Otherwise the whole map is upsampled and the units picked from it. Checked
    once per CPU thread count, as the upsampling plans are (PyTorch picks kernels by it)."""
    return _subsets_exact(c, h, w, sh, sw, device, kernel_threads(device))


@lru_cache(maxsize=64)
def _subsets_exact(c: int, h: int, w: int, sh: int, sw: int, device: str, threads: int) -> bool:
    generator = torch.Generator().manual_seed(1)
    act = (torch.randn((c, h, w), generator=generator) * 3).to(device)
    full = upsample(act.unsqueeze(0), (sh, sw))[0]
    subsets = [[0], [c - 1], [c // 2]]
    if c > 3:
        subsets.append(sorted(torch.randperm(c, generator=generator)[:3].tolist()))
    for units in subsets:
        index = torch.tensor(units, device=device)
        if not torch.equal(upsample(act[index].unsqueeze(0), (sh, sw))[0], full[index]):
            return False
    return True


def unit_masks(
    act: torch.Tensor, units: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """(len(units), sh, sw) bool: ``S_u > T_u`` of one image's (C, h, w) map, as the tally
    thresholds it (the whole map's upsampling, bit for bit)."""
    c, h, w = act.shape
    if subsets_exact(c, h, w, size[0], size[1], str(act.device)):
        up = upsample(act[units].unsqueeze(0), size)[0]
    else:
        up = upsample(act.unsqueeze(0), size)[0][units]
    return up > thresholds[units].view(-1, 1, 1)


def pack_mask(mask: np.ndarray) -> bytes:
    """A 2-D bool mask, row-major, eight pixels a byte (numpy.packbits, big bit order)."""
    return np.packbits(np.asarray(mask, dtype=bool).reshape(-1)).tobytes()


def pack_bits(masks: torch.Tensor) -> torch.Tensor:
    """(n, sh, sw) bool masks -> (n, ceil(sh * sw / 8)) uint8, each row as ``pack_mask`` packs
    it, computed where the masks are (a GPU keeps them until a checkpoint or the end)."""
    flat = masks.reshape(len(masks), -1).to(torch.uint8)
    pad = -flat.shape[1] % 8
    if pad:
        flat = torch.nn.functional.pad(flat, (0, pad))
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=masks.device)
    return (flat.view(len(masks), -1, 8) * weights).sum(dim=2, dtype=torch.uint8)


def unpack_mask(data: bytes, sh: int, sw: int) -> np.ndarray:
    """The (sh, sw) bool mask ``pack_mask`` packed."""
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=sh * sw)
    return bits.reshape(sh, sw).astype(bool)


class TopMaps:
    """Per layer, the maps and masks of the (unit, image) pairs in this process's top lists."""

    def __init__(self, top_images: dict[str, Any]) -> None:
        # image -> the units whose top list holds it (a few per image; a tensor to index with)
        self.need: dict[str, dict[int, torch.Tensor]] = {}
        for name, top in top_images.items():
            images = top.images.numpy()
            values = top.values.numpy()
            units, ranks = np.nonzero(np.isfinite(values) & (images >= 0))
            by_image: dict[int, list[int]] = {}
            for unit, image in zip(units.tolist(), images[units, ranks].tolist(), strict=True):
                by_image.setdefault(int(image), []).append(int(unit))
            self.need[name] = {i: torch.tensor(sorted(u)) for i, u in by_image.items()}
        self.rows: dict[str, MapRows] = {name: {} for name in top_images}

    def capture(
        self,
        name: str,
        indices: list[int],
        acts: torch.Tensor,
        thresholds: torch.Tensor,
        sizes: list[tuple[int, int]],
    ) -> None:
        """Keep the needed units' maps and masks of one batch (``acts``: (B, C, h, w) raw maps,
        ``sizes``: each image's label size)."""
        need = self.need[name]
        for j, image in enumerate(indices):
            units = need.get(image)
            if units is None:
                continue
            a = acts[j]
            masks = unit_masks(a, units.to(a.device), thresholds.to(a.device), sizes[j])
            maps, packed = a[units.to(a.device)].float(), pack_bits(masks)
            for k, unit in enumerate(units.tolist()):  # units: a host tensor, no device wait
                self.rows[name][(unit, image)] = (maps[k].clone(), packed[k].clone(), sizes[j])

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        """Per layer a few flat tensors (torch.load weights_only): the pairs, their label sizes,
        and every map and packed mask laid end to end. One small tensor per map and mask made
        a checkpoint of ResNet-50 layer4 (2,048 units x 5 top images) 20,480 tensors that took
        0.8 s to pickle, 5% of a 200-image run on the raw basis."""
        out = {}
        for name, rows in self.rows.items():
            keys = list(rows)
            maps = [rows[k][0].cpu() for k in keys]
            masks = [rows[k][1].cpu() for k in keys]
            out[name] = {
                "pairs": torch.tensor(keys, dtype=torch.int64).view(-1, 2),
                "sizes": torch.tensor([rows[k][2] for k in keys], dtype=torch.int64).view(-1, 2),
                "map_shapes": torch.tensor([m.shape for m in maps], dtype=torch.int64).view(-1, 2),
                "maps": torch.cat([m.reshape(-1) for m in maps]) if maps else torch.zeros(0),
                "mask_bytes": torch.tensor([len(m) for m in masks], dtype=torch.int64),
                "masks": torch.cat(masks) if masks else torch.zeros(0, dtype=torch.uint8),
            }
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, packed in state.items():
            shapes = [tuple(s) for s in packed["map_shapes"].tolist()]
            maps = packed["maps"].split([h * w for h, w in shapes])
            masks = packed["masks"].split(packed["mask_bytes"].tolist())
            self.rows[name] = {
                (u, i): (m.view(shape), p, (sh, sw))
                for (u, i), (sh, sw), m, p, shape in zip(
                    packed["pairs"].tolist(), packed["sizes"].tolist(), maps, masks, shapes,
                    strict=True,
                )
            }  # fmt: skip

    def for_pairs(self, name: str, pairs: set[tuple[int, int]]) -> MapRows:
        """The rows of the given (unit, image) pairs this process holds."""
        rows = self.rows[name]
        return {
            pair: (rows[pair][0].cpu(), rows[pair][1].cpu(), rows[pair][2])
            for pair in pairs
            if pair in rows
        }
