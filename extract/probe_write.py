"""Writing probe sets in the Broden layout that extract.broden reads, all or nothing.

Every converter (``lce probe from``) and the segmenter (``lce probe segment``) produce the same
thing: images resized to ``size x size``, label maps resized to ``label_size x label_size`` by
nearest neighbour, label PNGs encoding the global label number as R + 256 G, and the tables
index.csv, label.csv, category.csv and c_<category>.csv. They write into a hidden sibling of the
output folder and rename it at the end, so a failure never leaves a half-written probe set under
the name a later ``lce extract --probe`` would read.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from base.errors import LceError
from base.named_files import not_regular

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


@dataclass(frozen=True)
class Label:
    """A concept of the probe set: its global label number (1..65535), name and category."""

    number: int
    name: str
    category: str


def write_label_png(path: Path, numbers: np.ndarray) -> None:
    """A label map of global label numbers as an RGB PNG: R = number % 256, G = number // 256."""
    numbers = np.asarray(numbers)
    if numbers.size and (numbers.min() < 0 or numbers.max() > 65535):
        raise ValueError("label numbers must lie in 0..65535")
    rgb = np.zeros((*numbers.shape, 3), dtype=np.uint8)
    rgb[..., 0] = numbers % 256
    rgb[..., 1] = numbers // 256
    Image.fromarray(rgb).save(path)


def nearest_indices(source: int, target: int) -> np.ndarray:
    """Source index sampled by each of ``target`` output pixels: the one under its centre.

    Pixel i of the output covers [i, i + 1) * source / target; its centre falls in source pixel
    floor((i + 0.5) * source / target). Integer arithmetic, so the result is exact and the same on
    every machine.
    """
    return ((2 * np.arange(target, dtype=np.int64) + 1) * source) // (2 * target)


def resize_nearest(labels: np.ndarray, size: int) -> np.ndarray:
    """A (H, W) label map resampled to (size, size) by nearest neighbour (no new values)."""
    rows = nearest_indices(labels.shape[0], size)
    cols = nearest_indices(labels.shape[1], size)
    return labels[rows[:, None], cols[None, :]]


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 resampled to (size, size) with PIL's bicubic filter (deterministic)."""
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))


def refuse_special(path: Path) -> None:
    """LceError naming ``path`` when it is a FIFO, device or folder: opening one would block
    or read what no dataset holds."""
    problem = not_regular(path)
    if problem:
        raise LceError(f"{path}: {problem}; refused")


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8, or LceError naming it."""
    refuse_special(path)
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise LceError(f"{path}: image not found") from None
    except Exception as exc:  # PIL raises many types for unreadable files
        raise LceError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None


def read_png_array(path: Path, what: str = "label PNG") -> tuple[np.ndarray, str]:
    """The raw pixel array of a PNG (palette indices for mode P) and its mode, or LceError."""
    refuse_special(path)
    try:
        with Image.open(path) as img:
            mode = img.mode
            array = np.asarray(img)
    except FileNotFoundError:
        raise LceError(f"{path}: {what} not found") from None
    except Exception as exc:
        raise LceError(f"{path}: cannot read {what} ({type(exc).__name__}: {exc})") from None
    return array, mode


def check_same_size(
    label_path: Path, labels: np.ndarray, image_path: Path, image: np.ndarray
) -> None:
    if labels.shape[:2] != image.shape[:2]:
        raise LceError(
            f"{label_path}: label map is {labels.shape[0]}x{labels.shape[1]}, "
            f"its image {image_path.name} is {image.shape[0]}x{image.shape[1]}"
        )


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), in sorted order; LceError when none."""
    if not folder.is_dir():
        raise LceError(f"{folder}: folder not found")
    found = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not found:
        raise LceError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return found


def check_sizes(size: int, label_size: int | None) -> int:
    """The label size (default: half the image size, as in Broden), after checking both."""
    if size < 8:
        raise LceError(f"--size {size}: expected at least 8 pixels")
    label = size // 2 if label_size is None else label_size
    if label < 1 or label > size:
        raise LceError(f"--label-size {label}: expected 1..{size} (the image size)")
    return label


@contextmanager
def staged(out: Path, keep_on_interrupt: bool = False) -> Iterator[Path]:
    """A hidden sibling folder to write into, renamed to ``out`` when the block succeeds.

    ``out`` must not exist (or be an empty folder). On an error the sibling is removed, so no
    output folder is left behind; with ``keep_on_interrupt`` a Ctrl+C keeps it for a resume (and
    an existing sibling is reused: the caller checks that it belongs to the same run).
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LceError(f"{out}: exists and is not an empty folder")
    stage = stage_path(out)
    if stage.exists() and not keep_on_interrupt:
        shutil.rmtree(stage)  # left by a killed run: its files must not mix with this one's
    stage.mkdir(parents=True, exist_ok=True)
    try:
        yield stage
    except KeyboardInterrupt:
        if not keep_on_interrupt:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if out.is_dir():
        out.rmdir()
    os.replace(stage, out)


def stage_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial")


def write_sample(
    stage: Path,
    name: str,
    image: np.ndarray,
    layers: dict[str, list[np.ndarray]],
    label_size: int,
    image_labels: dict[str, int] | None = None,
) -> dict:
    """Write one image and its label PNGs into ``stage/images``; return its index row.

    ``layers`` maps a category to its label-number maps (already label-sized); a category with no
    maps is left unannotated for this image. ``image_labels`` maps a category to one label number
    for the whole image (Broden's scene column): its cell is the number, and the label covers
    every label pixel. The row records each label's pixel count, which the tables need.
    """
    images = stage / "images"
    images.mkdir(exist_ok=True)
    file_name = f"{name}.png"
    Image.fromarray(image).save(images / file_name)
    cells: dict[str, str] = {}
    counts: dict[str, dict[str, int]] = {}
    for category, maps in layers.items():
        paths = []
        per: dict[str, int] = counts.setdefault(category, {})
        for j, numbers in enumerate(maps):
            rel = f"{name}_{category}_{j + 1}.png" if len(maps) > 1 else f"{name}_{category}.png"
            if numbers.shape != (label_size, label_size):
                raise ValueError(f"{rel}: label map is not {label_size}x{label_size}")
            write_label_png(images / rel, numbers)
            paths.append(rel)
            values, n = np.unique(numbers[numbers > 0], return_counts=True)
            for v, c in zip(values.tolist(), n.tolist(), strict=True):
                per[str(v)] = per.get(str(v), 0) + c
        cells[category] = ";".join(paths)
    for category, number in (image_labels or {}).items():
        cells[category] = str(number)
        per = counts.setdefault(category, {})
        per[str(number)] = per.get(str(number), 0) + label_size * label_size
    return {
        "image": file_name,
        "ih": int(image.shape[0]),
        "iw": int(image.shape[1]),
        "sh": label_size,
        "sw": label_size,
        "cells": cells,
        "counts": counts,
    }


def write_tables(
    stage: Path,
    categories: list[str],
    labels: list[Label],
    rows: list[dict],
    keep_unseen: bool = True,
) -> None:
    """index.csv, label.csv, category.csv and c_<category>.csv from the rows of write_sample.

    A label's frequency counts the images where it has pixels; its coverage is its pixels over all
    label pixels of the probe set. c_<category>.csv lists the labels with pixels in that category
    and those declared in it, so a label found in two categories (an ADE20K class that is both an
    object and a part) gets, in extract.broden, the one where it covers more as its primary one.
    Labels with no pixels are kept (stable numbering) unless ``keep_unseen`` is False.
    """
    if not rows:
        raise LceError(f"{stage}: no images to write")
    pixels: dict[tuple[int, str], int] = {}
    frequency: dict[tuple[int, str], int] = {}
    for row in rows:
        for category, per in row["counts"].items():
            for key, n in per.items():
                k = (int(key), category)
                pixels[k] = pixels.get(k, 0) + int(n)
                frequency[k] = frequency.get(k, 0) + 1

    def total_of(number: int, what: dict[tuple[int, str], int]) -> int:
        return sum(what.get((number, c), 0) for c in categories)

    total = sum(int(r["sh"]) * int(r["sw"]) for r in rows) or 1
    kept = [lab for lab in labels if keep_unseen or total_of(lab.number, pixels)]
    kept.sort(key=lambda lab: lab.number)
    in_category = {
        c: [lab for lab in kept if lab.category == c or (lab.number, c) in pixels]
        for c in categories
    }
    with (stage / "index.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "split", "ih", "iw", "sh", "sw", *categories])
        for row in rows:
            cells = [row["cells"].get(c, "") for c in categories]
            w.writerow([row["image"], "train", row["ih"], row["iw"], row["sh"], row["sw"], *cells])
    with (stage / "label.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["number", "name", "category", "frequency", "coverage", "syns"])
        w.writerow([0, "-", "", 0, 0, ""])
        for lab in kept:
            where = ";".join(
                f"{c}({frequency.get((lab.number, c), 0)})"
                for c in categories
                if lab in in_category[c]
            )
            f = total_of(lab.number, frequency)
            w.writerow([lab.number, lab.name, where, f, total_of(lab.number, pixels) / total, ""])
    with (stage / "category.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "first", "last", "count", "frequency"])
        for category in categories:
            numbers = [lab.number for lab in in_category[category]]
            annotated = sum(1 for r in rows if r["cells"].get(category))
            w.writerow(
                [
                    category,
                    min(numbers, default=0),
                    max(numbers, default=0),
                    len(numbers),
                    annotated,
                ]
            )
    for category in categories:
        with (stage / f"c_{category}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["code", "number", "name", "frequency", "coverage"])
            for code, lab in enumerate(in_category[category], start=1):
                k = (lab.number, category)
                w.writerow(
                    [code, lab.number, lab.name, frequency.get(k, 0), pixels.get(k, 0) / total]
                )


def write_probe(
    out: Path,
    categories: list[str],
    labels: list[Label],
    samples: Iterator[tuple[str, np.ndarray, dict[str, list[np.ndarray]]]],
    label_size: int,
    keep_unseen: bool,
) -> int:
    """Write every (name, image, layers) sample and the tables into ``out``, all or nothing.

    Returns the number of images. ``samples`` is consumed inside the staged folder, so an error
    raised while producing a sample (a bad source file) also leaves nothing behind.
    """
    with staged(out) as stage:
        rows = [write_sample(stage, *sample, label_size) for sample in samples]
        write_tables(stage, categories, labels, rows, keep_unseen)
    return len(rows)


def check_numbers(path: Path, ids: np.ndarray, known: set[int] | np.ndarray, where: str) -> None:
    """LceError naming ``path`` when a class id in ``ids`` is not in the class list."""
    present = np.unique(ids)
    known_arr = np.fromiter(known, dtype=np.int64) if isinstance(known, set) else known
    bad = present[~np.isin(present, known_arr)]
    if bad.size:
        shown = ", ".join(str(int(b)) for b in bad[:5])
        raise LceError(f"{path}: class id(s) {shown} not in {where}")
