"""Warehouses for the explorer's tests (tests/test_app.py and tests/test_app_browser.py).

A plugin module (listed in conftest's ``pytest_plugins``) so both test files share one
session-scoped build instead of building the same warehouse twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import REFERENCE, lce
from warehouse.lake import write_partition

TOP_IMAGE_MODEL, TOP_IMAGE_LAYER = "tA", "l4"


def _build(home: Path) -> Path:
    code, out = lce("build", "--lake", home / "lake", "--db", home / "lce.duckdb")
    assert code == 0, out
    return home / "lce.duckdb"


@pytest.fixture(scope="session")
def toy_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated study whose lake also has top images, and a probe folder holding them."""
    home = tmp_path_factory.mktemp("toy-home")
    lake = home / "lake"
    from tests.toy_lake import make_toy_lake, top_images_table

    make_toy_lake(lake)
    probe = home / "probe"
    (probe / "images" / "toy").mkdir(parents=True)
    for i in range(5):
        Image.new("RGB", (16, 12), (40 * i, 100, 200 - 30 * i)).save(
            probe / "images" / "toy" / f"img_{i}.png"
        )
    rows = []
    for unit in range(12):
        for rank in (1, 2, 3):
            rows.append((unit, rank, f"toy/img_{(unit + rank) % 5}.png", 10.0 - rank))
    rows.append((0, 4, "toy/not_there.png", 5.0))
    write_partition(
        lake,
        "unit_top_images",
        {"model": TOP_IMAGE_MODEL, "layer": TOP_IMAGE_LAYER},
        top_images_table(TOP_IMAGE_MODEL, TOP_IMAGE_LAYER, rows),
    )
    _build(home)
    return home


@pytest.fixture(scope="session")
def app_db(request: pytest.FixtureRequest) -> Path:
    """The reference warehouse (the paper's 20 models) when its data is here, else the toy one."""
    if (REFERENCE / "models_dissect_profiles_raw.csv").is_file():
        home: Path = request.getfixturevalue("reference_home")
    else:
        home = request.getfixturevalue("toy_home")
    return home / "lce.duckdb"


@pytest.fixture(scope="session")
def maps_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo-like study made by the real extraction path: a generated probe set, two small
    CNNs (default and seeded weights) dissected with top images and their activation maps
    (unit_top_maps), built. The Gallery, Concept and outline tests (issue 13) share it."""
    import sys

    import torch

    from extract.engine import ExtractConfig, run_extract

    tests_dir = str(Path(__file__).parent)
    if tests_dir not in sys.path:  # "probe_factory:small_cnn" names tests/probe_factory.py
        sys.path.insert(0, tests_dir)
    from tests.probe_factory import make_probe, small_cnn

    home = tmp_path_factory.mktemp("maps-home")
    probe = make_probe(home / "probe" / "broden", n_images=12)
    torch.manual_seed(7)
    weights = home / "seeded.pt"
    torch.save(type(small_cnn())().state_dict(), weights)
    for name, extra in (("cnnA", {}), ("cnnB", {"weights": weights})):
        run_extract(
            ExtractConfig(
                model="probe_factory:small_cnn", layers=["block1", "block2"], probe=probe.root,
                lake=home / "lake", name=name, batch_size=4, progress=False, top_images=3,
                quantile=0.08, **extra,  # type: ignore[arg-type]
            )
        )  # fmt: skip
    _build(home)
    return home


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A reduced `lce demo` run through the command line: (work folder, its printout). Shared by
    tests/test_demo.py and the Gallery browser test."""
    from tests.conftest import lce

    # $HOME/demo, so that the rerun below can find the same work through LCE_HOME alone
    work = tmp_path_factory.mktemp("demo-home") / "demo"
    code, out = lce(
        "demo", "--workdir", work, "--probe-images", "150", "--train-steps", "100",
        "--task-images", "600",
    )  # fmt: skip
    assert code == 0, out
    return work, out
