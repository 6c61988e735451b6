"""Bounded-memory exact thresholds and the sparse cache, end to end through the engine.

The model (tests/probe_factory.py ``adversarial``) has the hard cases as channels: an all-zero
unit, a negative-only unit (no ReLU), ties at the threshold, a constant unit, and a unit that is
zero except on the last image. Thresholds must equal numpy.quantile over the brute force's maps
bit for bit (batch size 1, so the engine's forward pass is the brute force's), and the tallies
must match; the cache must hold less than the dense maps; an interrupted and resumed run must
give the same tables as an uninterrupted one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from extract.engine import ExtractConfig, Interrupted, run_extract
from tests.brute import assert_matches, brute_force, lake_layer
from tests.probe_factory import ProbeSet, adversarial, make_probe

MODEL = "probe_factory:adversarial"


@pytest.fixture(autouse=True)
def _importable_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> ProbeSet:
    """12 random images; the last one is made bright, so unit 4 fires on it alone."""
    probe = make_probe(tmp_path_factory.mktemp("probe") / "broden", n_images=12)
    rng = np.random.default_rng(4)
    last = probe.images[-1]
    last.rgb = rng.integers(235, 256, size=last.rgb.shape, dtype=np.uint8)
    Image.fromarray(last.rgb).save(probe.root / "images" / last.name)
    return probe


def config(probe: ProbeSet, lake: Path, **kw: object) -> ExtractConfig:
    base: dict[str, object] = dict(model=MODEL, layers=["units"], probe=probe.root, lake=lake,
                                   name="adv", batch_size=1, progress=False)  # fmt: skip
    return ExtractConfig(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("basis", ["raw", "upsampled"])
@pytest.mark.parametrize("q", [0.005, 0.05, 0.3])
def test_thresholds_bit_for_bit_on_adversarial_units(
    probe: ProbeSet, tmp_path: Path, basis: str, q: float
) -> None:
    lake = tmp_path / "lake"
    result = run_extract(config(probe, lake, quantile=q, basis=basis, top_images=1))
    ref = brute_force(probe, "units", q, basis, factory=adversarial)
    got = lake_layer(lake, "unit_thresholds", "adv", "units")
    thresholds = got["threshold"][np.argsort(got["unit"])].astype(np.float32)
    np.testing.assert_array_equal(thresholds, np.asarray(ref["thresholds"], dtype=np.float32))
    assert_matches(lake, "adv", "units", ref)
    # unit 4 is zero on all images but the last: its threshold comes from that image alone
    # at the smallest q, and is 0 where fewer than q of its values are positive
    assert thresholds[1] == 0.0 and thresholds[5] == 1.0 and thresholds[2] < -1.0
    # the cache keeps hot cells, their neighbours and the top images' maps: at a small q, on
    # these 6 x 6 maps, under the dense size (benchmarks/bench_scale.py: Broden scale). The
    # upsampled basis keeps cells against pass 1's block-floor bound, which at this 2x factor is
    # the smallest of a cell quad (upsample.block_floors): lower, so more cells are hot (0.80
    # of dense here; 0.75 with the pixel bound of 172f020)
    dense = 12 * 7 * 6 * 6 * 4
    if q <= 0.05:
        limit = 0.75 if basis == "raw" else 0.85
        assert 0 < result.cache_bytes < limit * dense, (result.cache_bytes, dense)


def test_interrupted_and_resumed_equals_uninterrupted(probe: ProbeSet, tmp_path: Path) -> None:
    """Stopped in pass 1 and in pass 3 (12 batches each), resumed each time: the same tables,
    byte for byte, as one uninterrupted run."""
    once, twice = tmp_path / "once", tmp_path / "twice"
    kw: dict[str, object] = dict(basis="upsampled", quantile=0.05, checkpoint_every=1)
    run_extract(config(probe, once, **kw))
    for stop in (5, 17):
        with pytest.raises(Interrupted):
            run_extract(config(probe, twice, stop_after_batches=stop, **kw))
        with pytest.raises(Interrupted):
            run_extract(config(probe, twice, stop_after_batches=stop + 2, resume=True, **kw))
    run_extract(config(probe, twice, resume=True, **kw))
    for table in ("unit_thresholds", "unit_concept_tally", "unit_top_images", "unit_top_maps"):
        a = pq.read_table(next((once / table).glob("**/*.parquet")))
        b = pq.read_table(next((twice / table).glob("**/*.parquet")))
        assert a.equals(b), table
