"""What the passes are fed: probe items from a loader, the layers' maps from the model, and a
progress bar. Small helpers shared by the passes (extract/passes.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

from base.errors import LceError
from extract.broden import ImageLabels, Probe, load_image, load_labels
from extract.config import NORMALIZATIONS
from extract.models import LayerTaps

if TYPE_CHECKING:
    from extract.config import ExtractConfig


class ProbeItem(NamedTuple):
    """One image of a batch: its probe index, its normalised pixels and/or its labels (each
    None when not asked for) and its null partners' labels, or the one-line error that reading
    it gave."""

    image_index: int
    image: torch.Tensor | None
    labels: ImageLabels | None
    error: str | None
    nulls: tuple[ImageLabels, ...] = ()


class ProbeItems(Dataset):
    """Images and/or label masks of a probe set; errors come back as text, not exceptions.

    DataLoader workers would wrap an exception in a multi-line traceback; returning the message
    keeps the user's error to one line (or lets --skip-bad count it).
    """

    def __init__(
        self,
        probe: Probe,
        images: bool,
        labels: bool,
        normalize: str,
        partners: Sequence[dict[int, int]] = (),
    ) -> None:
        self.probe = probe
        self.images = images
        self.labels = labels
        self.partners = partners  # the null permutations: image -> partner image
        self.category_of = probe.concept_category_index()
        mean, std = NORMALIZATIONS[normalize]
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.probe.records)

    def __getitem__(self, i: int) -> ProbeItem:
        record = self.probe.records[i]
        try:
            tensor = None
            if self.images:
                pixels = load_image(self.probe, record)
                tensor = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div_(255.0)
                tensor = (tensor - self.mean) / self.std
            labels = load_labels(self.probe, record, self.category_of) if self.labels else None
            nulls = tuple(
                load_labels(self.probe, self.probe.records[p[i]], self.category_of)
                for p in (self.partners if self.labels else ())
            )
        except LceError as exc:
            return ProbeItem(i, None, None, str(exc))
        return ProbeItem(i, tensor, labels, None, nulls)


def _collate(items: list[ProbeItem]) -> list[ProbeItem]:
    return items


def batches_for(probe: Probe, indices: list[int], batch_size: int) -> list[list[int]]:
    """Consecutive batches of images that share (ih, iw, sh, sw), so they stack and upsample together."""
    groups: dict[tuple[int, int, int, int], list[int]] = {}
    for i in indices:
        r = probe.records[i]
        groups.setdefault((r.ih, r.iw, r.sh, r.sw), []).append(i)
    out = []
    for members in groups.values():
        out += [members[s : s + batch_size] for s in range(0, len(members), batch_size)]
    return sorted(out, key=lambda b: b[0])


def loader(
    cfg: ExtractConfig,
    probe: Probe,
    batches: list[list[int]],
    images: bool,
    labels: bool,
    partners: Sequence[dict[int, int]] = (),
) -> DataLoader:
    """Batches of ``ProbeItem``; with ``labels`` and ``partners``, each item also carries its
    null partners' labels, decoded where its own are (a loader worker, or this process)."""
    dataset = ProbeItems(probe, images, labels, cfg.normalize, partners)
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=cfg.workers,
        collate_fn=_collate,
        persistent_workers=False,
    )


def label_loader(
    cfg: ExtractConfig,
    probe: Probe,
    batches: list[list[int]],
    device: torch.device,
    partners: Sequence[dict[int, int]] = (),
) -> DataLoader:
    """Labels only. On CPU they are decoded in this process: a loader worker would compete with
    the tally for the same cores (on two cores, a label-decoding worker beside the tally tripled
    its time, as OpenMP threads wait on each other). On GPU the tally leaves the cores free, so
    the workers decode, the null partners' labels too."""
    workers = cfg.workers if device.type != "cpu" else 0
    return loader(replace(cfg, workers=workers), probe, batches, False, True, partners)


def progress_bar(cfg: ExtractConfig, total: int, description: str, done: int = 0) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} img/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not cfg.progress,
    )
    task = progress.add_task(description, total=total, completed=done, rate="-")
    return progress, task


def forward(
    model: torch.nn.Module,
    taps: LayerTaps,
    images: torch.Tensor,
    layers: list[str],
    device: torch.device,
) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        taps.run(model, images.to(device, non_blocking=True))
    size = (images.shape[2], images.shape[3])
    return {name: taps.grid(name, size).float() for name in layers}


def check_finite(acts: torch.Tensor, layer: str, probe: Probe, indices: list[int]) -> None:
    finite = torch.isfinite(acts)
    if bool(finite.all()):
        return
    bad = torch.nonzero(~finite)[0].tolist()
    image = probe.records[indices[bad[0]]].image
    raise LceError(f"layer {layer!r}: non-finite activation on image {image}, unit {bad[1]}")


def readable(
    items: list[ProbeItem], cfg: ExtractConfig, skipped: list[str], probe: Probe
) -> list[ProbeItem]:
    """The items that read fine; the others are skipped (--skip-bad) or the run stops."""
    good = []
    for item in items:
        if item.error is None:
            good.append(item)
        elif cfg.skip_bad:
            if probe.records[item.image_index].image not in skipped:
                skipped.append(probe.records[item.image_index].image)
        else:
            raise LceError(item.error)
    return good
