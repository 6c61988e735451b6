"""`lce probe segment`: a folder of images labelled by a segmenter, read back exactly.

The module:function segmenter (tests/segmenters.py) scores class k by the 2x2-block mean of the
normalised channel k; the expected label maps are computed here in numpy from the images written.
Real segmentation weights cannot be downloaded here, so the torchvision path runs a seeded
random-init LR-ASPP MobileNetV3 saved as a --weights file, compared with the same network run
directly by the test.
"""

from __future__ import annotations

import csv
import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from extract.broden import open_probe
from extract.probe_segment import COLOUR_TERMS, SegmentConfig, colour_names, run_segment
from tests.conftest import lce

SIZE = 16
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


def write_images(folder: Path, n: int = 5) -> None:
    """Images of solid 2x2-aligned blocks (pure reds, greens, blues, greys) at SIZE x SIZE."""
    rng = np.random.default_rng(0)
    palette = np.array([[220, 30, 30], [30, 200, 40], [20, 40, 230], [128, 128, 128]])
    (folder / "sub").mkdir(parents=True)
    for i in range(n):
        blocks = palette[rng.integers(0, 4, (SIZE // 2, SIZE // 2))].astype(np.uint8)
        image = blocks.repeat(2, axis=0).repeat(2, axis=1)
        target = folder / "sub" if i == 0 else folder
        Image.fromarray(image).save(target / f"im{i}.png")


def write_classes(path: Path, rows: list[list[object]] | None = None) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name", "category"])
        w.writerows(
            rows or [[0, "reddish", "object"], [1, "greenish", "stuff"], [2, "blueish", ""]]
        )
    return path


def expected_ids(image: np.ndarray) -> np.ndarray:
    x = (image / 255.0 - MEAN) / STD
    pooled = x.reshape(SIZE // 2, 2, SIZE // 2, 2, 3).mean(axis=(1, 3))
    return pooled.argmax(axis=-1)


def read_labels(out: Path) -> dict[str, dict[str, np.ndarray]]:
    probe = open_probe(out)
    result = {}
    for record in probe.records:
        per = {}
        for category, cell in record.cells.items():
            rgb = np.asarray(Image.open(out / "images" / cell).convert("RGB")).astype(int)
            per[category] = rgb[..., 0] + 256 * rgb[..., 1]
        result[record.image] = per
    return result


def test_module_function_round_trip_with_colours(tmp_path: Path) -> None:
    write_images(tmp_path / "photos")
    classes = write_classes(tmp_path / "classes.csv")
    out = tmp_path / "probe"
    code, text = lce("probe", "segment", tmp_path / "photos", out, "--segmenter",
                     "segmenters:channels", "--classes", classes, "--colour-names",
                     "--size", SIZE, "--batch-size", 2, "--device", "cpu")  # fmt: skip
    assert code == 0, text
    got = read_labels(out)
    assert sorted(got) == ["im1.png", "im2.png", "im3.png", "im4.png", "sub__im0.png"]
    for name, layers in got.items():
        image = np.asarray(Image.open(out / "images" / name).convert("RGB"))
        ids = expected_ids(image)
        numbers = ids + 1  # label number = class id + 1; blueish (id 2) has no category
        np.testing.assert_array_equal(layers["object"], np.where(ids == 0, numbers, 0))
        np.testing.assert_array_equal(layers["stuff"], np.where(ids == 1, numbers, 0))
        # the names of the pixel under each label pixel's centre (row/column 2i + 1)
        np.testing.assert_array_equal(layers["color"], colour_names(image[1::2, 1::2]) + 4)
        assert set(np.unique(layers["color"]).tolist()) <= {4 + 2, 4 + 3, 4 + 6, 4 + 7}
    concepts = {c.name: (c.number, c.category) for c in open_probe(out).concepts}
    assert concepts["reddish"] == (1, "object") and concepts["greenish"] == (2, "stuff")
    assert "blueish" not in concepts and concepts["grey"] == (4 + 2, "color")
    assert not list(tmp_path.glob(".probe*"))


def test_colour_rule_by_hand() -> None:
    pixels = {
        "black": (10, 10, 10), "white": (240, 240, 235), "grey": (120, 125, 120),
        "red": (200, 20, 20), "orange": (240, 140, 20), "brown": (120, 70, 20),
        "yellow": (230, 220, 30), "green": (30, 160, 40), "blue": (30, 60, 200),
        "purple": (120, 40, 170), "pink": (240, 120, 200),
    }  # fmt: skip
    got = colour_names(np.array([list(pixels.values())], dtype=np.uint8))[0]
    assert [COLOUR_TERMS[k] for k in got] == list(pixels)
    assert COLOUR_TERMS[colour_names(np.array([[[230, 150, 150]]], dtype=np.uint8))[0, 0]] == "pink"


def test_interrupted_run_resumes(tmp_path: Path) -> None:
    write_images(tmp_path / "photos", n=6)
    classes = write_classes(tmp_path / "classes.csv")
    reference = tmp_path / "whole"
    cfg = dict(images=tmp_path / "photos", segmenter="segmenters:channels", classes=classes,
               size=SIZE, batch_size=2, device="cpu")  # fmt: skip
    run_segment(SegmentConfig(out=reference, **cfg))  # type: ignore[arg-type]

    def stop_after_first_batch(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    out = tmp_path / "probe"
    with pytest.raises(KeyboardInterrupt):
        run_segment(SegmentConfig(out=out, progress=stop_after_first_batch, **cfg))  # type: ignore[arg-type]
    assert not out.exists() and (tmp_path / ".probe.partial" / "rows.jsonl").is_file()
    calls = importlib.import_module("segmenters").CALLS  # the module the spec loaded
    calls["images"] = 0
    assert run_segment(SegmentConfig(out=out, **cfg)) == 6  # type: ignore[arg-type]
    assert calls["images"] == 4  # only the four unfinished images
    for f in sorted(reference.rglob("*")):
        if f.is_file():
            assert f.read_bytes() == (out / f.relative_to(reference)).read_bytes(), f.name
    assert not (tmp_path / ".probe.partial").exists()


@pytest.mark.slow
def test_torchvision_architecture_with_weights(tmp_path: Path) -> None:
    write_images(tmp_path / "photos", n=3)
    classes = write_classes(tmp_path / "classes.csv")
    torch.manual_seed(0)
    net = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=3
    ).eval()
    torch.save(net.state_dict(), tmp_path / "seg.pth")
    out = tmp_path / "probe"
    code, text = lce("probe", "segment", tmp_path / "photos", out, "--segmenter",
                     "lraspp_mobilenet_v3_large", "--weights", tmp_path / "seg.pth",
                     "--classes", classes, "--size", 32, "--label-size", 32,
                     "--device", "cpu")  # fmt: skip
    assert code == 0, text
    got = read_labels(out)
    for name, layers in got.items():
        image = np.asarray(Image.open(out / "images" / name).convert("RGB"))
        x = torch.from_numpy(((image / 255.0 - MEAN) / STD).astype(np.float32))
        with torch.no_grad():
            ids = net(x.permute(2, 0, 1)[None])["out"][0].argmax(0).numpy()  # already 32x32
        np.testing.assert_array_equal(layers["object"], np.where(ids == 0, 1, 0))
        np.testing.assert_array_equal(layers["stuff"], np.where(ids == 1, 2, 0))


def assert_clean_failure(code: int, text: str, out: Path, needle: str) -> None:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    assert code != 0 and len(lines) == 1 and lines[0].startswith("error:"), text
    assert needle in text, (needle, text)
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*")), "output left behind"


@pytest.mark.parametrize("case", ["missing", "unreadable", "svg", "class", "spec", "weights"])
def test_bad_input(tmp_path: Path, case: str) -> None:
    photos = tmp_path / "photos"
    write_images(photos)
    classes = write_classes(tmp_path / "classes.csv")
    spec, extra = "segmenters:channels", []
    if case == "missing":
        photos, needle = tmp_path / "nowhere", "nowhere: folder not found"
    elif case == "unreadable":
        data = (photos / "im3.png").read_bytes()
        (photos / "im3.png").write_bytes(data[: len(data) // 2])
        needle = "im3.png: cannot read image"
    elif case == "svg":
        (photos / "im4.png").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
        needle = "im4.png: cannot read image"
    elif case == "class":  # the segmenter outputs ids 0..2; the file lists 0 and 1
        write_classes(classes, [[0, "reddish", "object"], [1, "greenish", "object"]])
        needle = "classes.csv: lists class ids up to 1, the segmenter outputs 3 classes"
    elif case == "spec":
        spec, needle = "segmenters:not_a_module", "not_a_module() returned str"
    else:
        (tmp_path / "w.pth").write_bytes(b"garbage")
        spec, extra = "fcn_resnet50", ["--weights", str(tmp_path / "w.pth")]
        needle = "w.pth"
    out = tmp_path / "out"
    code, text = lce("probe", "segment", photos, out, "--segmenter", spec, "--classes", classes,
                     "--size", SIZE, "--device", "cpu", *extra)  # fmt: skip
    assert_clean_failure(code, text, out, needle)
