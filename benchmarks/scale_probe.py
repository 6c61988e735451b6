"""A Broden-layout probe set of any size, generated fast, for the scale benchmark (not a test).

Each image is a background ("stuff": wall, floor, sky, ground, chosen by one of 8 scenes) with
one to three "things" (24 classes, ellipses or rectangles); the things of 6 classes have a top
and a bottom part. Three categories, 48 concepts:

- object (pixel level, every image): the 24 things, and the stuff behind them in 60% of images
  (unlabelled, 0, in the others), numbers 1-28;
- part (pixel level, only images with a thing that has parts): 12 parts, numbers 29-40;
- scene (image level, 80% of images): 8 scenes, numbers 41-48.

Label maps are ``label_size`` px (112, as Broden's); images are ``image_size`` px (28 by
default: the stand-in model of ``scale_model.py`` pools them to its 7 x 7 or 14 x 14 grid, so
larger images would only cost decoding time; the Broden layout allows label size != image size,
index.csv gives both). The image's colours follow its labels (a colour per thing class, per
scene, plus noise), so the stand-in's units correlate with concepts the way a network's do.

Generation is vectorised per chunk of ``CHUNK`` images, each chunk from its own seeded generator,
so the first n images are the same whatever the total: a probe generated for 300 images grows to
63,305 by generating the rest. PNGs are written with zlib level 1.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# Bump when the generated content changes: a cached probe set of another version is refused.
GENERATOR_VERSION = 1
CHUNK = 256
BRODEN_N = 63_305
CATEGORIES = ["object", "part", "scene"]
N_THINGS, N_STUFF, N_PART_OWNERS, N_SCENES = 24, 4, 6, 8
STUFF = ["wall", "floor", "sky", "ground"]
# label numbers: things 1-24, stuff 25-28, parts 29-40, scenes 41-48
FIRST_STUFF = N_THINGS + 1
FIRST_PART = FIRST_STUFF + N_STUFF
FIRST_SCENE = FIRST_PART + 2 * N_PART_OWNERS
MAX_OBJECTS = 3
FIXED = np.random.default_rng(20261130)
THING_RGB = FIXED.integers(30, 226, size=(N_THINGS, 3)).astype(np.float32)
SCENE_RGB = FIXED.integers(30, 226, size=(N_SCENES, 3)).astype(np.float32)


def concept_rows() -> list[tuple[int, str, str]]:
    """(number, name, category) of every concept, in label-number order."""
    rows = [(1 + t, f"thing-{t:02d}", "object") for t in range(N_THINGS)]
    rows += [(FIRST_STUFF + s, name, "object") for s, name in enumerate(STUFF)]
    for o in range(N_PART_OWNERS):
        rows += [(FIRST_PART + 2 * o, f"thing-{o:02d}-top", "part")]
        rows += [(FIRST_PART + 2 * o + 1, f"thing-{o:02d}-bottom", "part")]
    rows += [(FIRST_SCENE + s, f"scene-{s}", "scene") for s in range(N_SCENES)]
    return rows


@dataclass
class Chunk:
    """Images start .. start + len - 1 of the probe set, as arrays."""

    start: int
    images: np.ndarray  # (B, S, S, 3) uint8
    objects: np.ndarray | None  # (B, L, L) uint16 label numbers (None: images only)
    parts: np.ndarray | None  # (B, L, L) uint16
    scenes: np.ndarray  # (B,) label number, 0 when the image has no scene label


def _geometry(rng: np.random.Generator, b: int) -> dict[str, np.ndarray]:
    n_objects = rng.integers(1, MAX_OBJECTS + 1, size=b)
    return {
        "scene": rng.integers(0, N_SCENES, size=b),
        "stuff_labelled": rng.random(b) < 0.6,
        "scene_labelled": rng.random(b) < 0.8,
        "active": np.arange(MAX_OBJECTS)[None, :] < n_objects[:, None],
        "cls": rng.integers(0, N_THINGS, size=(b, MAX_OBJECTS)),
        "cx": rng.uniform(0.15, 0.85, size=(b, MAX_OBJECTS)),
        "cy": rng.uniform(0.15, 0.85, size=(b, MAX_OBJECTS)),
        "rx": rng.uniform(0.12, 0.35, size=(b, MAX_OBJECTS)),
        "ry": rng.uniform(0.12, 0.35, size=(b, MAX_OBJECTS)),
        "rect": rng.random((b, MAX_OBJECTS)) < 0.5,
        "gain": rng.uniform(0.7, 1.3, size=(b, 1, 1, 1)),
    }


def _rasterise(g: dict[str, np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """(thing slot map, part half map) on a size x size grid: slot -1 where no thing; later
    things cover earlier ones. half: 0 top, 1 bottom (of the covering thing)."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = c[None, :, None], c[None, None, :]
    b = len(g["scene"])
    slot = np.full((b, size, size), -1, dtype=np.int8)
    half = np.zeros((b, size, size), dtype=np.int8)
    for k in range(MAX_OBJECTS):
        dx = (x - g["cx"][:, k, None, None]) / g["rx"][:, k, None, None]
        dy = (y - g["cy"][:, k, None, None]) / g["ry"][:, k, None, None]
        ellipse = dx * dx + dy * dy <= 1.0
        rect = np.maximum(np.abs(dx), np.abs(dy)) <= 1.0
        inside = np.where(g["rect"][:, k, None, None], rect, ellipse)
        inside &= g["active"][:, k, None, None]
        slot[inside] = k
        half = np.where(inside, (dy > 0).astype(np.int8), half)
    return slot, half


def render_chunk(
    seed: int, chunk: int, image_size: int, label_size: int, labels: bool = True
) -> Chunk:
    """Chunk number ``chunk`` (images chunk * CHUNK ..): the same arrays for the same arguments."""
    rng = np.random.default_rng([seed, chunk])
    g = _geometry(rng, CHUNK)
    b = CHUNK
    rows = np.arange(b)[:, None, None]

    slot, _ = _rasterise(g, image_size)
    cls = np.take_along_axis(g["cls"], np.maximum(slot, 0).reshape(b, -1), axis=1).reshape(
        slot.shape
    )
    rgb = np.where((slot >= 0)[..., None], THING_RGB[cls], SCENE_RGB[g["scene"]][:, None, None, :])
    shade = np.linspace(-12, 12, image_size, dtype=np.float32)
    rgb = rgb * g["gain"] + shade[None, :, None, None] * (rows % 2 * 2 - 1)[..., None]
    rgb += rng.normal(0, 10, size=rgb.shape).astype(np.float32)
    images = np.clip(rgb, 0, 255).astype(np.uint8)

    scenes = np.where(g["scene_labelled"], FIRST_SCENE + g["scene"], 0)
    if not labels:
        return Chunk(chunk * CHUNK, images, None, None, scenes)
    slot, half = _rasterise(g, label_size)
    cls = np.take_along_axis(g["cls"], np.maximum(slot, 0).reshape(b, -1), axis=1).reshape(
        slot.shape
    )
    stuff = np.where(g["stuff_labelled"], FIRST_STUFF + g["scene"] % N_STUFF, 0)
    objects = np.where(slot >= 0, 1 + cls, stuff[:, None, None]).astype(np.uint16)
    has_parts = (slot >= 0) & (cls < N_PART_OWNERS)
    parts = np.where(has_parts, FIRST_PART + 2 * cls + half, 0).astype(np.uint16)
    return Chunk(chunk * CHUNK, images, objects, parts, scenes)


def _label_png(path: Path, numbers: np.ndarray) -> None:
    rgb = np.zeros((*numbers.shape, 3), dtype=np.uint8)
    rgb[..., 0] = numbers % 256
    rgb[..., 1] = numbers // 256
    Image.fromarray(rgb).save(path, compress_level=1)


def _write_chunk(root: Path, c: Chunk, first: int, last: int, s: int, ls: int) -> list[list]:
    """Write images first..last-1 of chunk c; their index.csv rows."""
    assert c.objects is not None and c.parts is not None
    rows = []
    for i in range(first, last):
        j = i - c.start
        folder = f"{i // 1000:03d}"
        (root / "images" / folder).mkdir(parents=True, exist_ok=True)
        base = f"{folder}/{i:06d}"
        Image.fromarray(c.images[j]).save(root / "images" / f"{base}.png", compress_level=1)
        _label_png(root / "images" / f"{base}_object.png", c.objects[j])
        part_cell = ""
        if c.parts[j].any():
            _label_png(root / "images" / f"{base}_part.png", c.parts[j])
            part_cell = f"{base}_part.png"
        scene_cell = str(int(c.scenes[j])) if c.scenes[j] else ""
        rows.append([f"{base}.png", "train", s, s, ls, ls, f"{base}_object.png", part_cell,
                     scene_cell])  # fmt: skip
    return rows


def _write_tables(root: Path) -> None:
    """label.csv, category.csv, c_<category>.csv: fixed (nominal frequency and coverage), so
    they do not change when the set grows; every concept belongs to one category only."""
    concepts = concept_rows()
    with (root / "label.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["number", "name", "category", "frequency", "coverage", "syns"])
        w.writerow([0, "-", "", 0, 0, ""])
        for number, name, category in concepts:
            w.writerow([number, name, f"{category}(1)", 1, 0.1, ""])
    with (root / "category.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "first", "last", "count", "frequency"])
        for category in CATEGORIES:
            numbers = [n for n, _, c in concepts if c == category]
            w.writerow([category, min(numbers), max(numbers), len(numbers), 1])
    for category in CATEGORIES:
        with (root / f"c_{category}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["code", "number", "name", "frequency", "coverage"])
            members = [(n, name) for n, name, c in concepts if c == category]
            for code, (number, name) in enumerate(members, start=1):
                w.writerow([code, number, name, 1, 0.1])


def _manifest_params(seed: int, image_size: int, label_size: int) -> dict:
    return {"generator": GENERATOR_VERSION, "seed": seed, "image_size": image_size,
            "label_size": label_size, "chunk": CHUNK}  # fmt: skip


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _disk_bytes(root: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of every file under root (symlinks not followed)."""
    apparent = allocated = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


def ensure_full(
    probe_dir: Path, n: int, seed: int = 0, image_size: int = 28, label_size: int = 112
) -> dict:
    """probe_dir/full holds at least n images: reused when its manifest matches (same
    generator, parameters and index.csv), extended when it holds fewer. Returns the manifest
    with this call's generation time and the set's disk size."""
    full = probe_dir / "full"
    manifest_path = probe_dir / "manifest.json"
    params = _manifest_params(seed, image_size, label_size)
    have = 0
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text())
        index = full / "index.csv"
        if {k: old.get(k) for k in params} != params:
            raise SystemExit(
                f"{probe_dir}: holds a probe set made with {old}, not {params}; "
                "delete it or give another --probe-dir"
            )
        if not index.is_file() or _sha(index) != old.get("index_sha256"):
            raise SystemExit(f"{index}: does not match {manifest_path}; delete {probe_dir}")
        have = int(old["n"])
    elif probe_dir.exists() and any(probe_dir.iterdir()):
        raise SystemExit(
            f"{probe_dir}: not empty and has no manifest.json; give another --probe-dir"
        )
    tic = time.perf_counter()
    if have < n:
        full.mkdir(parents=True, exist_ok=True)
        _write_tables(full)
        with (full / "index.csv").open("a" if have else "w", newline="") as fh:
            w = csv.writer(fh)
            if not have:
                w.writerow(["image", "split", "ih", "iw", "sh", "sw", *CATEGORIES])
            for chunk in range(have // CHUNK, (n + CHUNK - 1) // CHUNK):
                c = render_chunk(seed, chunk, image_size, label_size)
                first, last = max(have, c.start), min(n, c.start + CHUNK)
                w.writerows(_write_chunk(full, c, first, last, image_size, label_size))
        apparent, allocated = _disk_bytes(full)
        manifest = {**params, "n": n, "index_sha256": _sha(full / "index.csv"),
                    "apparent_bytes": apparent, "allocated_bytes": allocated}  # fmt: skip
        manifest_path.write_text(json.dumps(manifest, indent=1))
    else:
        manifest = json.loads(manifest_path.read_text())
    return {**manifest, "generated": max(0, n - have), "seconds": time.perf_counter() - tic}


def view(probe_dir: Path, n: int) -> Path:
    """A probe folder with the first n images of probe_dir/full: index.csv cut, every other
    file shared by symlink (its fingerprint is its own: index.csv differs)."""
    full = probe_dir / "full"
    out = probe_dir / f"n{n}"
    lines = (full / "index.csv").read_text().splitlines()
    if len(lines) - 1 < n:
        raise SystemExit(f"{full}: holds {len(lines) - 1} images, fewer than {n}")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    for f in full.iterdir():
        if f.name != "index.csv":
            (out / f.name).symlink_to(f.resolve())
    (out / "index.csv").write_text("\n".join(lines[: n + 1]) + "\n")
    return out
