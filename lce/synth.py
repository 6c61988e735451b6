"""A procedural concept world, written as a Broden-format probe set.

Every image is a background scene with one to three objects. An object has a shape, a colour and
a material (texture), and its halves are parts. The generator draws images and label maps from
one geometric description, so every label pixel is known exactly. The same scenes (another seed)
train the demo's model zoo and make its downstream tasks.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from extract.probe_write import Label, staged, write_sample, write_tables

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 160, 60),
    "blue": (45, 75, 215),
    "yellow": (235, 210, 45),
    "cyan": (45, 205, 210),
    "magenta": (205, 50, 195),
    "orange": (240, 135, 30),
    "purple": (115, 50, 165),
}
MATERIALS = ["plain", "stripes", "checks", "dots", "noise"]
SHAPES = ["disc", "square", "triangle", "star", "ring", "cross"]
PARTS_VERTICAL = ["top-half", "bottom-half"]  # part layer 1
PARTS_HORIZONTAL = ["left-half", "right-half"]  # part layer 2
SCENES = ["sky", "grass", "indoor", "sand"]
CATEGORIES = ["color", "material", "object", "part", "scene"]


def _numbered() -> dict[str, tuple[int, str]]:
    """name -> (label number, category); numbers are 1-based and global, as in Broden."""
    groups = [
        ("color", list(COLORS)),
        ("material", MATERIALS),
        ("object", SHAPES),
        ("part", PARTS_VERTICAL + PARTS_HORIZONTAL),
        ("scene", SCENES),
    ]
    out: dict[str, tuple[int, str]] = {}
    for category, names in groups:
        for name in names:
            out[name] = (len(out) + 1, category)
    return out


LABELS = _numbered()


@dataclass(frozen=True)
class ObjectSpec:
    shape: str
    color: str
    material: str
    cx: float  # centre, as a fraction of the image width / height
    cy: float
    r: float  # radius, as a fraction of the image size


@dataclass(frozen=True)
class SceneSpec:
    scene: str
    objects: tuple[ObjectSpec, ...]
    annotate: tuple[str, ...]  # categories this image's index row annotates
    seed: int  # for texture noise

    @property
    def main(self) -> ObjectSpec:
        """The largest object: the one the supervised objectives and tasks ask about."""
        return max(self.objects, key=lambda o: o.r)


def sample_scene(rng: np.random.Generator, unannotated: bool = True) -> SceneSpec:
    objects = []
    for _ in range(int(rng.integers(1, 4))):
        r = float(rng.uniform(0.14, 0.3))
        objects.append(
            ObjectSpec(
                shape=str(rng.choice(SHAPES)),
                color=str(rng.choice(list(COLORS))),
                material=str(rng.choice(MATERIALS)),
                cx=float(rng.uniform(r, 1 - r)),
                cy=float(rng.uniform(r, 1 - r)),
                r=r,
            )
        )
    annotate = list(CATEGORIES)
    if unannotated:
        # as in Broden, some images leave a category unannotated
        for category, p in (("material", 0.15), ("part", 0.15), ("scene", 0.1), ("color", 0.05)):
            if rng.random() < p:
                annotate.remove(category)
    return SceneSpec(
        scene=str(rng.choice(SCENES)),
        objects=tuple(objects),
        annotate=tuple(annotate),
        seed=int(rng.integers(0, 2**31 - 1)),
    )


def inside(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether points (x, y), in object radii from the centre (y down), are in the shape."""
    rho = np.hypot(x, y)
    if shape == "disc":
        return rho <= 1.0
    if shape == "square":
        return (np.abs(x) <= 0.85) & (np.abs(y) <= 0.85)
    if shape == "triangle":
        return (y >= -0.9) & (y <= 0.8) & (np.abs(x) <= 0.95 * (y + 0.9) / 1.7)
    if shape == "star":
        theta = np.arctan2(y, x)
        return rho <= 0.58 + 0.4 * np.cos(5 * (theta + math.pi / 2))
    if shape == "ring":
        return (rho <= 1.0) & (rho >= 0.55)
    if shape == "cross":
        return ((np.abs(x) <= 0.3) & (np.abs(y) <= 1.0)) | ((np.abs(y) <= 0.3) & (np.abs(x) <= 1.0))
    raise ValueError(f"unknown shape {shape!r}")


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres as fractions of the image, (row, column) order."""
    centres = (np.arange(size) + 0.5) / size
    return np.meshgrid(centres, centres)  # x (columns), y (rows)


def _background(scene: str, size: int, rng: np.random.Generator) -> np.ndarray:
    gx, gy = _grid(size)
    if scene == "sky":
        top, bottom = np.array([120, 170, 235]), np.array([205, 225, 250])
        img = top + (bottom - top) * gy[..., None]
    elif scene == "grass":
        img = np.array([70, 135, 55]) * (0.8 + 0.4 * rng.random((size, size, 1)))
    elif scene == "indoor":
        img = np.full((size, size, 3), 150.0) + 25.0 * (np.floor(gy * 8) % 2)[..., None]
    elif scene == "sand":
        img = np.array([215, 195, 145]) * (0.9 + 0.1 * np.sin(gx * 40 + gy * 13))[..., None]
    else:
        raise ValueError(f"unknown scene {scene!r}")
    return img


def _texture(material: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness factor of a material at object coordinates (u, v), in radii."""
    if material == "plain":
        return np.ones_like(u)
    if material == "stripes":
        return np.where(np.floor((u + v) * 2.2) % 2 == 0, 1.0, 0.45)
    if material == "checks":
        return np.where((np.floor(u * 2.5) + np.floor(v * 2.5)) % 2 == 0, 1.0, 0.45)
    if material == "dots":
        fu, fv = (u * 2.5) % 1 - 0.5, (v * 2.5) % 1 - 0.5
        return np.where(np.hypot(fu, fv) < 0.28, 0.4, 1.0)
    if material == "noise":
        return 0.55 + 0.45 * rng.random(u.shape)
    raise ValueError(f"unknown material {material!r}")


def render_image(spec: SceneSpec, size: int) -> np.ndarray:
    """RGB uint8 (size, size, 3)."""
    rng = np.random.default_rng(spec.seed)
    img = _background(spec.scene, size, rng)
    gx, gy = _grid(size)
    for obj in spec.objects:
        u, v = (gx - obj.cx) / obj.r, (gy - obj.cy) / obj.r
        mask = inside(obj.shape, u, v)
        shade = _texture(obj.material, u, v, rng)
        colour = np.array(COLORS[obj.color], dtype=np.float64)
        img = np.where(mask[..., None], colour * shade[..., None], img)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def render_labels(spec: SceneSpec, size: int) -> dict[str, list[np.ndarray]]:
    """Label-number maps (size, size) per category; part has two layers. Later objects occlude."""
    gx, gy = _grid(size)
    maps = {
        "color": [np.zeros((size, size), np.int64)],
        "material": [np.zeros((size, size), np.int64)],
        "object": [np.zeros((size, size), np.int64)],
        "part": [np.zeros((size, size), np.int64), np.zeros((size, size), np.int64)],
    }
    for obj in spec.objects:
        u, v = (gx - obj.cx) / obj.r, (gy - obj.cy) / obj.r
        mask = inside(obj.shape, u, v)
        maps["color"][0][mask] = LABELS[obj.color][0]
        maps["material"][0][mask] = LABELS[obj.material][0]
        maps["object"][0][mask] = LABELS[obj.shape][0]
        top = LABELS["top-half"][0]
        maps["part"][0][mask] = np.where(v[mask] < 0, top, LABELS["bottom-half"][0])
        maps["part"][1][mask] = np.where(
            u[mask] < 0, LABELS["left-half"][0], LABELS["right-half"][0]
        )
    return maps


def write_probe(out: Path, n: int = 400, size: int = 64, seed: int = 7) -> dict[str, int]:
    """Write the probe set; returns the pixel count of every label (the intended tallies).

    Deterministic for (n, size, seed). Written all or nothing through ``extract.probe_write``
    (the same files and tables as ``lce probe from``), into ``out``, which must not exist or be
    empty; ``specs.jsonl`` beside index.csv keeps each image's description.
    """
    label_size = size // 2
    rng = np.random.default_rng(seed)
    rows = []
    with staged(Path(out)) as stage, (stage / "specs.jsonl").open("w") as specs:
        for i in range(n):
            spec = sample_scene(rng)
            maps = render_labels(spec, label_size)
            layers = {c: maps[c] for c in CATEGORIES if c in spec.annotate and c in maps}
            scene = {"scene": LABELS[spec.scene][0]} if "scene" in spec.annotate else {}
            image = render_image(spec, size)
            rows.append(write_sample(stage, f"synth_{i:05d}", image, layers, label_size, scene))
            specs.write(json.dumps(asdict(spec)) + "\n")
        labels = [Label(number, name, category) for name, (number, category) in LABELS.items()]
        write_tables(stage, CATEGORIES, labels, rows)
    name_of = {number: name for name, (number, _) in LABELS.items()}
    counts = dict.fromkeys(LABELS, 0)
    for row in rows:
        for per in row["counts"].values():
            for number, pixels in per.items():
                counts[name_of[int(number)]] += pixels
    return counts


def read_specs(probe: Path) -> list[SceneSpec]:
    """The generator's own description of each probe image (specs.jsonl beside index.csv)."""
    specs = []
    for line in (Path(probe) / "specs.jsonl").read_text().splitlines():
        raw = json.loads(line)
        raw["objects"] = tuple(ObjectSpec(**o) for o in raw["objects"])
        raw["annotate"] = tuple(raw["annotate"])
        specs.append(SceneSpec(**raw))
    return specs
