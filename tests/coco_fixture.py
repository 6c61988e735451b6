"""A tiny COCO panoptic dataset written by hand, with the label maps it must convert to (shared by
the converter's tests and the probe-path tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

SIZE, LABEL = 40, 24  # label maps are resized from odd source sizes: exercises the sampling


def nearest(a: np.ndarray, size: int) -> np.ndarray:
    """Independent reference: output pixel i takes source pixel floor((i + 0.5) * H / size)."""
    rows = np.floor((np.arange(size) + 0.5) * a.shape[0] / size).astype(int)
    cols = np.floor((np.arange(size) + 0.5) * a.shape[1] / size).astype(int)
    return a[np.ix_(rows, cols)]


def photo(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def blobs(h: int, w: int, values: list[int], seed: int) -> np.ndarray:
    """A map of rectangles of the given values on 0 (each value gets pixels)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((h, w), dtype=np.int64)
    for v in values:
        y, x = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        out[y : y + int(rng.integers(6, h // 2)), x : x + int(rng.integers(6, w // 2))] = v
    return out


def write_coco(root: Path) -> dict[str, dict[str, np.ndarray]]:
    (root / "annotations" / "panoptic_val2017").mkdir(parents=True)
    (root / "val2017").mkdir()
    categories = [
        {"id": 1, "name": "person", "supercategory": "person", "isthing": 1},
        {"id": 62, "name": "chair", "supercategory": "furniture", "isthing": 1},
        {"id": 187, "name": "sky-other-merged", "supercategory": "sky", "isthing": 0},
    ]
    images, annotations, truth = [], [], {}
    for i, (h, w) in enumerate([(41, 57), (36, 50)]):
        name = f"{i + 139:012d}"
        Image.fromarray(photo(h, w, i)).save(root / "val2017" / f"{name}.jpg")
        # segment ids (some above 65535, so B is used) -> category ids
        segments = {70000 + i: 1, 3 + i: 62, 2000 + i: 187, 5: 1}
        ids = blobs(h, w, list(segments), seed=i)
        rgb = np.stack([ids % 256, (ids // 256) % 256, ids // 65536], axis=-1).astype(np.uint8)
        Image.fromarray(rgb).save(root / "annotations" / "panoptic_val2017" / f"{name}.png")
        images.append({"id": i + 139, "file_name": f"{name}.jpg", "height": h, "width": w})
        annotations.append(
            {
                "image_id": i + 139,
                "file_name": f"{name}.png",
                "segments_info": [
                    {"id": s, "category_id": c, "iscrowd": 0, "area": 1, "bbox": [0, 0, 1, 1]}
                    for s, c in segments.items()
                ],
            }
        )
        cat = np.vectorize(lambda s, seg=segments: seg.get(int(s), 0))(ids)
        thing = np.isin(cat, [1, 62])
        truth[name] = {
            "thing": nearest(np.where(thing, cat, 0), LABEL),
            "stuff": nearest(np.where(thing, 0, cat), LABEL),
        }
    doc = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / "panoptic_val2017.json").write_text(json.dumps(doc))
    return truth
