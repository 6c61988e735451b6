"""The engine on CUDA against the brute force over the same CUDA activations (tests/brute.py).

Marked ``cuda`` and skipped without a CUDA device (none on the machines the suite runs on);
benchmarks/device_check.sh runs them on a GPU machine. CUDA's convolutions may round the last
bits differently from the CPU's, so the reference runs the model and its upsampling on CUDA
too; the tallies are integer counts and must be equal, the thresholds as tight as on the CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from extract.engine import ExtractConfig, Interrupted, run_extract
from tests.brute import LAYERS, MODEL, assert_matches, brute_force
from tests.probe_factory import ProbeSet, make_probe
from warehouse.lake import read_table

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


# The CPU tests' two fixtures (tests/test_extract.py), repeated here on purpose: the device check
# runs pytest with --noconftest (conftest.py imports the warehouse's packages, absent on the GPU
# machine), and importing them from that module would shadow the `probe` parameters below.


@pytest.fixture(autouse=True)
def _importable_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    """module:function specs name tests/probe_factory.py, so it must be importable."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> ProbeSet:
    return make_probe(tmp_path_factory.mktemp("probe") / "broden", n_images=9)


def _config(probe: ProbeSet, lake: Path, **extra: object) -> ExtractConfig:
    return ExtractConfig(
        model=MODEL, layers=LAYERS, probe=probe.root, lake=lake, name="cnn", batch_size=4,
        progress=False, top_images=3, device="cuda", **extra,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.parametrize("basis", ["raw", "upsampled"])
@pytest.mark.parametrize("q", [0.005, 0.08])
def test_cuda_matches_brute_force_over_cuda_activations(
    probe: ProbeSet, tmp_path: Path, basis: str, q: float
) -> None:
    run_extract(_config(probe, tmp_path / "lake", quantile=q, basis=basis))
    for layer in LAYERS:
        ref = brute_force(probe, layer, q, basis, device="cuda")
        assert_matches(tmp_path / "lake", "cnn", layer, ref)
        assert np.asarray(ref["intersection"]).sum() > 0  # the test exercises real overlaps


@pytest.mark.parametrize("basis", ["raw", "upsampled"])
def test_cuda_resumed_run_and_nulls_equal_an_uninterrupted_one(
    probe: ProbeSet, tmp_path: Path, basis: str
) -> None:
    """A run stopped after three batches and resumed (tallies and top maps through a
    checkpoint on the host and back) writes the same tables as one run, with null
    permutations on, on CUDA."""
    common = dict(quantile=0.05, basis=basis, null_permutations=2, checkpoint_every=1)
    run_extract(_config(probe, tmp_path / "whole", **common))
    with pytest.raises(Interrupted):  # 3 batches a pass: stops after pass 2's first batch
        run_extract(_config(probe, tmp_path / "resumed", stop_after_batches=4, **common))
    run_extract(_config(probe, tmp_path / "resumed", resume=True, **common))
    for table in ("unit_thresholds", "unit_concept_tally", "unit_null_iou", "unit_top_maps"):
        assert read_table(tmp_path / "whole", table) == read_table(tmp_path / "resumed", table)
    assert read_table(tmp_path / "whole", "unit_null_iou").num_rows > 0


# The batched paths of extract/upsample.py on the device, shape by shape: the small CNN above
# has small maps, whose plans are "units" or "whole", so the windows of layer4-sized maps (and
# their per-shape check, run on the device) are tried here directly.
DEVICE_SHAPES = [
    (7, 7, (112, 112)),  # ResNet layer4 on Broden: windows
    (14, 14, (112, 112)),
    (28, 28, (112, 112)),
    (7, 10, (112, 80)),
    (5, 9, (20, 36)),
    (2, 2, (16, 16)),
]


def batched_paths_match(device: str) -> None:
    """``pixels_above`` (with ceilings, as round 2 calls it) and ``batch_label_counts`` on a
    batch of maps on ``device`` against each image's own whole-map ``F.interpolate`` on that
    device, bit for bit; a plain function so it can also be run on the CPU by hand."""
    import torch.nn.functional as F

    from extract.upsample import batch_label_counts, pixels_above

    for h, w, size in DEVICE_SHAPES:
        gen = torch.Generator().manual_seed(h * 1000 + w)
        batch = (torch.randn((3, 40, h, w), generator=gen) * 2).to(device)
        batch[1] = batch[1].clamp(min=0)  # one image rectified, as after a ReLU
        full = F.interpolate(batch, size=size, mode="bilinear", align_corners=False)
        flat = full.transpose(0, 1).reshape(40, -1)
        # bounds that are pixel values themselves, high quantiles, and -inf; ceilings likewise
        picks = torch.randint(flat.shape[1], (40,), generator=gen).to(device)
        bounds = torch.where(
            torch.arange(40, device=device) % 3 == 0,
            flat.gather(1, picks.view(-1, 1)).view(-1),
            torch.quantile(flat, 0.99, dim=1),
        )
        bounds[5] = float("-inf")
        tops = torch.where(
            torch.arange(40, device=device) % 4 == 2, float("inf"), flat.amax(dim=1) * 0.999
        )
        units, values = pixels_above(batch, bounds, size, tops)
        assert units.device.type == values.device.type == torch.device(device).type
        for u in range(40):
            want = flat[u][(flat[u] > bounds[u]) & (flat[u] < tops[u])]
            got = values[units == u]
            assert torch.equal(torch.sort(got).values, torch.sort(want).values), (h, w, u)
        labels = [
            (torch.rand((size[0] * size[1], k), generator=gen) < 0.3).float().to(device)
            for k in (3, 5, 2)
        ]
        for j, (units_j, counts) in enumerate(batch_label_counts(batch, bounds, size, labels)):
            masks = (full[j] > bounds.view(-1, 1, 1)).reshape(40, -1).float()
            want_counts = (masks @ labels[j]).round().long()
            got_counts = torch.zeros_like(want_counts)
            got_counts[units_j] = counts
            assert torch.equal(got_counts, want_counts), (h, w, j)


def test_batched_upsampling_on_cuda_equals_whole_maps_on_cuda() -> None:
    batched_paths_match("cuda")
