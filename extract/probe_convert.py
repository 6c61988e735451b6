"""Converters from datasets researchers already have to the Broden layout (``lce probe from``).

Each reads the dataset's own files as its authors distribute them, checks every label against the
dataset's class list, resizes images to ``size x size`` and label maps to ``label_size x
label_size`` by nearest neighbour (extract.probe_write), and writes the probe set all or nothing.
Label 0 is "no label" everywhere, as in Broden.

Source layouts:

- ``ade20k``: an ADE20K release folder (2016 ``ADE20K_2016_07_26`` or 2021 ``ADE20K_2021_17_01``)
  holding ``index_ade20k.mat`` (its ``index.objectnames`` is the class list) and, anywhere below,
  images ``NAME.jpg`` with ``NAME_seg.png`` (object class = R / 10 * 256 + G, 1-based into
  objectnames, 0 = unlabelled; B holds instances and is ignored) and optional ``NAME_parts_N.png``
  (same encoding; level N parts). Categories ``object`` and ``part`` (one label layer per level).
  The global label number is the ADE20K class number, so a class that is both object and part is
  one concept (its primary category is where it covers more). Only classes that occur are listed.
- ``voc``: a Pascal VOC year folder (``VOCdevkit/VOC2012``) with ``JPEGImages/NAME.jpg`` and
  ``SegmentationClass/NAME.png`` palette PNGs (index 1..20 = the 20 VOC classes, 0 background and
  255 void both become "no label"). Category ``object``; label numbers 1..20 are VOC's indices.
- ``coco-panoptic``: a COCO folder with ``annotations/panoptic_SPLIT.json``, its PNG folder
  ``annotations/panoptic_SPLIT/`` (or ``panoptic_SPLIT/``) and the images in ``SPLIT/``. Each PNG
  pixel's segment id is R + 256 G + 256^2 B (0 = unlabelled); ``segments_info`` maps it to a
  category id, ``categories`` says whether that is a thing (``isthing`` 1) or stuff. Categories
  ``thing`` and ``stuff`` (separate label layers); label numbers are COCO's category ids.
- ``masks`` (your own dataset): ``images/`` with the photographs, ``labels/NAME.png`` per image
  ``NAME.*`` (single-channel 8- or 16-bit, or palette: the pixel value is the class id, 0 = no
  label) and ``classes.csv`` with columns ``id,name,category`` (id 1..65535). Each category of
  classes.csv becomes a probe category (one label layer).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from base.errors import LceError
from base.named_files import Folder
from extract.probe_write import (
    Label,
    check_numbers,
    check_same_size,
    check_sizes,
    list_images,
    read_png_array,
    read_rgb,
    resize_image,
    resize_nearest,
    write_probe,
)

FORMATS = ("ade20k", "voc", "coco-panoptic", "masks")

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip

Sample = tuple[str, np.ndarray, dict[str, list[np.ndarray]]]


def convert(fmt: str, src: Path, out: Path, size: int = 224, label_size: int | None = None) -> int:
    """Convert ``src`` (in dataset format ``fmt``) into a probe set at ``out``; returns images."""
    label = check_sizes(size, label_size)
    src = Path(src)
    if not src.is_dir():
        raise LceError(f"{src}: source folder not found")
    if fmt == "ade20k":
        categories, labels, samples, keep = _ade20k(src, size, label)
    elif fmt == "voc":
        categories, labels, samples, keep = _voc(src, size, label)
    elif fmt == "coco-panoptic":
        categories, labels, samples, keep = _coco_panoptic(src, size, label)
    elif fmt == "masks":
        categories, labels, samples, keep = _masks(src, size, label)
    else:
        raise LceError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return write_probe(Path(out), categories, labels, samples, label, keep)


def _sample_name(root: Path, path: Path) -> str:
    """A flat, unique file stem: the path below the source root with '/' as '__'."""
    return "__".join(path.relative_to(root).with_suffix("").parts)


# --- ADE20K -------------------------------------------------------------------------------------


def ade20k_names(path: Path) -> list[str]:
    """index_ade20k.mat's objectnames (class k is objectnames[k - 1])."""
    import scipy.io

    try:
        index = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)["index"]
        names = index.objectnames
    except FileNotFoundError:
        raise LceError(f"{path}: ADE20K index not found") from None
    except Exception as exc:
        raise LceError(
            f"{path}: cannot read index.objectnames ({type(exc).__name__}: {exc})"
        ) from None
    return [str(n) for n in np.atleast_1d(names)]


def ade20k_classes(path: Path) -> np.ndarray:
    """Class numbers (R / 10 * 256 + G) of an ADE20K segmentation PNG."""
    array, mode = read_png_array(path, "ADE20K label PNG")
    if array.ndim != 3 or array.shape[2] < 3:
        raise LceError(f"{path}: expected an RGB ADE20K label PNG, got mode {mode}")
    return (array[..., 0].astype(np.int64) // 10) * 256 + array[..., 1].astype(np.int64)


def _ade20k(src: Path, size: int, label_size: int) -> tuple:
    index = next(iter(sorted(src.rglob("index_ade20k.mat"))), None)
    if index is None:
        raise LceError(f"{src}: no index_ade20k.mat (the ADE20K release's class index)")
    names = ade20k_names(index)
    known = np.arange(len(names) + 1)
    pairs = [
        (p, p.with_name(p.stem + "_seg.png"))
        for p in sorted(src.rglob("*.jpg"))
        if p.with_name(p.stem + "_seg.png").is_file()
    ]
    if not pairs:
        raise LceError(f"{src}: no ADE20K images (NAME.jpg with NAME_seg.png)")
    labels = [Label(k, names[k - 1], "object") for k in range(1, len(names) + 1)]

    def samples() -> Iterator[Sample]:
        for image_path, seg_path in pairs:
            image = read_rgb(image_path)
            layers: dict[str, list[np.ndarray]] = {}
            for category, paths in (
                ("object", [seg_path]),
                ("part", sorted(image_path.parent.glob(image_path.stem + "_parts_*.png"))),
            ):
                for path in paths:
                    classes = ade20k_classes(path)
                    check_same_size(path, classes, image_path, image)
                    check_numbers(path, classes, known, f"{index.name} ({len(names)} classes)")
                    layers.setdefault(category, []).append(resize_nearest(classes, label_size))
            yield _sample_name(src, image_path), resize_image(image, size), layers

    return ["object", "part"], labels, samples(), False


# --- Pascal VOC ---------------------------------------------------------------------------------


def _voc(src: Path, size: int, label_size: int) -> tuple:
    seg_dir, jpeg_dir = src / "SegmentationClass", src / "JPEGImages"
    for folder in (seg_dir, jpeg_dir):
        if not folder.is_dir():
            raise LceError(f"{folder}: folder not found (expected a VOC year folder, e.g. VOC2012)")
    segs = sorted(seg_dir.glob("*.png"))
    if not segs:
        raise LceError(f"{seg_dir}: no SegmentationClass PNGs")
    known = np.array([*range(len(VOC_CLASSES) + 1), 255])
    labels = [Label(k + 1, name, "object") for k, name in enumerate(VOC_CLASSES)]

    def samples() -> Iterator[Sample]:
        for seg in segs:
            image_path = jpeg_dir / f"{seg.stem}.jpg"
            image = read_rgb(image_path)
            classes, mode = read_png_array(seg, "VOC SegmentationClass PNG")
            if mode not in ("P", "L") or classes.ndim != 2:
                raise LceError(
                    f"{seg}: expected a palette (mode P) PNG of class indices, got {mode}"
                )
            check_same_size(seg, classes, image_path, image)
            check_numbers(seg, classes, known, "the VOC classes (0..20, 255 void)")
            numbers = np.where(classes == 255, 0, classes).astype(np.int64)
            yield (
                seg.stem,
                resize_image(image, size),
                {"object": [resize_nearest(numbers, label_size)]},
            )

    return ["object"], labels, samples(), True


# --- COCO panoptic ------------------------------------------------------------------------------


def named(folder: Folder, name: str, where: str) -> Path:
    """``folder / name`` for a ``file_name`` of the COCO file, refused (naming the entry) when it
    leaves the folder (an absolute name or ``..`` would read any file of the machine) or is no
    plain file."""
    problem = folder.problem(name)
    if problem:
        raise LceError(f"{where}: file_name {name!r} {problem}; refused")
    return folder.path / name


def _coco_panoptic(src: Path, size: int, label_size: int) -> tuple:
    found = sorted((src / "annotations").glob("panoptic_*.json"))
    if len(found) != 1:
        raise LceError(
            f"{src / 'annotations'}: expected one panoptic_SPLIT.json, found {len(found)}"
        )
    json_path = found[0]
    split = json_path.stem[len("panoptic_") :]
    png_dir = next(
        (d for d in (src / "annotations" / json_path.stem, src / json_path.stem) if d.is_dir()),
        None,
    )
    if png_dir is None:
        raise LceError(f"{src / 'annotations' / json_path.stem}: panoptic PNG folder not found")
    image_dir = src / split
    if not image_dir.is_dir():
        raise LceError(f"{image_dir}: image folder not found")
    try:
        data = json.loads(json_path.read_text())
        categories = {
            int(c["id"]): (str(c["name"]), bool(c["isthing"])) for c in data["categories"]
        }
        files = {int(i["id"]): str(i["file_name"]) for i in data["images"]}
        annotations = sorted(data["annotations"], key=lambda a: str(a["file_name"]))
        for a in annotations:
            a["image_id"], a["file_name"], a["segments_info"]  # noqa: B018 (fields must exist)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LceError(
            f"{json_path}: not a COCO panoptic file ({type(exc).__name__}: {exc})"
        ) from None
    if not annotations:
        raise LceError(f"{json_path}: no annotations")
    labels = [
        Label(cid, name, "thing" if isthing else "stuff")
        for cid, (name, isthing) in sorted(categories.items())
    ]
    if any(not 1 <= cid <= 65535 for cid in categories):
        raise LceError(f"{json_path}: category ids must lie in 1..65535")

    pngs, jpegs = Folder(png_dir), Folder(image_dir)

    def samples() -> Iterator[Sample]:
        for a in annotations:
            png = named(pngs, a["file_name"], f"{json_path}: annotation of image {a['image_id']}")
            if a["image_id"] not in files:
                raise LceError(
                    f"{json_path}: annotation {png.name}: image_id {a['image_id']} not in images"
                )
            image_path = named(jpegs, files[a["image_id"]], f"{json_path}: image {a['image_id']}")
            image = read_rgb(image_path)
            rgb, mode = read_png_array(png, "COCO panoptic PNG")
            if rgb.ndim != 3 or rgb.shape[2] < 3:
                raise LceError(f"{png}: expected an RGB panoptic PNG, got mode {mode}")
            check_same_size(png, rgb, image_path, image)
            wide = rgb[..., :3].astype(np.int64)
            ids = wide[..., 0] + 256 * wide[..., 1] + 65536 * wide[..., 2]
            to_category = {0: 0}
            for s in a["segments_info"]:
                cid = int(s["category_id"])
                if cid not in categories:
                    raise LceError(f"{json_path}: {png.name}: category_id {cid} not in categories")
                to_category[int(s["id"])] = cid
            segment_ids = np.array(sorted(to_category), dtype=np.int64)
            check_numbers(png, ids, segment_ids, f"its segments_info in {json_path.name}")
            cids = np.array([to_category[s] for s in segment_ids.tolist()], dtype=np.int64)
            numbers = cids[np.searchsorted(segment_ids, ids)]
            thing = np.array([c in categories and categories[c][1] for c in cids.tolist()])
            is_thing = thing[np.searchsorted(segment_ids, ids)]
            layers = {
                "thing": [resize_nearest(np.where(is_thing, numbers, 0), label_size)],
                "stuff": [resize_nearest(np.where(is_thing, 0, numbers), label_size)],
            }
            yield Path(a["file_name"]).stem, resize_image(image, size), layers

    return ["thing", "stuff"], labels, samples(), True


# --- masks (custom datasets) --------------------------------------------------------------------


def read_classes(path: Path, first_id: int = 1, allow_ignored: bool = False) -> list[Label]:
    """classes.csv: id (first_id..65535), name, category; one line-numbered error per bad row.

    With ``allow_ignored`` an empty category means "not a concept" (a segmenter's background).
    """
    if not path.is_file():
        raise LceError(f"{path}: class list not found")
    labels: list[Label] = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"id", "name", "category"} - set(reader.fieldnames or [])
        if missing:
            raise LceError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                number = int(row["id"])
            except (TypeError, ValueError):
                raise LceError(f"{path}: line {line}: id {row['id']!r} is not an integer") from None
            if not first_id <= number <= 65535:
                raise LceError(f"{path}: line {line}: id {number} outside {first_id}..65535")
            name, category = (row["name"] or "").strip(), (row["category"] or "").strip()
            if not name or not (category or allow_ignored):
                raise LceError(f"{path}: line {line}: empty name or category")
            if category and not category.replace("_", "").replace("-", "").isalnum():
                raise LceError(
                    f"{path}: line {line}: category {category!r}: letters, digits, - _ only"
                )
            labels.append(Label(number, name, category))
    if not labels:
        raise LceError(f"{path}: no classes")
    dup = {lab.number for lab in labels if sum(o.number == lab.number for o in labels) > 1}
    if dup:
        raise LceError(f"{path}: id(s) {', '.join(map(str, sorted(dup)))} listed more than once")
    return labels


def _masks(src: Path, size: int, label_size: int) -> tuple:
    labels = read_classes(src / "classes.csv")
    images = list_images(src / "images")
    if not (src / "labels").is_dir():
        raise LceError(f"{src / 'labels'}: folder not found")
    categories = list(dict.fromkeys(lab.category for lab in labels))
    known = np.array([0, *sorted(lab.number for lab in labels)])
    numbers_of = {
        c: np.array([lab.number for lab in labels if lab.category == c]) for c in categories
    }

    def samples() -> Iterator[Sample]:
        for image_path in images:
            rel = image_path.relative_to(src / "images").with_suffix(".png")
            label_path = src / "labels" / rel
            image = read_rgb(image_path)
            classes, mode = read_png_array(label_path)
            if classes.ndim != 2:
                raise LceError(
                    f"{label_path}: expected a single-channel label PNG, got mode {mode}"
                )
            check_same_size(label_path, classes, image_path, image)
            classes = classes.astype(np.int64)
            check_numbers(label_path, classes, known, f"{src / 'classes.csv'}")
            small = resize_nearest(classes, label_size)
            layers = {c: [np.where(np.isin(small, numbers_of[c]), small, 0)] for c in categories}
            yield _sample_name(src / "images", image_path), resize_image(image, size), layers

    return categories, labels, samples(), True
