"""The scale benchmark at a tiny size, so it cannot rot: its probe generator (read back by the
engine's own reader), its stand-in model (shape, named layer, calibrated sparsity) and one
configuration measured end to end through a fresh subprocess, with the table's fields."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_scale  # noqa: E402
import scale_model  # noqa: E402
import scale_probe  # noqa: E402

from extract.broden import load_image, load_label_map, open_probe  # noqa: E402


@pytest.mark.slow
def test_probe_is_broden_layout_and_grows_to_the_same_images(tmp_path: Path) -> None:
    made = scale_probe.ensure_full(tmp_path / "a", 20)
    assert made["generated"] == 20 and made["n"] == 20
    again = scale_probe.ensure_full(tmp_path / "a", 12)  # reused, nothing generated
    assert again["generated"] == 0 and again["index_sha256"] == made["index_sha256"]
    grown = scale_probe.ensure_full(tmp_path / "a", 300)  # crosses a chunk boundary (256)
    direct = scale_probe.ensure_full(tmp_path / "b", 300)
    assert grown["generated"] == 280 and grown["index_sha256"] == direct["index_sha256"]

    probe = open_probe(scale_probe.view(tmp_path / "a", 260))
    assert len(probe.records) == 260 and probe.categories == scale_probe.CATEGORIES
    assert sorted(c.number for c in probe.concepts) == list(range(1, 49))
    for i in (0, 7, 257):  # the reader's decoding of the files equals the generator's arrays
        chunk = scale_probe.render_chunk(0, i // scale_probe.CHUNK, 28, 112)
        assert chunk.objects is not None and chunk.parts is not None
        j, record = i - chunk.start, probe.records[i]
        assert (record.ih, record.iw, record.sh, record.sw) == (28, 28, 112, 112)
        np.testing.assert_array_equal(load_image(probe, record), chunk.images[j])
        objects = load_label_map(probe, record, record.cells["object"])
        np.testing.assert_array_equal(objects, chunk.objects[j])
        if record.cells["part"]:
            np.testing.assert_array_equal(
                load_label_map(probe, record, record.cells["part"]), chunk.parts[j]
            )
        else:
            assert not chunk.parts[j].any()
        assert record.cells["scene"] == (str(chunk.scenes[j]) if chunk.scenes[j] else "")


@pytest.mark.slow
def test_stand_in_shapes_and_sparsity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LCE_BENCH_CHANNELS", "200")
    chunk = scale_probe.render_chunk(5, 0, 28, 28, labels=False)  # not the calibration images
    x = torch.from_numpy(chunk.images).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(scale_model.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(scale_model.IMAGENET_STD).view(1, 3, 1, 1)
    for factory, shape in ((scale_model.layer4_model, (200, 7, 7)),
                           (scale_model.layer3_model, (200, 14, 14))):  # fmt: skip
        model = factory()
        assert isinstance(dict(model.named_modules())["relu"], torch.nn.ReLU)
        with torch.no_grad():
            y = model((x - mean) / std)
        assert tuple(y.shape[1:]) == shape and bool((y >= 0).all())
        share = (y > 0).float().mean(dim=(0, 2, 3)).numpy()
        # Beta(2, 8): mean 0.2 per unit, on images the calibration never saw
        assert 0.15 < share.mean() < 0.25
        assert 0.05 < np.median(share) < 0.35
        with torch.no_grad():  # the same factory gives the same weights
            np.testing.assert_array_equal(factory()((x - mean) / std).numpy(), y.numpy())


@pytest.mark.slow  # a fresh subprocess that imports torch and runs the engine: 8-15 s
def test_one_configuration_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    rows = bench_scale.main(
        ["--n", "20", "--channels", "16", "--configs", "layer4-raw", "--poll", "0.05",
         "--probe-dir", str(tmp_path / "probe"), "--work-dir", str(tmp_path / "runs"),
         "--json", str(out)]
    )  # fmt: skip
    assert json.loads(out.read_text()) == rows
    (row,) = rows
    assert row["status"] == "ok", row["status"]
    assert row["shape"] == [16, 7, 7] and row["n_images"] == 20
    assert row["peak_bytes"] >= row["own_bytes"] > 0
    assert row["timings"]["pass1"] > 0 and row["timings"]["pass3"] > 0
    assert not list((tmp_path / "runs").iterdir())  # lake and log removed

    table = bench_scale.markdown(rows).splitlines()
    assert table[0] == "| " + " | ".join(bench_scale.COLUMNS) + " |"
    cells = dict(zip(bench_scale.COLUMNS, table[2].strip("| ").split(" | "), strict=True))
    assert cells["config"] == "layer4-raw" and cells["activations"] == "16 x 7 x 7"
    assert float(cells["dense MB"]) == round(20 * 16 * 7 * 7 * 4 / 1e6, 1)
    for column in ("peak RSS MB", "model's own MB", "cache peak MB", "cache % dense",
                   "checkpoint MB", "pass 1 img/s", "tally img/s", "total s"):  # fmt: skip
        float(cells[column].replace(",", ""))  # a number, not "-"
