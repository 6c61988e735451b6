"""The dissection engine against a brute-force reference written from docs/DESIGN.md (tests/brute.py).

The reference runs the model one image at a time, keeps every activation, and loops over units,
concepts and images in numpy, using the generator's own label arrays (not the probe reader).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from extract.engine import ExtractConfig, Interrupted, run_extract
from tests.brute import LAYERS, MODEL, assert_matches, brute_force, lake_layer
from tests.probe_factory import ProbeSet, make_probe
from warehouse.lake import read_table


@pytest.fixture(autouse=True)
def _importable_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    """module:function specs name tests/probe_factory.py, so it must be importable."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> ProbeSet:
    return make_probe(tmp_path_factory.mktemp("probe") / "broden", n_images=9)


@pytest.mark.parametrize("basis", ["raw", "upsampled"])
@pytest.mark.parametrize("q", [0.005, 0.08])
def test_matches_brute_force(probe: ProbeSet, tmp_path: Path, basis: str, q: float) -> None:
    lake = tmp_path / "lake"
    cfg = ExtractConfig(
        model=MODEL, layers=LAYERS, probe=probe.root, lake=lake, name="cnn",
        quantile=q, basis=basis, batch_size=4, progress=False, top_images=3,
    )  # fmt: skip
    run_extract(cfg)
    for layer in LAYERS:
        ref = brute_force(probe, layer, q, basis)
        assert_matches(lake, "cnn", layer, ref)
        assert np.asarray(ref["intersection"]).sum() > 0  # the test exercises real overlaps


def test_top_images_and_runs(probe: ProbeSet, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    run_extract(
        ExtractConfig(
            model=MODEL,
            layers=LAYERS,
            probe=probe.root,
            lake=lake,
            name="cnn",
            batch_size=4,
            progress=False,
            top_images=3,
        )  # fmt: skip
    )
    ref = brute_force(probe, "block1", 0.005, "raw")
    top = lake_layer(lake, "unit_top_images", "cnn", "block1")
    per_image = ref["raw_max_per_image"]
    for u in range(per_image.shape[0]):  # type: ignore[union-attr]
        expected = sorted(range(len(probe.images)), key=lambda i: (-per_image[u, i], i))[:3]  # type: ignore[index]
        got = [top["image"][j] for j in np.argsort(top["rank"]) if top["unit"][j] == u]
        assert got == [probe.images[i].name for i in expected]
    runs = read_table(lake, "runs").to_pylist()
    assert {r["layer"]: r["layer_order"] for r in runs} == {"block1": 0, "block2": 1}
    assert all(r["n_images"] == 9 and r["quantile"] == 0.005 and r["basis"] == "raw" for r in runs)
    assert runs[0]["probe_fingerprint"] and runs[0]["seconds"] > 0
    concepts = read_table(lake, "concepts").to_pydict()
    assert dict(zip(concepts["concept_id"], concepts["category"], strict=True))[5] == "object"


def test_no_cache_and_merge_equal_cached(probe: ProbeSet, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    common = dict(model=MODEL, layers=["block1"], probe=probe.root, name="cnn", progress=False)
    run_extract(ExtractConfig(lake=a, batch_size=4, **common))  # type: ignore[arg-type]
    run_extract(ExtractConfig(lake=b, batch_size=4, cache=False, **common))  # type: ignore[arg-type]
    for table in ["unit_thresholds", "unit_concept_tally"]:
        ta = pq.read_table(next((a / table).glob("**/*.parquet")))
        tb = pq.read_table(next((b / table).glob("**/*.parquet")))
        assert ta.equals(tb), table


def test_resume_after_interruption(probe: ProbeSet, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    base = dict(model=MODEL, layers=LAYERS, probe=probe.root, lake=lake, name="cnn",
                batch_size=2, progress=False, checkpoint_every=1, basis="upsampled")  # fmt: skip
    for stop in (2, 7):  # once in pass 1, once in pass 3 (5 batches per pass)
        with pytest.raises(Interrupted):
            run_extract(ExtractConfig(stop_after_batches=stop, **base))  # type: ignore[arg-type]
        assert not (lake / "unit_thresholds").exists()  # nothing half-written
        with pytest.raises(Interrupted):
            run_extract(ExtractConfig(stop_after_batches=stop + 1, resume=True, **base))  # type: ignore[arg-type]
    run_extract(ExtractConfig(resume=True, **base))  # type: ignore[arg-type]
    for layer in LAYERS:
        assert_matches(lake, "cnn", layer, brute_force(probe, layer, 0.005, "upsampled"))
    assert not list((lake / ".tmp").glob("extract-*"))


@pytest.mark.slow
def test_torchrun_two_processes_equal_brute_force(probe: ProbeSet, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent), OMP_NUM_THREADS="1")
    torchrun = Path(sys.executable).parent / "torchrun"
    cli = Path(sys.executable).parent / "lce"
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", str(cli), "extract", MODEL,
         "--layer", "block1", "--layer", "block2", "--probe", f"broden:{probe.root}",
         "--lake", str(lake), "--name", "cnn", "--batch-size", "2", "--quantile", "0.08",
         "--device", "cpu", "--workers", "0"],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for layer in LAYERS:
        assert_matches(lake, "cnn", layer, brute_force(probe, layer, 0.08, "raw"))
    runs = read_table(lake, "runs").to_pylist()
    assert len(runs) == 2 and all(r["n_images"] == 9 for r in runs)
    # image_features: both ranks' images, merged into probe order
    from tests.brute import brute_force_means, lake_features

    for layer in LAYERS:
        images, got = lake_features(lake, layer)
        assert images == [img.name for img in probe.images]
        np.testing.assert_allclose(got, brute_force_means(probe, layer), rtol=1e-5, atol=1e-6)
    # unit_top_maps: each top image's map comes from the rank that holds the image (issue 13)
    from tests.brute import assert_top_maps_match

    for layer in LAYERS:
        assert_top_maps_match(lake, probe, layer, 0.08, "raw")


# ---------------------------------------------------------------------------- null permutations


def test_null_partners_are_seeded_derangements_within_size_groups(probe: ProbeSet) -> None:
    from extract.broden import open_probe
    from extract.engine import null_partners

    opened = open_probe(probe.root)
    indices = list(range(len(opened.records)))
    first, second = null_partners(opened, indices, 2)
    for mapping in (first, second):
        assert sorted(mapping) == indices and sorted(mapping.values()) == indices  # a bijection
        assert all(mapping[i] != i for i in indices)  # no image is its own partner
        size = {i: (opened.records[i].sh, opened.records[i].sw) for i in indices}
        assert all(size[i] == size[mapping[i]] for i in indices)
    assert first != second  # each permutation is drawn anew
    assert null_partners(opened, indices, 2) == [first, second]  # and reproducibly
    assert null_partners(opened, indices, 2, seed=0) == [first, second]  # the default seed
    other = null_partners(opened, indices, 2, seed=1)
    assert other != [first, second]  # another seed, other pairs
    assert null_partners(opened, indices, 2, seed=1) == other


@pytest.mark.slow
def test_null_permutations_match_brute_force_and_leave_the_rest_bit_for_bit(
    probe: ProbeSet, tmp_path: Path
) -> None:
    from extract.broden import open_probe
    from extract.engine import null_partners

    common = dict(model=MODEL, layers=LAYERS, probe=probe.root, name="cnn", batch_size=4,
                  progress=False, quantile=0.05)  # fmt: skip
    run_extract(ExtractConfig(lake=tmp_path / "plain", **common))  # type: ignore[arg-type]
    run_extract(ExtractConfig(lake=tmp_path / "null", null_permutations=3, **common))  # type: ignore[arg-type]
    for table in ("unit_thresholds", "unit_concept_tally", "unit_top_images", "concepts"):
        assert read_table(tmp_path / "plain", table) == read_table(tmp_path / "null", table), table
    assert read_table(tmp_path / "plain", "unit_null_iou").num_rows == 0

    opened = open_probe(probe.root)
    mappings = null_partners(opened, list(range(len(opened.records))), 3)
    rows = read_table(tmp_path / "null", "unit_null_iou").to_pylist()
    for layer in LAYERS:
        for k, mapping in enumerate(mappings):
            ref = brute_force(probe, layer, 0.05, "raw", partner=[mapping[i] for i in range(9)])
            iou = np.asarray(ref["iou"])
            numbers = list(ref["numbers"])  # type: ignore[call-overload]
            got = sorted(
                (r["unit"], r["concept_id"], r["iou"])
                for r in rows
                if r["layer"] == layer and r["permutation"] == k
            )
            expected = []
            for u in range(iou.shape[0]):
                best = int(np.argmax(iou[u]))  # numbers ascend: ties go to the lowest id
                value = float(iou[u, best])
                expected.append((u, numbers[best] if value > 0 else None, value))
            assert [(u, c) for u, c, _ in got] == [(u, c) for u, c, _ in expected], (layer, k)
            np.testing.assert_allclose([v for *_, v in got], [v for *_, v in expected], rtol=1e-12)
