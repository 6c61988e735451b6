"""Small Broden-format probe sets and small models, made by the tests themselves.

The generator keeps its own label arrays, so the brute-force reference never reads the files
through the code under test.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

CATEGORIES = ["color", "object", "part", "scene"]
# number -> (name, {category: coverage}); 'food' is in object and part, primary object
LABELS: dict[int, tuple[str, dict[str, float]]] = {
    1: ("red", {"color": 0.3}),
    2: ("blue", {"color": 0.2}),
    3: ("disc", {"object": 0.2}),
    4: ("square", {"object": 0.1}),
    5: ("food", {"object": 0.09, "part": 0.02}),
    6: ("top-half", {"part": 0.1}),
    7: ("left-half", {"part": 0.1}),
    8: ("indoor", {"scene": 1.0}),
    9: ("outdoor", {"scene": 1.0}),
}
PIXEL_LABELS = {"color": [1, 2], "object": [3, 4, 5], "part": [6, 7, 5]}


@dataclass
class ProbeImage:
    name: str
    rgb: np.ndarray
    # category -> list of (sh, sw) label-number arrays (one per layer); scene -> image-level list
    maps: dict[str, list[np.ndarray]] = field(default_factory=dict)
    image_labels: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class ProbeSet:
    root: Path
    images: list[ProbeImage]
    size: int
    label_size: int


def write_png_labels(path: Path, numbers: np.ndarray) -> None:
    rgb = np.zeros((*numbers.shape, 3), dtype=np.uint8)
    rgb[..., 0] = numbers % 256
    rgb[..., 1] = numbers // 256
    Image.fromarray(rgb).save(path)


def make_probe(
    root: Path, n_images: int = 8, size: int = 24, label_size: int = 12, seed: int = 0
) -> ProbeSet:
    """Images with colour/object maps, two part layers, an image-level scene label; image 1 has
    no part annotation and image 2 no scene, image 3 no colour."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    images = []
    for i in range(n_images):
        name = f"img{i:03d}.jpg"
        rgb = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        img = ProbeImage(name=name.replace(".jpg", ".png"), rgb=rgb)
        Image.fromarray(rgb).save(root / "images" / img.name)
        for category, numbers in PIXEL_LABELS.items():
            if (category == "part" and i == 1) or (category == "color" and i == 3):
                continue
            n_layers = 2 if category == "part" else 1
            layers = []
            for _ in range(n_layers):
                arr = rng.choice([0, *numbers], size=(label_size, label_size)).astype(np.int64)
                layers.append(arr)
            img.maps[category] = layers
        if i != 2:
            img.image_labels["scene"] = [8 if i % 2 else 9]
        images.append(img)

    with (root / "index.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "split", "ih", "iw", "sh", "sw", *CATEGORIES])
        for i, img in enumerate(images):
            cells = []
            for category in CATEGORIES:
                if category in img.maps:
                    paths = []
                    for j, arr in enumerate(img.maps[category]):
                        rel = f"img{i:03d}_{category}_{j}.png"
                        write_png_labels(root / "images" / rel, arr)
                        paths.append(rel)
                    cells.append(";".join(paths))
                elif category in img.image_labels:
                    cells.append(";".join(str(n) for n in img.image_labels[category]))
                else:
                    cells.append("")
            w.writerow([img.name, "train", size, size, label_size, label_size, *cells])
    with (root / "label.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["number", "name", "category", "frequency", "coverage", "syns"])
        w.writerow([0, "-", "", 0, 0, ""])
        for number, (name, cats) in LABELS.items():
            field_text = ";".join(f"{c}({int(v * 100)})" for c, v in cats.items())
            w.writerow([number, name, field_text, 5, max(cats.values()), ""])
    with (root / "category.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "first", "last", "count", "frequency"])
        for category in CATEGORIES:
            w.writerow([category, 1, 9, 3, n_images])
    for category in CATEGORIES:
        with (root / f"c_{category}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["code", "number", "name", "frequency", "coverage"])
            code = 1
            for number, (name, cats) in LABELS.items():
                if category in cats:
                    w.writerow([code, number, name, 5, cats[category]])
                    code += 1
    return ProbeSet(root, images, size, label_size)


def primary_category(number: int) -> str:
    cats = LABELS[number][1]
    return max(cats, key=lambda c: (cats[c], -CATEGORIES.index(c)))


class SmallCNN(nn.Module):
    """Two conv stages; 'block1' keeps negative values (no ReLU), 'block2' ends in a ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.block1 = nn.Conv2d(6, 7, 3, padding=1)
        self.act = nn.ReLU()
        self.block2 = nn.Sequential(nn.Conv2d(7, 5, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.act(self.block1(self.stem(x))))
        return self.head(x.mean(dim=(2, 3)))


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN()


class NaNNet(SmallCNN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x * float("nan"))


def nan_cnn() -> nn.Module:
    torch.manual_seed(0)
    return NaNNet()


class Adversarial(nn.Module):
    """A layer ``units`` (6 x 6 maps of 24 x 24 images) whose channels are the bounded-memory
    quantile's hard cases (tests/test_extract_bounded.py): 0 sparse ReLU, 1 all zero, 2 negative
    only (no ReLU), 3 quantised (ties at the threshold), 4 zero except on bright images (the
    test makes only the last image bright), 5 the same constant everywhere, 6 smooth and dense."""

    def __init__(self) -> None:
        super().__init__()
        self.units = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.avg_pool2d(x, 4)  # (B, 3, 6, 6) of normalised pixels
        grey = pooled.mean(dim=1)
        channels = [
            torch.relu(pooled[:, 0] - 0.35),
            torch.zeros_like(grey),
            -torch.abs(pooled[:, 1]) - 1.0,
            torch.round(pooled[:, 2] * 3) / 3,
            torch.relu(grey - 2.0) * 10,
            torch.ones_like(grey),
            grey,
        ]
        return self.units(torch.stack(channels, dim=1)).mean(dim=(2, 3))


def adversarial() -> nn.Module:
    return Adversarial()
