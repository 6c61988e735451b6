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
