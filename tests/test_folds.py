"""Fold tallies (`lce extract --folds K`): every image in one fold by a hash of its name, each
fold's tally kept beside the whole one.

The folds are recomputed here with hashlib from the image names, and each fold's rows are
compared with the brute-force reference (tests/brute.py) run on that fold's images alone, with
the thresholds of the whole probe set (thresholds stay global). The sums over the folds must
equal the whole tally exactly (integers), on both threshold bases, after a resume and under
torchrun.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from base.errors import LceError
from extract.engine import ExtractConfig, Interrupted, run_extract
from extract.folds import fold_index
from tests.brute import LAYERS, MODEL, brute_force, lake_layer
from tests.conftest import lce
from tests.probe_factory import ProbeSet, make_probe
from warehouse.lake import read_table
from warehouse.run_identity import run_identity

KEYS = ("intersection", "activation_in_category", "label_pixels")


@pytest.fixture(autouse=True)
def _importable_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    """module:function specs name tests/probe_factory.py, so it must be importable."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> ProbeSet:
    return make_probe(tmp_path_factory.mktemp("probe") / "broden", n_images=9)


def hashed_folds(names: list[str], folds: int, seed: int) -> list[int]:
    """The fold of each image, written out from the rule in the docs."""
    return [int(hashlib.sha256(f"{seed}:{n}".encode()).hexdigest(), 16) % folds for n in names]


def config(probe: ProbeSet, lake: Path, **kw: object) -> ExtractConfig:
    base: dict = dict(model=MODEL, layers=LAYERS, probe=probe.root, lake=lake, name="cnn",
                      batch_size=4, progress=False, top_images=3)  # fmt: skip
    return ExtractConfig(**(base | kw))


def assert_folds_sum_to_whole(lake: Path, folds: int) -> None:
    """For every unit_concept_tally row: exactly one row per fold, whose integer columns sum to
    the row's."""
    for layer in LAYERS:
        whole = lake_layer(lake, "unit_concept_tally", "cnn", layer)
        parts = lake_layer(lake, "unit_concept_tally_folds", "cnn", layer)
        assert len(whole["unit"]) > 0
        sums: dict[tuple[int, int], np.ndarray] = defaultdict(lambda: np.zeros(3, np.int64))
        seen: dict[tuple[int, int], list[int]] = defaultdict(list)
        for j in range(len(parts["unit"])):
            key = (int(parts["unit"][j]), int(parts["concept_id"][j]))
            sums[key] += [int(parts[k][j]) for k in KEYS]
            seen[key].append(int(parts["fold"][j]))
        expected = {
            (int(whole["unit"][j]), int(whole["concept_id"][j])): [int(whole[k][j]) for k in KEYS]
            for j in range(len(whole["unit"]))
        }
        assert set(sums) == set(expected), layer
        for key, total in expected.items():
            assert sums[key].tolist() == total, (layer, key)
            assert sorted(seen[key]) == list(range(folds)), (layer, key)


def assert_fold_matches_brute_force(
    lake: Path, probe: ProbeSet, fold: int, folds: int, seed: int, q: float, basis: str
) -> None:
    """The stored rows of ``fold`` equal the reference tally of that fold's images alone."""
    names = [img.name for img in probe.images]
    members = [i for i, f in enumerate(hashed_folds(names, folds, seed)) if f == fold]
    for layer in LAYERS:
        ref = brute_force(probe, layer, q, basis, only=members)
        numbers: list[int] = ref["numbers"]  # type: ignore[assignment]
        rows = lake_layer(lake, "unit_concept_tally_folds", "cnn", layer)
        mine = rows["fold"] == fold
        inter = np.zeros_like(ref["intersection"])  # type: ignore[arg-type]
        for u, c, i, a, g, iou in zip(
            rows["unit"][mine], rows["concept_id"][mine], rows["intersection"][mine],
            rows["activation_in_category"][mine], rows["label_pixels"][mine], rows["iou"][mine],
            strict=True,
        ):  # fmt: skip
            j = numbers.index(int(c))
            inter[u, j] = i
            assert a == ref["activation"][u, j]  # type: ignore[index]
            assert g == ref["label_pixels"][j]  # type: ignore[index]
            assert iou == pytest.approx(ref["iou"][u, j], abs=1e-12)  # type: ignore[index]
        # every overlap of the fold's images is stored (rows of the whole tally cover them)
        np.testing.assert_array_equal(inter, ref["intersection"])


def test_fold_of_each_image_is_the_documented_hash(probe: ProbeSet) -> None:
    names = [img.name for img in probe.images] + ["a/b c.jpg", "ünïcode.png"]
    for folds, seed in ((5, 0), (3, 7), (1, 0), (2, 12345)):
        assert fold_index(names, folds, seed).tolist() == hashed_folds(names, folds, seed)
    # the seed moves images between folds (else it would record nothing)
    assert fold_index(names, 5, 0).tolist() != fold_index(names, 5, 1).tolist()


@pytest.mark.parametrize("basis", ["raw", "upsampled"])
def test_fold_tallies_sum_to_the_whole_and_equal_brute_force(
    probe: ProbeSet, tmp_path: Path, basis: str
) -> None:
    lake = tmp_path / "lake"
    folds, seed, q = 3, 7, 0.08
    run_extract(config(probe, lake, basis=basis, quantile=q, folds=folds, fold_seed=seed))
    assert_folds_sum_to_whole(lake, folds)
    names = [img.name for img in probe.images]
    assert sorted(set(hashed_folds(names, folds, seed))) == [0, 1, 2]  # no fold is empty here
    for fold in range(folds) if basis == "raw" else (1,):
        assert_fold_matches_brute_force(lake, probe, fold, folds, seed, q, basis)
    settings = json.loads(read_table(lake, "runs").to_pylist()[0]["settings"])
    assert (settings["folds"], settings["fold_seed"]) == (folds, seed)


def test_one_fold_writes_no_rows_and_the_default_is_five(probe: ProbeSet, tmp_path: Path) -> None:
    run_extract(config(probe, tmp_path / "one", layers=["block1"], folds=1))
    assert read_table(tmp_path / "one", "unit_concept_tally_folds").num_rows == 0
    assert read_table(tmp_path / "one", "unit_concept_tally").num_rows > 0
    run = read_table(tmp_path / "one", "runs").to_pylist()[0]
    assert json.loads(run["settings"])["folds"] == 1
    assert ExtractConfig.__dataclass_fields__["folds"].default == 5


@pytest.mark.parametrize("folds", [0, -2, 101, True, 2.5])
def test_bad_folds_are_refused_before_any_work(
    probe: ProbeSet, tmp_path: Path, folds: object
) -> None:
    with pytest.raises(LceError, match=r"^folds .*: expected an integer from 1 to 100$"):
        run_extract(config(probe, tmp_path / "lake", folds=folds))
    assert not (tmp_path / "lake" / "runs").exists()


def test_bad_folds_on_the_command_line_are_one_line(probe: ProbeSet, tmp_path: Path) -> None:
    code, out = lce("extract", MODEL, "--layer", "block1", "--probe", f"broden:{probe.root}",
                    "--lake", tmp_path / "lake", "--folds", "0")  # fmt: skip
    assert code != 0
    lines = [x for x in out.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and "folds 0: expected an integer from 1 to 100" in lines[0], out


def test_an_old_run_without_folds_is_not_a_run_with_folds() -> None:
    """A runs row of an lce from before the fold tallies records no folds: it reads as one fold
    (no fold tallies), never as the default five."""
    old = {"probe_fingerprint": "f", "quantile": 0.005, "basis": "raw", "normalize": "imagenet",
           "settings": json.dumps({"model": "m", "null_seed": 0})}  # fmt: skip
    new = dict(old, settings=json.dumps({"model": "m", "null_seed": 0, "folds": 5,
                                         "fold_seed": 0}))  # fmt: skip
    assert run_identity(old)["folds"] == 1 and run_identity(old)["fold_seed"] is None
    assert run_identity(new)["folds"] == 5 and run_identity(new)["fold_seed"] == 0
    assert run_identity(old) != run_identity(new)


def test_fold_tallies_survive_a_resume(probe: ProbeSet, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    cfg = config(probe, lake, batch_size=2, checkpoint_every=1, basis="upsampled", folds=4)
    # stopped in pass 1, resumed and stopped in pass 3 (5 batches per pass), resumed to the end:
    # the fold tallies of the first pass 3 batches come from the checkpoint
    for stop, resume in ((2, False), (7, True)):
        with pytest.raises(Interrupted):
            run_extract(ExtractConfig(**(vars(cfg) | {"stop_after_batches": stop,
                                                      "resume": resume})))  # fmt: skip
    run_extract(ExtractConfig(**(vars(cfg) | {"resume": True})))
    assert_folds_sum_to_whole(lake, 4)
    for fold in range(4):
        assert_fold_matches_brute_force(lake, probe, fold, 4, 0, 0.005, "upsampled")


@pytest.mark.slow
def test_fold_tallies_under_torchrun(probe: ProbeSet, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]),
               str(Path(__file__).parent)]), OMP_NUM_THREADS="1")  # fmt: skip
    torchrun = Path(sys.executable).parent / "torchrun"
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "lce.cli", "extract",
         MODEL, "--layer", "block1", "--layer", "block2", "--probe", f"broden:{probe.root}",
         "--lake", str(lake), "--name", "cnn", "--batch-size", "2", "--quantile", "0.08",
         "--device", "cpu", "--workers", "0", "--folds", "3", "--fold-seed", "7"],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_folds_sum_to_whole(lake, 3)
    for fold in range(3):
        assert_fold_matches_brute_force(lake, probe, fold, 3, 7, 0.08, "raw")
