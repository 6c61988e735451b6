"""Shared fixtures: the paper's reference data (skipped where absent) and small generated lakes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lce.cli import app

# The explorer's warehouses (app_db, toy_home) and its page driver (open_page), shared by
# tests/test_app*.py.
pytest_plugins = ["tests.app_fixtures", "tests.app_driver"]

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(
    os.environ.get("LCE_REFERENCE_DIR", REPO.parent / "shared" / "reference" / "paper-2022")
)
# The paper's default exclusions (written down here from the paper, not read from the code):
# models with a weak profile and the SwAV variants without task data.
EXCLUDED = {
    "SimCLRV1(R)",
    "SimCLRV2(R)",
    "Random(R)",
    "SwAV200(R)",
    "SwAV400(R)",
    "SwAV200bs256(R)",
    "SwAV400_2x244(R)",
}
needs_reference = pytest.mark.skipif(
    not (REFERENCE / "models_dissect_profiles_raw.csv").is_file(),
    reason=f"the paper's published data is not at {REFERENCE} (set LCE_REFERENCE_DIR)",
)


def lce(*args: str | Path) -> tuple[int, str]:
    """Run the real command line in-process; returns (exit code, stdout + stderr)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture(scope="session")
def reference_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with the reference data loaded and built once for the session."""
    if not (REFERENCE / "models_dissect_profiles_raw.csv").is_file():
        pytest.skip(f"the paper's published data is not at {REFERENCE}")
    home = tmp_path_factory.mktemp("reference-home")
    code, out = lce("reference", "load", "--from", REFERENCE, "--lake", home / "lake")
    assert code == 0, out
    code, out = lce("build", "--lake", home / "lake", "--db", home / "lce.duckdb")
    assert code == 0, out
    return home


# The shared warehouses: each runs `dbt build` (the demo, a whole `lce demo`) once per session,
# 15 to 40 s on a loaded two-core machine. A test that asks for one, directly or through another
# fixture, is slow by that alone, so it is marked here rather than by hand in every module: a new
# test on a built warehouse leaves the fast loop (`pytest -m "not slow"`) without anyone
# remembering to mark it. (app_db asks for its home at run time, so it is named itself.)
BUILT_WAREHOUSES = {"reference_home", "toy_home", "app_db", "maps_home", "demo"}


# `make test` runs the suite on several workers (pytest-xdist, `--dist loadgroup`). Each worker is
# its own process with its own session fixtures, so a warehouse asked for by tests on two workers
# would be built twice, and tests that share a module's fixtures would pay for them twice. Every
# test is therefore put in a group that one worker runs whole: the tests of a shared warehouse
# together (the first of these it asks for; app_db is the reference warehouse where its data is
# here), every other test with its module. A worker then runs exactly what one serial session
# would for those tests, in the same order.
WAREHOUSE_GROUPS = ("demo", "maps_home", "toy_home", "app_db", "reference_home")


def _group(item: pytest.Item) -> str:
    names = set(getattr(item, "fixturenames", ()))
    for fixture in WAREHOUSE_GROUPS:
        if fixture in names:
            if fixture == "app_db" and (REFERENCE / "models_dissect_profiles_raw.csv").is_file():
                return "reference_home"
            return fixture
    return item.nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    grouped = config.pluginmanager.hasplugin("xdist")
    for item in items:
        if BUILT_WAREHOUSES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if grouped:
            item.add_marker(pytest.mark.xdist_group(_group(item)))
