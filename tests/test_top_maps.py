"""unit_top_maps (issue 13): each unit's raw map and S > T mask on its top images.

The reference (tests/brute.py) runs the model one image at a time, as the extraction brute
force does, takes the layer's whole map, upsamples it with F.interpolate and thresholds it with
numpy's quantile: the lake must hold exactly those maps and masks, for exactly the
unit_top_images pairs, after an interrupted and resumed run as after a plain one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from extract.engine import ExtractConfig, Interrupted, run_extract
from extract.top_maps import pack_bits, pack_mask, unpack_mask
from extract.upsample import upsample
from tests.brute import LAYERS, MODEL, assert_top_maps_match, lake_rows
from tests.probe_factory import ProbeSet, make_probe
from warehouse.lake import read_table


@pytest.fixture(autouse=True)
def _importable_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> ProbeSet:
    return make_probe(tmp_path_factory.mktemp("probe") / "broden", n_images=9)


@pytest.mark.parametrize("basis", ["raw", "upsampled"])
def test_top_maps_are_the_maps_and_masks_of_the_top_images(
    probe: ProbeSet, tmp_path: Path, basis: str
) -> None:
    lake = tmp_path / "lake"
    run_extract(
        ExtractConfig(
            model=MODEL, layers=LAYERS, probe=probe.root, lake=lake, name="cnn", batch_size=4,
            progress=False, top_images=3, quantile=0.08, basis=basis,
        )
    )  # fmt: skip
    for layer in LAYERS:
        assert_top_maps_match(lake, probe, layer, 0.08, basis)


def test_upsampling_the_stored_map_alone_gives_the_stored_mask_here(
    probe: ProbeSet, tmp_path: Path
) -> None:
    """What the app may do without the mask: on these shapes (checked by
    extract.top_maps.subsets_exact) one unit's map upsampled alone reproduces S bit for bit."""
    lake = tmp_path / "lake"
    run_extract(
        ExtractConfig(
            model=MODEL, layers=LAYERS, probe=probe.root, lake=lake, name="cnn", batch_size=4,
            progress=False, top_images=2, quantile=0.08,
        )
    )  # fmt: skip
    thresholds = {
        (r["layer"], r["unit"]): np.float32(r["threshold"])
        for r in read_table(lake, "unit_thresholds").to_pylist()
    }
    for layer in LAYERS:
        for r in lake_rows(lake, layer):
            m = torch.tensor(r["values"], dtype=torch.float32).view(1, 1, r["h"], r["w"])
            s = upsample(m, (r["sh"], r["sw"]))[0, 0].numpy()
            t = thresholds[(layer, r["unit"])]
            np.testing.assert_array_equal(s > t, unpack_mask(r["mask"], r["sh"], r["sw"]))


@pytest.mark.slow
def test_a_resumed_run_keeps_identical_maps(probe: ProbeSet, tmp_path: Path) -> None:
    base = dict(model=MODEL, layers=LAYERS, probe=probe.root, name="cnn", batch_size=2,
                progress=False, checkpoint_every=1, top_images=3)  # fmt: skip
    plain = tmp_path / "plain"
    run_extract(ExtractConfig(lake=plain, **base))  # type: ignore[arg-type]
    for stop in (3, 8):  # in pass 1, and in pass 3 (5 batches a pass)
        lake = tmp_path / f"stopped-{stop}"
        with pytest.raises(Interrupted):
            run_extract(ExtractConfig(lake=lake, stop_after_batches=stop, **base))  # type: ignore[arg-type]
        assert not (lake / "unit_top_maps").exists()  # nothing half-written
        run_extract(ExtractConfig(lake=lake, resume=True, **base))  # type: ignore[arg-type]
        for layer in LAYERS:
            assert lake_rows(lake, layer) == lake_rows(plain, layer)
    assert_top_maps_match(plain, probe, "block2", 0.005, "raw")


def test_a_checkpoint_with_one_tensor_a_map_is_discarded_not_misread(
    probe: ProbeSet, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Checkpoints before 2026-12-06 held one small tensor per map and mask (a list per layer);
    the packed layout reads them as an older version: discarded with a warning, started over."""
    base = dict(model=MODEL, layers=LAYERS, probe=probe.root, name="cnn", batch_size=2,
                progress=False, checkpoint_every=1, top_images=3)  # fmt: skip
    plain, lake = tmp_path / "plain", tmp_path / "lake"
    run_extract(ExtractConfig(lake=plain, **base))  # type: ignore[arg-type]
    with pytest.raises(Interrupted):
        run_extract(ExtractConfig(lake=lake, stop_after_batches=8, **base))  # type: ignore[arg-type]
    (checkpoint,) = lake.glob(".tmp/extract-*/rank0/checkpoint.pt")
    state = torch.load(checkpoint, weights_only=True)
    assert state["pass"] == 3
    old = {}
    for name, packed in state["top_maps"].items():
        maps = packed["maps"].split([h * w for h, w in packed["map_shapes"].tolist()])
        masks = packed["masks"].split(packed["mask_bytes"].tolist())
        old[name] = [
            (u, i, m.view(h, w), p, sh, sw)
            for (u, i), (sh, sw), m, p, (h, w) in zip(
                packed["pairs"].tolist(), packed["sizes"].tolist(), maps, masks,
                packed["map_shapes"].tolist(), strict=True,
            )
        ]  # fmt: skip
    assert sum(len(rows) for rows in old.values()) > 0
    torch.save({**state, "top_maps": old}, checkpoint)
    capfd.readouterr()
    run_extract(ExtractConfig(lake=lake, resume=True, **base))  # type: ignore[arg-type]
    err = capfd.readouterr().err
    assert "checkpoint discarded" in err and "one tensor each" in err, err
    for layer in LAYERS:
        assert lake_rows(lake, layer) == lake_rows(plain, layer)


def test_mask_packing_round_trips_and_is_numpys_packbits() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((7, 11)) > 0.5
    data = pack_mask(mask)
    assert len(data) == (7 * 11 + 7) // 8
    assert data[0] == int("".join("1" if b else "0" for b in mask.reshape(-1)[:8]), 2)
    np.testing.assert_array_equal(unpack_mask(data, 7, 11), mask)
    assert pa.array([data], pa.binary())[0].as_py() == data


@pytest.mark.parametrize("shape", [(3, 7, 11), (2, 8, 8), (1, 1, 1)])
def test_packing_on_the_device_is_numpys_packbits_row_by_row(shape: tuple[int, int, int]) -> None:
    masks = torch.from_numpy(np.random.default_rng(1).random(shape) > 0.5)
    packed = pack_bits(masks)
    for k in range(shape[0]):
        assert packed[k].numpy().tobytes() == np.packbits(masks[k].numpy().reshape(-1)).tobytes()


def test_top_image_marts_are_described_tables_of_the_lake(maps_home: Path) -> None:
    """fct_unit_top_images / fct_unit_top_maps: tables, every column described, one row per
    lake row, with the run's probe folder and every map kept."""
    import duckdb

    db = maps_home / "lce.duckdb"
    lake = maps_home / "lake"
    with duckdb.connect(str(db), read_only=True) as conn:
        for mart in ("fct_unit_top_images", "fct_unit_top_maps"):
            (kind,) = conn.execute(
                "select table_type from information_schema.tables where table_name = ?", [mart]
            ).fetchone()  # type: ignore[misc]
            assert kind == "BASE TABLE"
            comments = conn.execute(
                "select column_name, comment from duckdb_columns() where table_name = ?", [mart]
            ).fetchall()
            assert comments and all(c for _, c in comments), mart
        rows = conn.execute(
            "select model, layer, unit, rank, image, probe_dir, has_map from fct_unit_top_images"
        ).fetchall()
        maps = conn.execute(
            "select model, layer, unit, rank, mask, threshold from fct_unit_top_maps"
        ).fetchall()
    lake_tops = read_table(lake, "unit_top_images").to_pylist()
    assert sorted(r[:5] for r in rows) == sorted(
        (r["model"], r["layer"], r["unit"], r["rank"], r["image"]) for r in lake_tops
    )
    probes = {(r["model"], r["layer"]): r["probe"] for r in read_table(lake, "runs").to_pylist()}
    assert all(f"broden:{r[5]}" == probes[(r[0], r[1])] for r in rows)
    assert all(r[6] for r in rows)
    lake_maps = {
        (r["model"], r["layer"], r["unit"], r["rank"]): r["mask"]
        for r in read_table(lake, "unit_top_maps").to_pylist()
    }
    assert {m[:4]: m[4] for m in maps} == lake_maps
    thresholds = {
        (r["model"], r["layer"], r["unit"]): r["threshold"]
        for r in read_table(lake, "unit_thresholds").to_pylist()
    }
    assert all(m[5] == thresholds[m[:3]] for m in maps)
