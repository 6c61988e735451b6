"""Bad input to `lce extract`: one clear line naming the file, unit or image; nothing written."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.cli_helpers import MODEL, assert_clean_failure, extract
from tests.conftest import lce
from tests.probe_factory import make_probe, small_cnn, write_png_labels
from warehouse.lake import read_table


@pytest.fixture(autouse=True)
def _importable_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_probe(tmp_path_factory.mktemp("probe") / "broden", n_images=6).root


@pytest.fixture
def probe(pristine: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "broden"
    shutil.copytree(pristine, dst)
    return dst


def test_good_run_writes_every_table(probe: Path, tmp_path: Path) -> None:
    code, out = extract(probe, tmp_path / "lake")
    assert code == 0, out
    for table in ("runs", "unit_thresholds", "unit_concept_tally", "unit_top_images",
                  "unit_top_maps", "concepts"):  # fmt: skip
        assert read_table(tmp_path / "lake", table).num_rows > 0, table


def test_missing_image(probe: Path, tmp_path: Path) -> None:
    (probe / "images" / "img002.png").unlink()
    code, out = extract(probe, tmp_path / "lake")
    assert_clean_failure(code, out, tmp_path / "lake", "img002.png", "not found")


def test_corrupt_label_png(probe: Path, tmp_path: Path) -> None:
    (probe / "images" / "img001_object_0.png").write_bytes(b"not a png")
    code, out = extract(probe, tmp_path / "lake")
    assert_clean_failure(code, out, tmp_path / "lake", "img001_object_0.png", "cannot decode")


def test_skip_bad_counts_skipped_images(probe: Path, tmp_path: Path) -> None:
    (probe / "images" / "img004.png").write_bytes(b"garbage")
    code, out = extract(probe, tmp_path / "lake", "--skip-bad")
    assert code == 0, out
    runs = read_table(tmp_path / "lake", "runs").to_pylist()
    assert runs[0]["n_skipped_images"] == 1 and runs[0]["n_images"] == 5


def test_label_number_not_in_label_csv(probe: Path, tmp_path: Path) -> None:
    write_png_labels(probe / "images" / "img000_color_0.png", np.full((12, 12), 300))
    code, out = extract(probe, tmp_path / "lake")
    assert_clean_failure(code, out, tmp_path / "lake", "img000_color_0.png", "300", "label.csv")


def test_label_map_of_the_wrong_size(probe: Path, tmp_path: Path) -> None:
    write_png_labels(
        probe / "images" / "img003_object_0.png", np.ones((10, 12), dtype=np.int64) * 3
    )
    code, out = extract(probe, tmp_path / "lake")
    assert_clean_failure(code, out, tmp_path / "lake", "img003_object_0.png", "12x12")


def test_image_of_the_wrong_size(probe: Path, tmp_path: Path) -> None:
    Image.fromarray(np.zeros((20, 24, 3), dtype=np.uint8)).save(probe / "images" / "img005.png")
    code, out = extract(probe, tmp_path / "lake")
    assert_clean_failure(code, out, tmp_path / "lake", "img005.png", "24x24")


def test_non_finite_activations(probe: Path, tmp_path: Path) -> None:
    code, out = extract(probe, tmp_path / "lake", model="probe_factory:nan_cnn")
    assert_clean_failure(code, out, tmp_path / "lake", "non-finite", "img000.png", "unit 0")


def test_unwritable_lake_is_refused_before_work(probe: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "lake"
    blocker.write_text("a file, not a folder")
    code, out = extract(probe, blocker)
    assert code != 0 and "not writable" in out and str(blocker) in out


def test_unknown_layer_lists_closest_names(probe: Path, tmp_path: Path) -> None:
    code, out = lce(
        "extract", MODEL, "--layer", "blok2", "--probe", f"broden:{probe}",
        "--lake", tmp_path / "lake", "--workers", "0",
    )  # fmt: skip
    assert_clean_failure(code, out, tmp_path / "lake", "blok2", "block2")


def test_layer_with_unusable_output(probe: Path, tmp_path: Path) -> None:
    code, out = lce(
        "extract", MODEL, "--layer", "head", "--probe", f"broden:{probe}",
        "--lake", tmp_path / "lake", "--workers", "0",
    )  # fmt: skip
    assert_clean_failure(code, out, tmp_path / "lake", "head", "(B, C, H, W)")


def test_checkpoint_key_mismatch_lists_keys(probe: Path, tmp_path: Path) -> None:
    state = small_cnn().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["head.bias"]
    weights = tmp_path / "ckpt.pt"
    torch.save(state, weights)
    code, out = extract(probe, tmp_path / "lake", "--weights", str(weights), model=MODEL)
    assert_clean_failure(code, out, tmp_path / "lake", "head.bias", "extra.weight", "strict")
    code, out = extract(probe, tmp_path / "lake", "--weights", str(weights), "--non-strict")
    assert code == 0, out
    runs = read_table(tmp_path / "lake", "runs").to_pylist()
    assert runs[0]["non_strict"] is True and runs[0]["model"] == "cnn"


@pytest.mark.slow
def test_torchvision_model_with_weights_file(probe: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    import torchvision

    model = torchvision.models.get_model("resnet18", weights=None)
    weights = tmp_path / "r18.pt"
    torch.save({"state_dict": model.state_dict()}, weights)
    code, out = lce(
        "extract", "torchvision:resnet18", "--weights", weights, "--layer", "layer1",
        "--probe", f"broden:{probe}", "--lake", tmp_path / "lake", "--workers", "0",
    )  # fmt: skip
    assert code == 0, out
    runs = read_table(tmp_path / "lake", "runs").to_pylist()
    assert runs[0]["model"] == "r18" and runs[0]["n_units"] == 64


def test_study_settings_must_agree(probe: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    assert extract(probe, lake)[0] == 0
    code, out = extract(probe, lake, "--quantile", "0.01")
    assert code != 0 and "quantile" in out and "new_study" in out
    code, out = extract(probe, lake, "--quantile", "0.01", "--new-study")
    assert code == 0, out
    assert {r["quantile"] for r in read_table(lake, "runs").to_pylist()} == {0.01}


def test_new_study_replaces_the_old_one_with_the_same_settings(probe: Path, tmp_path: Path) -> None:
    """--new-study drops the old dissections even when probe, quantile and basis agree."""
    lake = tmp_path / "lake"
    assert extract(probe, lake)[0] == 0
    code, out = lce(
        "extract", MODEL, "--layer", "block1", "--probe", f"broden:{probe}", "--lake", lake,
        "--name", "cnn2", "--batch-size", "2", "--workers", "0", "--new-study",
    )  # fmt: skip
    assert code == 0, out
    for table in ("runs", "unit_thresholds", "unit_concept_tally", "unit_top_images"):
        assert {r["model"] for r in read_table(lake, table).to_pylist()} == {"cnn2"}, table


def test_bad_options(probe: Path, tmp_path: Path) -> None:
    for extra, needle in [
        (("--quantile", "1.5"), "quantile 1.5"),
        (("--basis", "pixels"), "basis 'pixels'"),
        (("--device", "tpu"), "device 'tpu'"),
    ]:
        code, out = extract(probe, tmp_path / "lake", *extra)
        assert code != 0 and needle in out, out
    code, out = lce("extract", MODEL, "--layer", "block1", "--probe", str(probe))
    assert code != 0 and "broden:PATH" in out


def test_probe_reader_primary_category_by_coverage(probe: Path) -> None:
    from extract.broden import open_probe

    p = open_probe(probe)
    categories = {c.name: c.category for c in p.concepts}
    assert categories["food"] == "object"  # coverage 0.09 in object vs 0.02 in part
    assert categories["top-half"] == "part" and categories["indoor"] == "scene"
    rows = list(csv.DictReader((probe / "index.csv").open()))
    assert rows[1]["part"] == "" and p.records[1].cells["part"] == ""


def test_another_probe_set_is_refused_saying_what_differs(probe: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    assert extract(probe, lake)[0] == 0
    other = make_probe(tmp_path / "other", n_images=5, label_size=6).root
    code, out = extract(other, lake)
    assert code != 0
    flat = " ".join(out.split())
    assert "another probe set: 5 images (lake has 6); label size 6x6 (lake has 12x12); " in flat
    assert "index.csv sha256 " in flat and "new_study" in flat
    assert "probe_fingerprint" not in flat
    # same images and sizes, one label renamed: only label.csv's hash differs
    edited = tmp_path / "edited"
    shutil.copytree(probe, edited)
    label = edited / "label.csv"
    label.write_text(label.read_text().replace("red", "crimson", 1))
    code, out = extract(edited, lake)
    flat = " ".join(out.split())
    assert code != 0 and "another probe set: label.csv sha256 " in flat, out
    assert "images (lake has" not in flat and "index.csv" not in flat
