"""How `lce extract` resolves a model spec: a random-init architecture is the same network every
run (seeded, recorded in runs.settings), and a `module:function` in the folder lce runs from is
importable without PYTHONPATH, as under `python -m`. Both through the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, lce
from tests.probe_factory import make_probe
from warehouse.lake import read_table


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_probe(tmp_path_factory.mktemp("probe") / "broden", n_images=6).root


def thresholds(lake: Path) -> np.ndarray:
    rows = sorted(read_table(lake, "unit_thresholds").to_pylist(), key=lambda r: r["unit"])
    return np.array([r["threshold"] for r in rows])


def test_a_random_torchvision_network_is_the_same_every_run(probe: Path, tmp_path: Path) -> None:
    def run(lake: str, *extra: str) -> np.ndarray:
        code, out = lce(
            "extract", "torchvision:resnet18", "--layer", "layer1", "--probe", f"broden:{probe}",
            "--lake", tmp_path / lake, "--workers", "0", "--no-features", *extra,
        )  # fmt: skip
        assert code == 0, out
        return thresholds(tmp_path / lake)

    first, again = run("a"), run("b")
    np.testing.assert_array_equal(first, again)  # same default seed: the same random weights
    other = run("c", "--seed", "1")
    assert not np.array_equal(first, other)
    settings = [json.loads(r["settings"]) for r in read_table(tmp_path / "a", "runs").to_pylist()]
    assert [s["init_seed"] for s in settings] == [0]
    seeded = read_table(tmp_path / "c", "runs").to_pylist()
    assert json.loads(seeded[0]["settings"])["init_seed"] == 1


def test_a_module_function_spec_resolves_from_the_working_folder(
    probe: Path, tmp_path: Path
) -> None:
    """The real `lce` script in a subprocess whose PYTHONPATH holds only the checkout: mynet.py
    sits in the folder it runs from, nowhere else."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "mynet.py").write_text(
        "from torch import nn\n\n"
        "def net():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = Path(sys.executable).parent / "lce"
    result = subprocess.run(
        [str(script), "extract", "mynet:net", "--layer", "1", "--probe", f"broden:{probe}",
         "--lake", str(tmp_path / "lake"), "--workers", "0", "--no-features"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    runs = read_table(tmp_path / "lake", "runs").to_pylist()
    assert runs[0]["model"] == "net" and runs[0]["n_units"] == 4
