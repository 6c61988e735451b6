"""image_features (issue 14): each image's spatially averaged map per dissected layer, against a
brute-force forward pass; every other table bit for bit unchanged by it; resumable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from extract.engine import ExtractConfig, Interrupted, run_extract
from tests.brute import LAYERS, MODEL, brute_force_means, lake_features
from tests.probe_factory import ProbeSet, make_probe
from warehouse.lake import read_table

OTHER_TABLES = ("runs", "unit_thresholds", "unit_concept_tally", "unit_top_images", "concepts")


@pytest.fixture(autouse=True)
def _importable_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> ProbeSet:
    return make_probe(tmp_path_factory.mktemp("probe") / "broden", n_images=9)


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


@pytest.mark.slow
def test_resumed_run_has_the_same_features(probe: ProbeSet, tmp_path: Path) -> None:
    base = dict(common(probe), lake=tmp_path / "lake", batch_size=2, checkpoint_every=1)
    for stop in (2, 7):  # once in pass 1, once in pass 3 (5 batches per pass)
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
