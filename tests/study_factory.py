"""A small study made by the tests: a probe set of a few images and three small CNNs
(tests/probe_factory.py's SmallCNN with their own random weights), two layers each."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import torch

from tests.conftest import REPO
from tests.probe_factory import make_probe, small_cnn
from warehouse.lake import SCHEMAS, read_table

SPEC = "tests.probe_factory:small_cnn"
MODELS = ("alpha", "beta", "gamma")
LAYERS = ("block1", "block2")


def write_weights(path: Path, seed: int) -> Path:
    model = small_cnn()
    torch.manual_seed(seed)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    torch.save(model.state_dict(), path)
    return path


def make_study(folder: Path, n_images: int = 6, extra: str = "", models: tuple = MODELS) -> Path:
    """study.toml in ``folder`` with its probe set and weights files beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "probe").exists():
        make_probe(folder / "probe", n_images=n_images, size=24, label_size=12)
    text = [
        '[probe]\npath = "broden:probe"\n',
        '[dissection]\nquantile = 0.05\nbasis = "raw"\nbatch_size = 2\ntop_images = 2\n'
        "checkpoint_every = 1\nnull_permutations = 1\n" + extra,
    ]
    for i, name in enumerate(models):
        write_weights(folder / f"{name}.pt", seed=i + 1)
        layers = ", ".join(f'"{x}"' for x in LAYERS)
        text.append(
            f'[[models]]\nname = "{name}"\nspec = "{SPEC}"\nweights = "{name}.pt"\n'
            f"layers = [{layers}]\n"
        )
    path = folder / "study.toml"
    path.write_text("\n".join(text))
    return path


# Columns that name a run rather than its result: its id, when it started, how long it took.
VOLATILE = {"runs": ("run_id", "started_at", "seconds")}


def lake_tables(lake: Path, volatile: bool = False) -> dict[str, pa.Table]:
    """Every table of the lake, rows in a fixed order; without the run-naming columns unless
    ``volatile``."""
    out = {}
    for table in SCHEMAS:
        data = read_table(lake, table)
        if not volatile:
            data = data.drop_columns([c for c in VOLATILE.get(table, ()) if c in data.column_names])
        keys = [c for c in data.column_names if not pa.types.is_list(data.schema.field(c).type)]
        out[table] = data.sort_by([(c, "ascending") for c in keys])
    return out


def assert_same_lake(a: Path, b: Path) -> None:
    left, right = lake_tables(a), lake_tables(b)
    for table in SCHEMAS:
        assert left[table].equals(right[table]), table
    assert len(left["runs"]) == 6


def study_cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`lce study ...` in its own process (the shards of an array are processes)."""
    return subprocess.Popen(
        [sys.executable, "-m", "lce.cli", "study", *map(str, args)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def finished(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out
