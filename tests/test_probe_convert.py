"""`lce probe from` and `lce probe info`: each converter on a fixture written in the dataset's own
native format, read back through extract.broden, and compared with label maps the test computes
itself (numpy nearest-neighbour sampling at pixel centres, independent of the converter)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from extract.broden import open_probe
from tests.coco_fixture import LABEL, SIZE, blobs, nearest, photo, write_coco
from tests.conftest import lce


def read_back(out: Path) -> dict[str, dict[str, list[np.ndarray]]]:
    """Every image's label maps per category, decoded by the test from the PNGs (R + 256 G)."""
    probe = open_probe(out)
    result: dict[str, dict[str, list[np.ndarray]]] = {}
    for record in probe.records:
        per: dict[str, list[np.ndarray]] = {}
        for category, cell in record.cells.items():
            for token in filter(None, cell.split(";")):
                rgb = np.asarray(Image.open(out / "images" / token).convert("RGB")).astype(int)
                assert rgb.shape[:2] == (record.sh, record.sw) == (LABEL, LABEL)
                per.setdefault(category, []).append(rgb[..., 0] + 256 * rgb[..., 1])
        with Image.open(out / "images" / record.image) as img:
            assert img.size == (SIZE, SIZE) and (record.ih, record.iw) == (SIZE, SIZE)
        result[Path(record.image).stem] = per
    return result


def concept_names(out: Path) -> dict[int, tuple[str, str]]:
    probe = open_probe(out)
    return {c.number: (c.name, c.category) for c in probe.concepts}


def convert(fmt: str, src: Path, out: Path) -> None:
    code, text = lce("probe", "from", fmt, src, out, "--size", SIZE, "--label-size", LABEL)
    assert code == 0, text


# --- ADE20K -------------------------------------------------------------------------------------

ADE_NAMES = [f"class{k}" for k in range(1, 301)]
ADE_NAMES[1], ADE_NAMES[289], ADE_NAMES[4] = "person", "door", "head"  # 2, 290, 5


def ade_png(classes: np.ndarray, seed: int) -> np.ndarray:
    """ADE20K's encoding: R = class // 256 * 10, G = class % 256, B = instance."""
    rng = np.random.default_rng(seed)
    rgb = np.zeros((*classes.shape, 3), dtype=np.uint8)
    rgb[..., 0] = (classes // 256) * 10
    rgb[..., 1] = classes % 256
    rgb[..., 2] = rng.integers(0, 256, classes.shape)
    return rgb


def write_ade20k(root: Path) -> dict[str, dict[str, list[np.ndarray]]]:
    names = np.empty(len(ADE_NAMES), dtype=object)
    names[:] = ADE_NAMES
    root.mkdir(parents=True)
    scipy.io.savemat(
        root / "index_ade20k.mat",
        {"index": {"objectnames": names, "filename": np.array(["x"], dtype=object)}},
    )
    truth: dict[str, dict[str, list[np.ndarray]]] = {}
    for i, (h, w) in enumerate([(53, 71), (47, 47)]):
        folder = root / "images" / "training" / "a" / "abbey"
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"ADE_train_{i + 1:08d}"
        Image.fromarray(photo(h, w, i)).save(folder / f"{stem}.jpg", quality=95)
        objects = blobs(h, w, [2, 290, 7], seed=10 + i)
        Image.fromarray(ade_png(objects, i)).save(folder / f"{stem}_seg.png")
        layers = {"object": [nearest(objects, LABEL)]}
        if i == 0:  # parts of level 1 and 2; 'door' (290) is also a part here
            parts = [blobs(h, w, [5, 290], seed=20), blobs(h, w, [9], seed=21)]
            for level, p in enumerate(parts, start=1):
                Image.fromarray(ade_png(p, level)).save(folder / f"{stem}_parts_{level}.png")
            layers["part"] = [nearest(p, LABEL) for p in parts]
        truth["images__training__a__abbey__" + stem] = layers
    return truth


def test_ade20k_round_trip(tmp_path: Path) -> None:
    truth = write_ade20k(tmp_path / "ADE20K_2016_07_26")
    out = tmp_path / "probe"
    convert("ade20k", tmp_path / "ADE20K_2016_07_26", out)
    got = read_back(out)
    assert got.keys() == truth.keys()
    for stem, layers in truth.items():
        assert got[stem].keys() == layers.keys(), stem
        for category, maps in layers.items():
            for a, b in zip(got[stem][category], maps, strict=True):
                np.testing.assert_array_equal(a, b)
    names = concept_names(out)
    assert names[2] == ("person", "object") and names[290][0] == "door"
    assert names[5] == ("head", "part")  # only ever a part: primary category part
    assert set(names) == {2, 290, 7, 5, 9}  # only classes that occur


def test_ade20k_is_deterministic(tmp_path: Path) -> None:
    write_ade20k(tmp_path / "ade")
    convert("ade20k", tmp_path / "ade", tmp_path / "a")
    convert("ade20k", tmp_path / "ade", tmp_path / "b")
    for f in sorted((tmp_path / "a").rglob("*")):
        if f.is_file():
            assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()


# --- Pascal VOC ---------------------------------------------------------------------------------


def voc_palette() -> list[int]:
    """VOC's colour map (bit-interleaved), as VOCdevkit writes it."""
    palette = []
    for k in range(256):
        r = g = b = 0
        c = k
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def write_voc(root: Path) -> dict[str, np.ndarray]:
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    truth = {}
    for i, (h, w) in enumerate([(45, 61), (50, 33)]):
        stem = f"2007_00000{i}"
        Image.fromarray(photo(h, w, i)).save(root / "JPEGImages" / f"{stem}.jpg")
        classes = blobs(h, w, [15, 9, 20], seed=i)
        classes[:, :2] = 255  # void border
        png = Image.fromarray(classes.astype(np.uint8), mode="P")
        png.putpalette(voc_palette())
        png.save(root / "SegmentationClass" / f"{stem}.png")
        truth[stem] = nearest(np.where(classes == 255, 0, classes), LABEL)
    return truth


def test_voc_round_trip(tmp_path: Path) -> None:
    truth = write_voc(tmp_path / "VOC2012")
    convert("voc", tmp_path / "VOC2012", tmp_path / "probe")
    got = read_back(tmp_path / "probe")
    assert got.keys() == truth.keys()
    for stem, expected in truth.items():
        np.testing.assert_array_equal(got[stem]["object"][0], expected)
    names = concept_names(tmp_path / "probe")
    assert names[15] == ("person", "object") and names[9][0] == "chair" and len(names) == 20


# --- COCO panoptic ------------------------------------------------------------------------------


def test_coco_panoptic_round_trip(tmp_path: Path) -> None:
    truth = write_coco(tmp_path / "coco")
    convert("coco-panoptic", tmp_path / "coco", tmp_path / "probe")
    got = read_back(tmp_path / "probe")
    assert got.keys() == truth.keys()
    for stem, layers in truth.items():
        for category, expected in layers.items():
            np.testing.assert_array_equal(got[stem][category][0], expected)
    names = concept_names(tmp_path / "probe")
    assert names[187] == ("sky-other-merged", "stuff") and names[62] == ("chair", "thing")


# --- masks --------------------------------------------------------------------------------------


def write_masks(root: Path) -> dict[str, dict[str, np.ndarray]]:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    with (root / "classes.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerows([["id", "name", "category"], [1, "cat", "object"], [2, "sofa", "object"],
                     [300, "fur", "material"]])  # fmt: skip
    truth = {}
    for i, (h, w_) in enumerate([(44, 60), (39, 39)]):
        stem = f"img{i}"
        Image.fromarray(photo(h, w_, i)).save(root / "images" / f"{stem}.{'jpg' if i else 'png'}")
        classes = blobs(h, w_, [1, 2, 300], seed=i)
        # 16-bit PNG for the first (id 300 needs it), palette-free 8-bit would not hold it
        Image.fromarray(classes.astype(np.uint16)).save(root / "labels" / f"{stem}.png")
        small = nearest(classes, LABEL)
        truth[stem] = {
            "object": np.where(np.isin(small, [1, 2]), small, 0),
            "material": np.where(small == 300, small, 0),
        }
    return truth


def test_masks_round_trip(tmp_path: Path) -> None:
    truth = write_masks(tmp_path / "mine")
    convert("masks", tmp_path / "mine", tmp_path / "probe")
    got = read_back(tmp_path / "probe")
    for stem, layers in truth.items():
        for category, expected in layers.items():
            np.testing.assert_array_equal(got[stem][category][0], expected)
    assert concept_names(tmp_path / "probe") == {
        1: ("cat", "object"), 2: ("sofa", "object"), 300: ("fur", "material")
    }  # fmt: skip


def test_info_counts_and_json(tmp_path: Path) -> None:
    truth = write_masks(tmp_path / "mine")
    convert("masks", tmp_path / "mine", tmp_path / "probe")
    code, text = lce("probe", "info", tmp_path / "probe", "--json")
    assert code == 0, text
    info = json.loads(text)
    assert info["images"] == 2 and info["image_sizes"] == {f"{SIZE}x{SIZE}": 2}
    by = {c["name"]: c for c in info["categories"]}
    assert by["object"]["label_pixels"] == sum(int((t["object"] > 0).sum()) for t in truth.values())
    assert by["material"]["concepts"] == 1 and by["object"]["image_coverage"] == 1.0
    assert info["problems"] == []
    code, text = lce("probe", "info", tmp_path / "probe")
    assert code == 0 and "no problems found" in text


def test_info_lists_every_problem(tmp_path: Path) -> None:
    write_masks(tmp_path / "mine")
    out = tmp_path / "probe"
    convert("masks", tmp_path / "mine", out)
    images = sorted((out / "images").glob("img0_*.png"))
    (out / "images" / "img1.png").unlink()  # a missing image
    (out / "images" / "img0.png").write_bytes(b"not a png")  # an unreadable one
    bad = np.zeros((LABEL, LABEL, 3), dtype=np.uint8)
    bad[0, 0] = (77, 1, 0)  # label 333: not in label.csv
    Image.fromarray(bad).save(images[0])
    Image.fromarray(np.zeros((5, 5, 3), dtype=np.uint8)).save(images[1])  # wrong size
    with (out / "category.csv").open("a") as fh:
        fh.write("texture,0,0,0,0\n")  # a category index.csv has no column for
    code, text = lce("probe", "info", out, "--json")
    assert code == 1
    problems = json.loads(text)["problems"]
    joined = "\n".join(problems)
    for needle in ("img1.png: image missing", "img0.png: unreadable image", "333",
                   "label map is 5x5", "category 'texture'"):  # fmt: skip
        assert needle in joined, (needle, problems)


# --- bad input ----------------------------------------------------------------------------------


def assert_clean_failure(code: int, text: str, out: Path, needle: str) -> None:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    assert code != 0 and len(lines) == 1 and lines[0].startswith("error:"), text
    assert needle in text, (needle, text)
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*")), "output left behind"


@pytest.mark.parametrize(
    "case", ["missing", "unreadable", "svg", "size", "class", "classes-csv"]
)  # fmt: skip
def test_masks_bad_input(tmp_path: Path, case: str) -> None:
    src = tmp_path / "mine"
    write_masks(src)
    needle = ""
    if case == "missing":
        src, needle = tmp_path / "nowhere", "nowhere: source folder not found"
    elif case == "unreadable":  # a truncated JPEG
        data = (src / "images" / "img1.jpg").read_bytes()
        (src / "images" / "img1.jpg").write_bytes(data[: len(data) // 3])
        needle = "img1.jpg: cannot read image"
    elif case == "svg":  # a format PIL cannot read, under an image suffix
        (src / "images" / "img1.jpg").unlink()
        (src / "images" / "img1.png").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
        needle = "img1.png: cannot read image"
    elif case == "size":
        Image.fromarray(np.zeros((10, 12), dtype=np.uint8)).save(src / "labels" / "img1.png")
        needle = "img1.png: label map is 10x12, its image img1.jpg is 39x39"
    elif case == "class":
        Image.fromarray(np.full((39, 39), 7, dtype=np.uint8)).save(src / "labels" / "img1.png")
        needle = "img1.png: class id(s) 7 not in"
    elif case == "classes-csv":
        (src / "classes.csv").write_text("id,name,category\nx,cat,object\n")
        needle = "classes.csv: line 2: id 'x' is not an integer"
    out = tmp_path / "out"
    code, text = lce("probe", "from", "masks", src, out, "--size", SIZE)
    assert_clean_failure(code, text, out, needle)


def test_other_formats_bad_input(tmp_path: Path) -> None:
    write_voc(tmp_path / "voc")
    seg = tmp_path / "voc" / "SegmentationClass" / "2007_000001.png"
    png = Image.fromarray(np.full((50, 33), 42, dtype=np.uint8), mode="P")
    png.putpalette(voc_palette())  # without a palette PIL would renumber the indices on save
    png.save(seg)
    code, text = lce("probe", "from", "voc", tmp_path / "voc", tmp_path / "o1")
    assert_clean_failure(code, text, tmp_path / "o1", "2007_000001.png: class id(s) 42 not in")

    write_ade20k(tmp_path / "ade")
    seg = next((tmp_path / "ade").rglob("*00000002_seg.png"))
    Image.fromarray(ade_png(np.full((47, 47), 301), 0)).save(seg)  # 301 > 300 names
    code, text = lce("probe", "from", "ade20k", tmp_path / "ade", tmp_path / "o2")
    assert_clean_failure(code, text, tmp_path / "o2", "_seg.png: class id(s) 301 not in")

    write_coco(tmp_path / "coco")
    png = tmp_path / "coco" / "annotations" / "panoptic_val2017" / "000000000140.png"
    Image.fromarray(np.full((36, 50, 3), 9, dtype=np.uint8)).save(png)  # segment id 9 * 65793
    code, text = lce("probe", "from", "coco-panoptic", tmp_path / "coco", tmp_path / "o3")
    assert_clean_failure(code, text, tmp_path / "o3", "000000000140.png: class id(s)")

    jpeg = tmp_path / "voc" / "JPEGImages" / "2007_000000.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:200])  # truncated
    code, text = lce("probe", "from", "voc", tmp_path / "voc", tmp_path / "o6")
    assert_clean_failure(code, text, tmp_path / "o6", "2007_000000.jpg: cannot read image")

    parts = next((tmp_path / "ade").rglob("*00000001_parts_1.png"))
    Image.fromarray(ade_png(np.zeros((20, 20), dtype=np.int64), 0)).save(parts)
    code, text = lce("probe", "from", "ade20k", tmp_path / "ade", tmp_path / "o7")
    assert_clean_failure(code, text, tmp_path / "o7", "_parts_1.png: label map is 20x20")

    png = tmp_path / "coco" / "annotations" / "panoptic_val2017" / "000000000139.png"
    Image.fromarray(np.zeros((36, 50, 3), dtype=np.uint8)).save(png)  # its image is 41x57
    code, text = lce("probe", "from", "coco-panoptic", tmp_path / "coco", tmp_path / "o8")
    assert_clean_failure(code, text, tmp_path / "o8", "000000000139.png: label map is 36x50")

    code, text = lce("probe", "from", "voc", tmp_path / "empty-missing", tmp_path / "o4")
    assert_clean_failure(code, text, tmp_path / "o4", "empty-missing: source folder not found")
    code, text = lce("probe", "from", "kitti", tmp_path / "voc", tmp_path / "o5")
    assert_clean_failure(code, text, tmp_path / "o5", "format 'kitti'")


def test_stale_partial_folder_is_not_mixed_in(tmp_path: Path) -> None:
    write_masks(tmp_path / "mine")
    stale = tmp_path / ".probe.partial" / "images"
    stale.mkdir(parents=True)
    (stale / "old.png").write_bytes(b"from a killed run")
    convert("masks", tmp_path / "mine", tmp_path / "probe")
    assert not (tmp_path / "probe" / "images" / "old.png").exists()


def test_info_missing_folder(tmp_path: Path) -> None:
    code, text = lce("probe", "info", tmp_path / "nowhere")
    lines = [x for x in text.strip().splitlines() if x.strip()]
    assert code != 0 and len(lines) == 1 and "nowhere: probe set folder not found" in text, text


def test_info_shows_concepts_defined_and_occurring_with_pixels(tmp_path: Path) -> None:
    """A class the dataset lists but no label map uses is defined, not occurring; pixel counts
    per concept are counted here from the label arrays the test wrote."""
    truth = write_masks(tmp_path / "mine")
    with (tmp_path / "mine" / "classes.csv").open("a") as fh:
        fh.write("7,table,object\n")
    convert("masks", tmp_path / "mine", tmp_path / "probe")
    code, text = lce("probe", "info", tmp_path / "probe", "--json")
    assert code == 0, text
    by = {c["name"]: c for c in json.loads(text)["categories"]}
    names = {1: "cat", 2: "sofa", 300: "fur"}
    for category in ("object", "material"):
        expected: dict[str, int] = {}
        for layers in truth.values():
            found, counts = np.unique(layers[category], return_counts=True)
            for number, count in zip(found.tolist(), counts.tolist(), strict=True):
                if number:
                    expected[names[number]] = expected.get(names[number], 0) + count
        assert by[category]["concept_pixels"] == expected
        assert by[category]["concepts_occurring"] == len(expected)
    assert by["object"]["concepts"] == 3 and by["object"]["never_occurring"] == ["table"]
    code, text = lce("probe", "info", tmp_path / "probe")
    flat = " ".join(text.split())
    assert code == 0 and "occurring" in flat  # the table's column (its header may wrap)
    cat = by["object"]["concept_pixels"]["cat"]
    assert f"cat {cat:,} px" in flat and "defined, never occurring: table" in flat
