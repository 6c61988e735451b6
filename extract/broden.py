"""Reader for probe sets in the Broden layout of NetDissect (and lce's synthetic probe sets).

index.csv (image, split, ih, iw, sh, sw, one column per category: ';'-separated PNG paths or
integer image-level labels), label.csv, category.csv, c_<category>.csv, images under images/.
Label PNGs encode the global label number as R + 256 * G.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from base.errors import LceError
from base.named_files import Folder

FIXED_COLUMNS = ("image", "split", "ih", "iw", "sh", "sw")


@dataclass(frozen=True)
class Concept:
    number: int
    name: str
    category: str  # primary category: the largest coverage among the c_<category>.csv files
    frequency: int
    coverage: float


@dataclass(frozen=True)
class Record:
    """One row of index.csv."""

    image: str
    ih: int
    iw: int
    sh: int
    sw: int
    cells: dict[str, str]  # category -> raw cell ('' when the image does not annotate it)
    row: int = 0  # its line in index.csv (the header is line 1), for messages


@dataclass
class Probe:
    root: Path
    categories: list[str]
    concepts: list[Concept]
    records: list[Record]
    fingerprint: str
    number_to_index: dict[int, int] = field(default_factory=dict)

    # lookup tables derived from concepts (not compared or printed: 65536 entries each)
    known_numbers: np.ndarray = field(
        default_factory=lambda: np.zeros(0, dtype=bool), repr=False, compare=False
    )
    _by_category: dict[int, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    images: Folder = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.images = Folder(self.root / "images")
        self.number_to_index = {c.number: i for i, c in enumerate(self.concepts)}
        # every uint16 label number: is it 0 (no label) or a concept of label.csv?
        self.known_numbers = np.zeros(65536, dtype=bool)
        self.known_numbers[0] = True
        self.known_numbers[[n for n in self.number_to_index if 0 <= n < 65536]] = True

    def category_lookup(self, k: int) -> np.ndarray:
        """uint16 label number -> dense concept index if the concept's primary category is the
        k-th, else -1 (a label counts only under its primary category)."""
        if k not in self._by_category:
            table = np.full(65536, -1, dtype=np.int32)
            position = self.categories[k]
            for number, index in self.number_to_index.items():
                if 0 <= number < 65536 and self.concepts[index].category == position:
                    table[number] = index
            self._by_category[k] = table
        return self._by_category[k]

    @property
    def name(self) -> str:
        return self.root.name

    def concept_category_index(self) -> np.ndarray:
        """For each concept (dense index), the index of its primary category."""
        position = {c: i for i, c in enumerate(self.categories)}
        return np.array([position[c.category] for c in self.concepts], dtype=np.int64)


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise LceError(f"{path}: probe set file not found")
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _int(value: str, path: Path, row: int, column: str) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise LceError(f"{path}: row {row}: {column} is {value!r}, expected an integer") from None


def open_probe(root: Path) -> Probe:
    """Read the probe set's tables (not its images) and check them against each other."""
    root = Path(root)
    if not root.is_dir():
        raise LceError(f"{root}: probe set folder not found")
    digest = hashlib.sha256()
    category_rows = _read_csv(root / "category.csv")
    categories = [r["name"] for r in category_rows]
    label_rows = _read_csv(root / "label.csv")
    index_path = root / "index.csv"
    index_rows = _read_csv(index_path)
    for name in ["category.csv", "label.csv", "index.csv"] + [f"c_{c}.csv" for c in categories]:
        if (root / name).is_file():
            digest.update(name.encode() + b"\0" + (root / name).read_bytes())

    coverage: dict[int, dict[str, float]] = {}
    for category in categories:
        path = root / f"c_{category}.csv"
        if not path.is_file():
            continue
        for i, row in enumerate(_read_csv(path), start=2):
            number = _int(row["number"], path, i, "number")
            coverage.setdefault(number, {})[category] = float(row.get("coverage") or 0)

    concepts = []
    for i, row in enumerate(label_rows, start=2):
        number = _int(row["number"], root / "label.csv", i, "number")
        if number == 0:
            continue  # 0 is "no label" in the PNGs
        primary = _primary_category(number, row.get("category", ""), coverage, categories)
        if primary is None:
            continue  # a label no category uses cannot be a concept
        concepts.append(
            Concept(
                number=number,
                name=row["name"],
                category=primary,
                frequency=_int(row.get("frequency") or "0", root / "label.csv", i, "frequency"),
                coverage=float(row.get("coverage") or 0),
            )
        )

    records = []
    if index_rows:
        missing = [c for c in (*FIXED_COLUMNS, *categories) if c not in index_rows[0]]
        if missing:
            raise LceError(f"{index_path}: missing column(s) {', '.join(missing)}")
    for i, row in enumerate(index_rows, start=2):
        records.append(
            Record(
                image=row["image"],
                ih=_int(row["ih"], index_path, i, "ih"),
                iw=_int(row["iw"], index_path, i, "iw"),
                sh=_int(row["sh"], index_path, i, "sh"),
                sw=_int(row["sw"], index_path, i, "sw"),
                cells={c: (row.get(c) or "").strip() for c in categories},
                row=i,
            )
        )
    if not records:
        raise LceError(f"{index_path}: no images")
    return Probe(root, categories, concepts, records, digest.hexdigest()[:16])


PROBE_FILES = ("index.csv", "label.csv", "category.csv")


def describe(probe: Probe) -> dict[str, Any]:
    """What a probe set is, in terms a person can compare: its image count, its label sizes and
    a sha256 (16 hex digits) per table file. Recorded with every run, so a study mismatch can
    say what differs instead of showing two fingerprints."""
    sizes = sorted({f"{r.sh}x{r.sw}" for r in probe.records})
    files = [*PROBE_FILES, *(f"c_{c}.csv" for c in probe.categories)]
    return {
        "images": len(probe.records),
        "label_sizes": sizes,
        "sha256": {
            name: hashlib.sha256((probe.root / name).read_bytes()).hexdigest()[:16]
            for name in files
            if (probe.root / name).is_file()
        },
    }


def describe_difference(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """Each way two ``describe`` results differ, as 'N images (lake has M)' and the like."""
    out = []
    if new.get("images") != old.get("images"):
        out.append(f"{new.get('images')} images (lake has {old.get('images')})")
    if new.get("label_sizes") != old.get("label_sizes"):
        show = ", ".join
        out.append(
            f"label size {show(new.get('label_sizes', []))} "
            f"(lake has {show(old.get('label_sizes', []))})"
        )
    ours, theirs = new.get("sha256", {}), old.get("sha256", {})
    for name in sorted(set(ours) | set(theirs), key=lambda n: (n not in PROBE_FILES, n)):
        if ours.get(name) != theirs.get(name):
            out.append(
                f"{name} sha256 {ours.get(name, 'absent')} (lake has {theirs.get(name, 'absent')})"
            )
    return out


def _primary_category(
    number: int, field_text: str, coverage: dict[int, dict[str, float]], categories: list[str]
) -> str | None:
    """Largest coverage among c_<category>.csv; ties go to the earlier category in category.csv.

    Without c_ files, label.csv's 'category' field ('object(12);part(3)') decides by its counts.
    """
    per = coverage.get(number)
    if per:
        return max(per, key=lambda c: (per[c], -categories.index(c)))
    best: tuple[float, int, str] | None = None
    for part in filter(None, (p.strip() for p in field_text.split(";"))):
        name, _, count = part.partition("(")
        name = name.strip()
        if name not in categories:
            continue
        value = float(count.rstrip(")") or 0)
        key = (value, -categories.index(name), name)
        best = key if best is None or key > best else best
    return best[2] if best else None


def probe_file(probe: Probe, record: Record, name: str) -> Path:
    """The file ``name`` of the record's row, once ``base.named_files`` has found it inside
    ``images/`` and no FIFO or device (either would be read silently or block); else LceError
    naming the file and the row."""
    problem = probe.images.problem(name)
    if problem:
        raise LceError(
            f"{probe.images.path / name}: {problem} (index.csv line {record.row}); refused"
        )
    return probe.images.path / name


def load_image(probe: Probe, record: Record) -> np.ndarray:
    """RGB uint8 (ih, iw, 3) as stored, or LceError naming the file."""
    path = probe_file(probe, record, record.image)
    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise LceError(f"{path}: image not found") from None
    except Exception as exc:  # PIL raises many types for corrupt files
        raise LceError(f"{path}: cannot decode image ({type(exc).__name__})") from None
    if array.shape[:2] != (record.ih, record.iw):
        raise LceError(
            f"{path}: image is {array.shape[0]}x{array.shape[1]}, "
            f"index.csv says {record.ih}x{record.iw}"
        )
    return array


def load_label_map(probe: Probe, record: Record, relative: str) -> np.ndarray:
    """Global label numbers (sh, sw) uint16 from one label PNG, or LceError naming the file."""
    path = probe_file(probe, record, relative)
    try:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise LceError(f"{path}: label map not found") from None
    except Exception as exc:
        raise LceError(f"{path}: cannot decode label map ({type(exc).__name__})") from None
    if rgb.shape[:2] != (record.sh, record.sw):
        raise LceError(
            f"{path}: label map is {rgb.shape[0]}x{rgb.shape[1]}, "
            f"expected sh x sw = {record.sh}x{record.sw} from index.csv"
        )
    return rgb[:, :, 0] | (rgb[:, :, 1].astype(np.uint16) << 8)  # R + 256 G


@dataclass
class ImageLabels:
    """One image's concept masks, reduced to what the tally needs.

    present: dense indices of the concepts with a pixel mask in this image (each under its
    primary category, all layers of that category united). bits: the (len(present) + 1, sh * sw)
    present-concept x pixel matrix, bit-packed along pixels, with a last all-ones column so the
    tally's one matrix product also gives each unit's mask size; packed, it costs a few KB to pass
    from a loader worker. pixel_counts: mask pixels of each present
    concept. image_concepts: dense indices of image-level labels (the whole image is the mask).
    annotated: per category, whether the image's cell is non-empty.
    """

    present: np.ndarray
    bits: np.ndarray
    pixel_counts: np.ndarray
    image_concepts: np.ndarray
    annotated: np.ndarray
    size: tuple[int, int]

    def onehot(self) -> np.ndarray:
        """The unpacked (sh * sw, len(present) + 1) uint8 matrix (a transposed view)."""
        return np.unpackbits(self.bits, axis=1, count=self.size[0] * self.size[1]).T


def load_labels(probe: Probe, record: Record, category_of: np.ndarray) -> ImageLabels:
    n_pixels = record.sh * record.sw
    n_concepts = len(probe.concepts)
    layers: list[tuple[np.ndarray, np.ndarray]] = []  # (pixels, dense concept), per label PNG
    image_level: list[int] = []
    annotated = np.zeros(len(probe.categories), dtype=bool)
    for k, category in enumerate(probe.categories):
        cell = record.cells[category]
        if not cell:
            continue
        annotated[k] = True
        for token in filter(None, (t.strip() for t in cell.split(";"))):
            if token.isdigit():
                number = int(token)
                dense = probe.number_to_index.get(number)
                if dense is None:
                    raise LceError(
                        f"{probe.root / 'index.csv'}: image {record.image}: image-level label "
                        f"{number} in column {category} is not in label.csv"
                    )
                if category_of[dense] == k:
                    image_level.append(dense)
                continue
            flat = load_label_map(probe, record, token).reshape(-1)
            if not probe.known_numbers[flat].all():
                number = int(flat[np.argmin(probe.known_numbers[flat])])
                raise LceError(
                    f"{probe.root / 'images' / token}: label number {number} is not in label.csv"
                )
            dense_map = probe.category_lookup(k)[flat]
            pixels = np.flatnonzero(dense_map >= 0)
            layers.append((pixels, dense_map[pixels].astype(np.int64)))
    seen = np.zeros(n_concepts, dtype=bool)
    for _, ids in layers:
        seen[ids] = True
    present = np.flatnonzero(seen)
    local = np.zeros(n_concepts, dtype=np.int64)
    local[present] = np.arange(present.size)
    # built concept-major so that packing runs along contiguous pixels; a concept in two layers
    # of a category is one mask (assignment unites)
    onehot_t = np.zeros((present.size + 1, n_pixels), dtype=np.uint8)
    if layers:
        flat_index = np.concatenate([local[ids] * n_pixels + pixels for pixels, ids in layers])
        onehot_t.reshape(-1)[flat_index] = 1
    onehot_t[-1] = 1
    return ImageLabels(
        present=present,
        bits=np.packbits(onehot_t, axis=1),
        pixel_counts=onehot_t[:-1].sum(axis=1, dtype=np.int64),
        image_concepts=np.unique(np.array(image_level, dtype=np.int64)),
        annotated=annotated,
        size=(record.sh, record.sw),
    )
