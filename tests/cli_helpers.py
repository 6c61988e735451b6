"""Helpers that several test modules share to drive the real CLI (moved here so that no test
module imports another)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import REPO, lce

MODEL = "probe_factory:small_cnn"
TESTS = Path(__file__).parent


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)]),
        "COLUMNS": "200",
        **(extra or {}),
    }


def extract(probe: Path, lake: Path, *extra: str, model: str = MODEL) -> tuple[int, str]:
    return lce(
        "extract", model, "--layer", "block1", "--probe", f"broden:{probe}", "--lake", lake,
        "--name", "cnn", "--batch-size", "2", "--workers", "0", *extra,
    )  # fmt: skip


def assert_clean_failure(code: int, out: str, lake: Path, *needles: str) -> None:
    assert code != 0
    lines = [x for x in out.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), out
    for needle in needles:
        assert needle in out, (needle, out)
    for table in ("runs", "unit_thresholds", "unit_concept_tally", "unit_top_images",
                  "unit_top_maps", "concepts"):  # fmt: skip
        assert not (lake / table).exists(), table
