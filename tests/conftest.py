"""Shared fixtures: the paper's reference data (skipped where absent) and small generated lakes."""

from __future__ import annotations

import os

# Torch runs on one CPU thread in each test process and in the processes tests start (they
# inherit the variable): two xdist workers with two OpenMP threads each on two cores spent much
# of their time waiting on each other (README, "Tests": the suite 704 s against 873 s). A value
# set outside is kept. tests/test_upsample.py sets two threads itself, the production default.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from lce.cli import app  # noqa: E402

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


def _suffix_nodeid(item: pytest.Item, group: str) -> None:
    """Append ``@group`` to the test's node id, as pytest-xdist does for ``--dist loadgroup``.

    xdist 3.8 appends it to ``item._nodeid``, but pytest 9.2 reads the node id from ``item._id``
    (a structured NodeId), so the suffix never reached xdist's scheduler: every group was split
    across the workers and each shared warehouse built on both (in one CI run the demo took 161 s
    of setup on one worker and 123 s on the other). Where ``_id`` or pytest's parser is missing
    (another pytest), xdist's own suffix is left to work, or the groups stay split: slower, never
    wrong."""
    if not hasattr(item, "_id"):
        return
    try:
        from _pytest.nodeid import coerce_node_id
    except ImportError:
        return
    item._id = coerce_node_id(f"{item.nodeid}@{group}")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker, and before xdist reads groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    grouped = config.pluginmanager.hasplugin("xdist")
    scheduled = getattr(config.option, "loadgroup", False)  # set on xdist's workers only
    for item in items:
        if BUILT_WAREHOUSES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if grouped:
            group = _group(item)
            item.add_marker(pytest.mark.xdist_group(group))
            if scheduled:
                _suffix_nodeid(item, group)
