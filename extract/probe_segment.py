"""Labelling any folder of images with a segmentation model (``lce probe segment``).

Dissect's approach: instead of human masks, a segmenter's per-pixel classes are the concept
labels. The classes file (CSV ``id,name,category``) lists every class the model outputs: id is the
output channel (0-based), category the probe category it belongs to; an empty category leaves the
class unlabelled (a background class). In the probe set the label number of class ``id`` is
``id + 1`` (0 means "no label" in Broden PNGs). Segmenters:

- a torchvision segmentation architecture (``deeplabv3_resnet50``, ``torchvision:fcn_resnet50``,
  ``lraspp_mobilenet_v3_large``, ...), built with as many classes as the classes file's largest id
  + 1 and loaded from ``--weights`` (a state dict; torchvision's own COCO-with-VOC-labels files
  work, their auxiliary head included); without --weights it is randomly initialised;
- ``module:function`` returning an ``nn.Module`` (its ``--weights``, if given, are loaded strictly).

Input: each image resized to size x size, RGB in [0, 1] normalised with ImageNet's mean and std
(what torchvision's segmentation weights expect). The model returns class scores (B, C, h, w),
or a dict with ``out``; scores are resized bilinearly to label_size x label_size when h, w differ
and the class is the arg-max. ``--colour-names`` adds a ``color`` category: every pixel of the
resized image is named with one of eleven basic colour terms (``colour_names``), and the names are
resized to label_size by nearest neighbour like every label map.

Resumable: work goes to a hidden sibling ``.OUT.partial`` with ``segment.json`` (the settings)
and ``rows.jsonl`` (one line per finished image). An interrupted run (Ctrl+C) keeps it, and the
same command continues after the last finished image; other settings are refused. A bad input
(unreadable image, class ids not in the classes file) removes it: no output folder is left.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (torch's convention)

from base.errors import LceError
from extract.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    load_state_dict_file,
    module_from_factory,
)
from extract.probe_write import (
    Label,
    check_sizes,
    list_images,
    read_rgb,
    resize_image,
    resize_nearest,
    stage_path,
    staged,
    write_sample,
    write_tables,
)

COLOUR_TERMS = (
    "black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown",
)  # fmt: skip


def colour_names(rgb: np.ndarray) -> np.ndarray:
    """Index into COLOUR_TERMS for every pixel of an RGB uint8 image.

    The rule, on HSV (hue h in degrees, saturation s and value v in [0, 1]), first match wins:
    black if v < 0.2; white if s < 0.2 and v > 0.8; grey if s < 0.2; pink if 290 <= h < 345, or if
    the hue is red (h < 15 or h >= 345) with s < 0.5; red for the other red hues; brown if
    15 <= h < 45 and v < 0.6, else orange there; yellow 45 <= h < 70; green 70 <= h < 170;
    blue 170 <= h < 260; purple 260 <= h < 290.
    """
    x = rgb.astype(np.float64) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=-1)
    c = v - x.min(axis=-1)
    s = np.where(v > 0, c / np.where(v > 0, v, 1), 0.0)
    safe = np.where(c > 0, c, 1)
    h = np.where(
        v == r,
        ((g - b) / safe) % 6,
        np.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    h = np.where(c > 0, h * 60.0, 0.0)
    red_hue = (h < 15) | (h >= 345)
    t = {name: i for i, name in enumerate(COLOUR_TERMS)}
    out = np.select(
        [
            v < 0.2,
            (s < 0.2) & (v > 0.8),
            s < 0.2,
            ((h >= 290) & (h < 345)) | (red_hue & (s < 0.5)),
            red_hue,
            (h < 45) & (v < 0.6),
            h < 45,
            h < 70,
            h < 170,
            h < 260,
        ],
        [
            t["black"],
            t["white"],
            t["grey"],
            t["pink"],
            t["red"],
            t["brown"],
            t["orange"],
            t["yellow"],
            t["green"],
            t["blue"],
        ],  # fmt: skip
        default=t["purple"],
    )
    return out.astype(np.int64)


@dataclass
class SegmentConfig:
    images: Path
    out: Path
    segmenter: str
    classes: Path
    weights: Path | None = None
    colour: bool = False
    size: int = 224
    label_size: int | None = None
    batch_size: int = 8
    device: str = "auto"
    progress: Callable[[int, int], None] | None = None


def build_segmenter(spec: str, weights: Path | None, n_classes: int) -> nn.Module:
    """The model a spec names, with its weights loaded, in eval mode."""

    import torchvision

    prefix, sep, rest = spec.partition(":")
    if not sep or prefix == "torchvision":
        arch = rest if sep else spec
        names = torchvision.models.list_models(module=torchvision.models.segmentation)
        if arch not in names:
            raise LceError(
                f"--segmenter {spec!r}: not a torchvision segmentation architecture "
                f"({', '.join(names)}) nor module:function"
            )
        state = load_state_dict_file(weights) if weights is not None else None
        aux = state is not None and any(k.startswith("aux_classifier.") for k in state)
        model = torchvision.models.get_model(
            arch, weights=None, weights_backbone=None, num_classes=n_classes, aux_loss=aux or None
        )
    else:
        model = module_from_factory(prefix, rest, f"--segmenter {spec!r}")
        state = load_state_dict_file(weights) if weights is not None else None
    if state is not None:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            detail = "; ".join(x.strip() for x in first[1:3]) or first[0]
            raise LceError(f"{weights}: does not match {spec} ({detail})") from None
    return model.eval()


def _settings(cfg: SegmentConfig, images: list[Path], label_size: int) -> dict:
    digest = hashlib.sha256()
    for path in images:
        digest.update(str(path.relative_to(cfg.images)).encode() + b"\0")
    return {
        "images": str(Path(cfg.images).resolve()),
        "image_list": digest.hexdigest()[:16],
        "segmenter": cfg.segmenter,
        "weights": str(Path(cfg.weights).resolve()) if cfg.weights else None,
        "classes": hashlib.sha256(Path(cfg.classes).read_bytes()).hexdigest()[:16],
        "colour": cfg.colour,
        "size": cfg.size,
        "label_size": label_size,
    }


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LceError(f"--device {name}: CUDA is not available")
    return torch.device(name)


@dataclass(frozen=True)
class _Vocabulary:
    """The classes file as the probe set sees it: segmenter class id -> label number."""

    class_ids: frozenset[int]  # the ids the classes file lists
    n_channels: int  # the segmenter's output channels (largest id + 1)
    lookup: np.ndarray  # class id -> probe label number (id + 1), 0 without a category
    labels: list[Label]
    categories: list[str]
    colour_base: int  # label number of the first colour term (with --colour-names)


def _vocabulary(cfg: SegmentConfig) -> _Vocabulary:
    from extract.probe_convert import read_classes

    classes = read_classes(Path(cfg.classes), first_id=0, allow_ignored=True)
    by_id = {lab.number: lab for lab in classes}
    n_channels = max(by_id) + 1
    # class id -> probe label number (id + 1), 0 for classes without a category
    lookup = np.array(
        [k + 1 if k in by_id and by_id[k].category else 0 for k in range(n_channels)],
        dtype=np.int64,
    )
    labels = [Label(k + 1, lab.name, lab.category) for k, lab in by_id.items() if lab.category]
    categories = list(dict.fromkeys(lab.category for lab in labels))
    colour_base = n_channels + 1
    if cfg.colour:
        if "color" in categories:
            raise LceError(f"{cfg.classes}: category 'color' is --colour-names's own")
        categories.append("color")
        labels += [Label(colour_base + i, t, "color") for i, t in enumerate(COLOUR_TERMS)]
    if colour_base + len(COLOUR_TERMS) > 65535:
        raise LceError(f"{cfg.classes}: class ids too large for 16-bit label numbers")
    return _Vocabulary(frozenset(by_id), n_channels, lookup, labels, categories, colour_base)


def run_segment(cfg: SegmentConfig) -> int:
    """Label every image of ``cfg.images`` with the segmenter; returns the number of images."""
    label_size = check_sizes(cfg.size, cfg.label_size)
    if cfg.batch_size < 1:
        raise LceError("--batch-size must be at least 1")
    images = list_images(Path(cfg.images))
    vocab = _vocabulary(cfg)
    model = build_segmenter(cfg.segmenter, cfg.weights, vocab.n_channels)
    device = _device(cfg.device)
    model.to(device)
    settings = _settings(cfg, images, label_size)
    out = Path(cfg.out)
    previous = stage_path(out) / "segment.json"
    if stage_path(out).is_dir() and not previous.is_file():
        shutil.rmtree(stage_path(out))  # not a resumable segment run (a killed converter's)
    if previous.is_file() and json.loads(previous.read_text()) != settings:
        # checked before staging: a mismatch must not delete the interrupted run's work
        raise LceError(
            f"{previous.parent}: an interrupted run with other settings; delete it to start over"
        )
    with staged(out, keep_on_interrupt=True) as stage:
        state_path, rows_path = stage / "segment.json", stage / "rows.jsonl"
        rows: list[dict] = []
        if state_path.is_file():
            if rows_path.is_file():
                rows = [json.loads(x) for x in rows_path.read_text().splitlines() if x.strip()]
        else:
            state_path.write_text(json.dumps(settings))
        done = len(rows)
        if cfg.progress:
            cfg.progress(done, len(images))
        for start in range(done, len(images), cfg.batch_size):
            batch = images[start : start + cfg.batch_size]
            new_rows = _segment_batch(cfg, model, device, vocab, label_size, batch, stage)
            with rows_path.open("a") as fh:
                fh.write("".join(json.dumps(r) + "\n" for r in new_rows))
            rows += new_rows
            if cfg.progress:
                cfg.progress(len(rows), len(images))
        write_tables(stage, vocab.categories, vocab.labels, rows)
        state_path.unlink()
        rows_path.unlink()
    return len(rows)


def _segment_batch(
    cfg: SegmentConfig,
    model: nn.Module,
    device: torch.device,
    vocab: _Vocabulary,
    label_size: int,
    batch: list[Path],
    stage: Path,
) -> list[dict]:
    """Segment one batch of images and write their samples into ``stage``; their index rows."""
    pixels = [resize_image(read_rgb(p), cfg.size) for p in batch]
    ids = _class_ids(cfg, model, device, vocab, label_size, np.stack(pixels))
    new_rows = []
    for path, image, k in zip(batch, pixels, ids, strict=True):
        numbers = vocab.lookup[k]
        layers = {
            c: [np.where(_in(numbers, vocab.labels, c), numbers, 0)]
            for c in vocab.categories
            if c != "color"
        }
        if cfg.colour:
            names = resize_nearest(colour_names(image), label_size)
            layers["color"] = [names + vocab.colour_base]
        name = "__".join(path.relative_to(cfg.images).with_suffix("").parts)
        new_rows.append(write_sample(stage, name, image, layers, label_size))
    return new_rows


def _class_ids(
    cfg: SegmentConfig,
    model: nn.Module,
    device: torch.device,
    vocab: _Vocabulary,
    label_size: int,
    pixels: np.ndarray,
) -> np.ndarray:
    """The arg-max class id of every label pixel, (B, label_size, label_size); one-line errors
    for a segmenter whose output does not fit the classes file."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    x = torch.from_numpy(pixels).to(device).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        scores = model((x - mean) / std)
    if isinstance(scores, dict):
        scores = scores["out"]
    if not isinstance(scores, torch.Tensor) or scores.ndim != 4:
        raise LceError(f"--segmenter {cfg.segmenter}: expected (B, C, h, w) class scores")
    if scores.shape[1] != vocab.n_channels:
        raise LceError(
            f"{cfg.classes}: lists class ids up to {vocab.n_channels - 1}, the segmenter "
            f"outputs {scores.shape[1]} classes (ids 0..{scores.shape[1] - 1})"
        )
    if scores.shape[-2:] != (label_size, label_size):
        scores = F.interpolate(
            scores.float(), size=(label_size, label_size), mode="bilinear", align_corners=False
        )
    ids = scores.argmax(dim=1).cpu().numpy()
    unlisted = sorted(set(np.unique(ids).tolist()) - vocab.class_ids)
    if unlisted:
        raise LceError(f"{cfg.classes}: class id(s) {unlisted[:5]} (segmenter output) not listed")
    return ids


def _in(numbers: np.ndarray, labels: list[Label], category: str) -> np.ndarray:
    return np.isin(numbers, [lab.number for lab in labels if lab.category == category])
