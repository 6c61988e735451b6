"""image_features (issue 14): each image's spatially averaged map per dissected layer, against a
brute-force forward pass; every other table bit for bit unchanged by it; resumable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from extract.engine import ExtractConfig, Interrupted, run_extract
from tests.probe_factory import ProbeSet, make_probe, small_cnn
from warehouse.lake import read_table

MODEL = "probe_factory:small_cnn"
LAYERS = ["block1", "block2"]
MEAN = np.array([0.485, 0.456, 0.406]).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225]).reshape(3, 1, 1)
OTHER_TABLES = ("runs", "unit_thresholds", "unit_concept_tally", "unit_top_images", "concepts")


@pytest.fixture(autouse=True)
def _importable_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> ProbeSet:
    return make_probe(tmp_path_factory.mktemp("probe") / "broden", n_images=9)


def brute_force_means(probe: ProbeSet, layer: str) -> np.ndarray:
    """One image at a time: the layer's output, averaged over its spatial grid in float64."""
    model = small_cnn().eval()
    captured: dict[str, torch.Tensor] = {}
    module = dict(model.named_modules())[layer]
    module.register_forward_hook(lambda _m, _i, out: captured.__setitem__("a", out))
    rows = []
    for img in probe.images:
        x = (img.rgb.transpose(2, 0, 1) / 255.0 - MEAN) / STD
        with torch.no_grad():
            model(torch.tensor(x, dtype=torch.float32)[None])
        rows.append(captured["a"][0].double().mean(dim=(1, 2)).numpy())
    return np.array(rows)


def lake_features(lake: Path, layer: str) -> tuple[list[str], np.ndarray]:
    rows = [r for r in read_table(lake, "image_features").to_pylist() if r["layer"] == layer]
    return [r["image"] for r in rows], np.array([r["features"] for r in rows], dtype=np.float64)


def common(probe: ProbeSet) -> dict:
    return dict(model=MODEL, layers=LAYERS, probe=probe.root, name="cnn", batch_size=4,
                progress=False, quantile=0.05)  # fmt: skip


def test_features_match_brute_force_and_leave_every_other_table_bit_for_bit(
    probe: ProbeSet, tmp_path: Path
) -> None:
    run_extract(ExtractConfig(lake=tmp_path / "with", **common(probe)))
    run_extract(ExtractConfig(lake=tmp_path / "without", features=False, **common(probe)))
    for table in OTHER_TABLES:
        a, b = read_table(tmp_path / "with", table), read_table(tmp_path / "without", table)
        if table == "runs":  # run ids, times and the settings JSON differ by nature
            drop = ["run_id", "started_at", "seconds", "settings"]
            a, b = a.drop_columns(drop), b.drop_columns(drop)
        assert a == b, table
    assert read_table(tmp_path / "without", "image_features").num_rows == 0
    names = [img.name for img in probe.images]
    for layer in LAYERS:
        images, got = lake_features(tmp_path / "with", layer)
        assert images == names  # probe order, one row per image
        np.testing.assert_allclose(got, brute_force_means(probe, layer), rtol=1e-5, atol=1e-6)
    schema = read_table(tmp_path / "with", "image_features").schema
    assert str(schema.field("features").type) == "list<item: float>"


def test_resumed_run_has_the_same_features(probe: ProbeSet, tmp_path: Path) -> None:
    base = dict(common(probe), lake=tmp_path / "lake", batch_size=2, checkpoint_every=1)
    for stop in (2, 7):  # once in pass 1, once in pass 2 (5 batches per pass)
        with pytest.raises(Interrupted):
            run_extract(ExtractConfig(stop_after_batches=stop, **base))
        with pytest.raises(Interrupted):
            run_extract(ExtractConfig(stop_after_batches=stop + 1, resume=True, **base))
    run_extract(ExtractConfig(resume=True, **base))
    run_extract(ExtractConfig(**dict(base, lake=tmp_path / "straight")))
    assert read_table(tmp_path / "lake", "image_features") == read_table(
        tmp_path / "straight", "image_features"
    )


def test_vectors_are_not_dictionary_encoded(probe: ProbeSet, tmp_path: Path) -> None:
    """Float vectors never repeat: a dictionary only made the files larger than the floats."""
    import pyarrow.parquet as pq

    run_extract(ExtractConfig(lake=tmp_path / "lake", **dict(common(probe), layers=["block1"])))
    (path,) = (tmp_path / "lake" / "image_features").glob("**/*.parquet")
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(4)}
    assert not any("DICTIONARY" in e for e in encodings["features.list.element"])
    assert any("DICTIONARY" in e for e in encodings["model"])
