"""What a probe set holds and what is wrong with it (``lce probe info``).

Unlike extract.broden.open_probe, which stops at the first problem because extraction must not
run on a broken probe set, this reads everything it can and lists every problem: missing or
unreadable images and label PNGs, label maps of the wrong size, label numbers not in label.csv,
categories of category.csv absent from index.csv, c_<category>.csv files of unknown categories.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from base.errors import LceError
from base.named_files import Folder
from extract.broden import FIXED_COLUMNS


@dataclass
class CategoryInfo:
    name: str
    concepts: int  # labels listed in c_<name>.csv
    images_annotated: int  # images whose index.csv cell for it is non-empty
    image_coverage: float  # images_annotated / images
    label_pixels: int  # non-zero label pixels in its label PNGs
    image_labels: int  # image-level labels (integer cells)
    concepts_occurring: int = 0  # distinct labels found in its label maps or image-level cells
    concept_pixels: dict[str, int] = field(default_factory=dict)  # concept -> label pixels
    concept_images: dict[str, int] = field(default_factory=dict)  # concept -> image-level labels
    never_occurring: list[str] = field(default_factory=list)  # in c_<name>.csv, never found


@dataclass
class ProbeInfo:
    path: str
    images: int
    image_sizes: dict[str, int]  # "HxW" -> images
    label_sizes: dict[str, int]
    labels: int  # label.csv rows other than 0
    categories: list[CategoryInfo]
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _rows(path: Path, problems: list[str]) -> list[dict[str, str]] | None:
    if not path.is_file():
        problems.append(f"{path.name}: missing")
        return None
    try:
        with path.open(newline="") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        problems.append(f"{path.name}: unreadable ({type(exc).__name__})")
        return None


@dataclass
class _Tally:
    """What the index rows add up to, per size and per category."""

    image_sizes: Counter[str] = field(default_factory=Counter)
    label_sizes: Counter[str] = field(default_factory=Counter)
    annotated: Counter[str] = field(default_factory=Counter)
    pixels: Counter[str] = field(default_factory=Counter)
    image_level: Counter[str] = field(default_factory=Counter)
    # category -> label number -> pixels (label maps) / images (image-level labels)
    number_pixels: dict[str, Counter[int]] = field(default_factory=dict)
    number_images: dict[str, Counter[int]] = field(default_factory=dict)


def probe_info(root: Path, max_problems: int = 200) -> ProbeInfo:
    """Count and check everything; LceError only when ``root`` is no folder at all."""
    root = Path(root)
    if not root.is_dir():
        raise LceError(f"{root}: probe set folder not found")
    problems: list[str] = []
    category_rows = _rows(root / "category.csv", problems) or []
    categories = [r.get("name", "") for r in category_rows]
    label_rows = _rows(root / "label.csv", problems) or []
    index_rows = _rows(root / "index.csv", problems) or []
    known = _known_labels(label_rows, problems)
    concepts, present, defined = _check_tables(root, categories, index_rows, problems)
    tally = _Tally()
    images = Folder(root / "images")
    for line, row in enumerate(index_rows, start=2):
        _check_row(images, line, row, present, known, tally, problems)
    n = len(index_rows)
    names = {int(r["number"]): r.get("name", "") for r in label_rows if _is_int(r.get("number"))}
    if len(problems) > max_problems:
        problems = [*problems[:max_problems], f"... and {len(problems) - max_problems} more"]
    return ProbeInfo(
        path=str(root),
        images=n,
        image_sizes=dict(tally.image_sizes),
        label_sizes=dict(tally.label_sizes),
        labels=sum(1 for r in label_rows if r.get("number") not in ("0", None)),
        categories=[
            _category_info(c, concepts.get(c, 0), defined.get(c, set()), tally, n, names)
            for c in categories
        ],
        problems=problems,
    )


def _category_info(
    name: str, n_concepts: int, defined: set[int], tally: _Tally, n: int, names: dict[int, str]
) -> CategoryInfo:
    """One category: the concepts it defines (c_<name>.csv) beside those that occur, with
    pixels per concept (largest first) and the defined concepts that never occur."""
    pixels = tally.number_pixels.get(name, Counter())
    images = tally.number_images.get(name, Counter())
    occurring = set(pixels) | set(images)

    def label(number: int) -> str:
        return names.get(number) or str(number)

    return CategoryInfo(
        name=name,
        concepts=n_concepts,
        images_annotated=tally.annotated[name],
        image_coverage=tally.annotated[name] / n if n else 0.0,
        label_pixels=tally.pixels[name],
        image_labels=tally.image_level[name],
        concepts_occurring=len(occurring),
        concept_pixels={label(k): v for k, v in sorted(pixels.items(), key=lambda kv: -kv[1])},
        concept_images={label(k): v for k, v in sorted(images.items(), key=lambda kv: -kv[1])},
        never_occurring=sorted(label(k) for k in defined - occurring),
    )


def _is_int(value: str | None) -> bool:
    try:
        int(value or "")
    except ValueError:
        return False
    return True


def _known_labels(label_rows: list[dict[str, str]], problems: list[str]) -> np.ndarray:
    """A lookup table over every 16-bit label number: True where label.csv lists it (and 0)."""
    known = np.zeros(65536, dtype=bool)
    known[0] = True
    for i, row in enumerate(label_rows, start=2):
        try:
            number = int(row.get("number", ""))
        except ValueError:
            problems.append(f"label.csv: line {i}: number {row.get('number')!r} is not an integer")
            continue
        if 0 <= number < 65536:
            known[number] = True
    return known


def _check_tables(
    root: Path, categories: list[str], index_rows: list[dict[str, str]], problems: list[str]
) -> tuple[dict[str, int], list[str], dict[str, set[int]]]:
    """Concepts per category (its c_<category>.csv rows), the categories index.csv has a
    column for, and the label numbers each category defines; every disagreement between the csv
    files is a problem."""
    concepts = {}
    defined: dict[str, set[int]] = {}
    for category in categories:
        rows = _rows(root / f"c_{category}.csv", problems)
        concepts[category] = len(rows) if rows is not None else 0
        defined[category] = {int(r["number"]) for r in rows or [] if _is_int(r.get("number"))}
    for extra in sorted(root.glob("c_*.csv")):
        if extra.stem[2:] not in categories:
            problems.append(f"{extra.name}: category {extra.stem[2:]!r} not in category.csv")
    header = list(index_rows[0]) if index_rows else []
    for column in FIXED_COLUMNS:
        if index_rows and column not in header:
            problems.append(f"index.csv: missing column {column}")
    present = [c for c in categories if not index_rows or c in header]
    for category in categories:
        if index_rows and category not in header:
            problems.append(f"index.csv: category {category!r} of category.csv has no column")
    return concepts, present, defined


def _check_row(
    images: Folder,
    line: int,
    row: dict[str, str],
    present: list[str],
    known: np.ndarray,
    tally: _Tally,
    problems: list[str],
) -> None:
    """One index.csv row: its sizes, its image, and every label cell of its categories."""
    name = row.get("image", "")
    try:
        ih, iw, sh, sw = (int(float(row.get(k) or "")) for k in ("ih", "iw", "sh", "sw"))
    except ValueError:
        problems.append(f"index.csv: line {line}: ih/iw/sh/sw are not integers")
        return
    tally.image_sizes[f"{ih}x{iw}"] += 1
    tally.label_sizes[f"{sh}x{sw}"] += 1
    shape = (
        None if _refused(images, name, line, problems) else _decode_shape(images, name, problems)
    )
    if shape is not None and shape != (ih, iw):
        problems.append(f"images/{name}: is {shape[0]}x{shape[1]}, index.csv says {ih}x{iw}")
    for category in present:
        cell = (row.get(category) or "").strip()
        if not cell:
            continue
        tally.annotated[category] += 1
        for token in filter(None, (t.strip() for t in cell.split(";"))):
            if token.isdigit():
                tally.image_level[category] += 1
                tally.number_images.setdefault(category, Counter())[int(token)] += 1
                if int(token) > 65535 or not known[int(token)]:
                    problems.append(
                        f"index.csv: line {line}: image-level label {token} not in label.csv"
                    )
                continue
            if _refused(images, token, line, problems):
                continue
            numbers = _decode_labels(images, token, problems)
            if numbers is None:
                continue
            if numbers.shape != (sh, sw):
                problems.append(
                    f"images/{token}: label map is {numbers.shape[0]}x{numbers.shape[1]}, "
                    f"index.csv says {sh}x{sw}"
                )
            unknown = np.unique(numbers[~known[numbers]])
            if unknown.size:
                shown = ", ".join(str(int(u)) for u in unknown[:5])
                problems.append(f"images/{token}: label number(s) {shown} not in label.csv")
            tally.pixels[category] += int(np.count_nonzero(numbers))
            found, counts = np.unique(numbers[numbers > 0], return_counts=True)
            per = tally.number_pixels.setdefault(category, Counter())
            for number, count in zip(found.tolist(), counts.tolist(), strict=True):
                per[int(number)] += int(count)


def _refused(images: Folder, name: str, line: int, problems: list[str]) -> bool:
    """A name that leaves images/ or is no plain file (a FIFO would block the count forever)
    is a problem, and is not opened."""
    problem = images.problem(name)
    if problem:
        problems.append(f"images/{name}: {problem} (index.csv line {line}); refused")
    return problem is not None


def _decode_shape(images: Folder, name: str, problems: list[str]) -> tuple[int, int] | None:
    try:
        with Image.open(images.path / name) as img:
            img.load()
            return img.height, img.width
    except FileNotFoundError:
        problems.append(f"images/{name}: image missing")
    except Exception as exc:
        problems.append(f"images/{name}: unreadable image ({type(exc).__name__})")
    return None


def _decode_labels(images: Folder, name: str, problems: list[str]) -> np.ndarray | None:
    try:
        with Image.open(images.path / name) as img:
            rgb = np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        problems.append(f"images/{name}: label map missing")
        return None
    except Exception as exc:
        problems.append(f"images/{name}: unreadable label map ({type(exc).__name__})")
        return None
    return rgb[..., 0].astype(np.int64) | (rgb[..., 1].astype(np.int64) << 8)
