"""dim_study and dim_runs: how a warehouse was made, recomputed from its lake and its vars (on
the demo-like study made by the real extraction path, the toy study and the paper's data)."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from streamlit.testing.v1 import AppTest

from base import __version__
from tests.app_driver import has_table, texts
from tests.conftest import EXCLUDED, needs_reference
from tests.study_reference import built_study, expected_study, lake_rows
from tests.toy_lake import TOY_WEIGHTS_SHA256


def runs_mart(db: Path) -> dict[tuple[str, str], dict]:
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute("select * from dim_runs").fetchall()
        names = [d[0] for d in conn.description or []]
    found = {}
    for row in rows:
        record = dict(zip(names, row, strict=True))
        found[(record["model"], record["layer"])] = record
    assert len(found) == len(rows), "one row per (model, layer)"
    return found


def check_study(home: Path) -> dict:
    built = built_study(home / "lce.duckdb")
    assert built.pop("lce_version") == __version__
    when = built.pop("built_at")
    published = datetime.fromtimestamp((home / "lce.duckdb").stat().st_mtime, UTC)
    assert when <= published, "built before the file was published"
    assert built == expected_study(home / "lake")
    return built


def test_dim_study_of_the_demo_like_study(maps_home: Path) -> None:
    """Two small CNNs dissected by the real extraction path (quantile 0.08, 12 images)."""
    study = check_study(maps_home)
    assert (study["n_runs"], study["n_images"], study["quantile"], study["basis"]) == (
        4,
        12,
        0.08,
        "raw",
    )
    assert study["lake_commit"] is not None


def test_dim_runs_of_the_demo_like_study(maps_home: Path) -> None:
    """One row per (model, layer) the lake has a run for, with the run's own values."""
    mart = runs_mart(maps_home / "lce.duckdb")
    runs = lake_rows(maps_home / "lake", "runs")
    assert set(mart) == {(r["model"], r["layer"]) for r in runs}
    for run in runs:
        row = mart[(run["model"], run["layer"])]
        assert row["source"] == "lce extract"
        assert row["is_primary_layer"] == (run["layer_order"] == 0)
        for column in ("run_id", "layer_order", "device", "torch_version", "lce_version",
                       "normalize", "non_strict", "n_units", "n_images", "n_skipped_images",
                       "seconds", "started_at", "settings"):  # fmt: skip
            assert row[column] == run[column], column


def test_dim_runs_weights_sha256_is_sha256sum_of_the_file_given_to_extract(
    maps_home: Path,
) -> None:
    """cnnB was extracted with --weights seeded.pt, cnnA with no weights file."""
    sha = subprocess.run(
        ["sha256sum", str(maps_home / "seeded.pt")], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    mart = runs_mart(maps_home / "lce.duckdb")
    assert {k: v["weights_sha256"] for k, v in mart.items()} == {
        ("cnnA", "block1"): "",
        ("cnnA", "block2"): "",
        ("cnnB", "block1"): sha,
        ("cnnB", "block2"): sha,
    }


def test_dim_study_and_runs_of_the_toy_study(toy_home: Path) -> None:
    check_study(toy_home)
    mart = runs_mart(toy_home / "lce.duckdb")
    assert {k: v["weights_sha256"] for k, v in mart.items() if v["source"] == "lce extract"} == {
        ("tA", "l4"): TOY_WEIGHTS_SHA256["tA"],
        ("tA", "l3"): TOY_WEIGHTS_SHA256["tA"],
        ("tB", "l4"): "",
    }
    published = {(r["model"], r["layer"]) for r in lake_rows(toy_home / "lake", "unit_labels")}
    for key in published:
        assert mart[key]["source"] == "pub" and mart[key]["run_id"] is None, key
        assert mart[key]["weights_sha256"] is None  # published labels: no run, nothing recorded
    assert hashlib.sha256(b"toy weights of tA").hexdigest() == TOY_WEIGHTS_SHA256["tA"]


@needs_reference
def test_dim_study_and_runs_of_the_papers_data(reference_home: Path) -> None:
    """No extraction runs: the dissection settings are empty, the labels' source is named, and
    the exclusions are the authors' list (written down in conftest from the paper)."""
    study = check_study(reference_home)
    assert study["n_runs"] == 0 and study["probe"] is None and study["quantile"] is None
    assert study["label_sources"] == ["paper-2022"] == study["benchmark_sources"]
    assert study["exclude_models"] == sorted(EXCLUDED) and study["exclude_models_from"] == "lake"
    mart = runs_mart(reference_home / "lce.duckdb")
    assert len(mart) == 20 and {layer for _, layer in mart} == {"layer4"}
    assert {(r["source"], r["weights_sha256"], r["n_units"]) for r in mart.values()} == {
        ("paper-2022", None, 2048)
    }


def test_the_overview_says_how_the_warehouse_was_made(
    open_page: Callable[..., AppTest], maps_home: Path
) -> None:
    """The Overview's block: lce info's sentences and dim_runs, without the extraction
    machine's paths (the probe by its folder name)."""
    at = open_page(maps_home / "lce.duckdb", "overview")
    made = texts(at.text)
    assert f"Built by lce {__version__} with schema" in made
    assert "4 (model, layer) runs on probe broden (fingerprint" in made
    assert str(maps_home) not in made, "no path of the machine that ran the extraction"
    assert has_table(at, "weights_sha256")
