"""A warehouse and its lake made by the previous release, lce 0.1.0 (commit 44f5247, the last
commit before warehouses recorded their schema), kept in tests/data/lce-0.1.0/.

How they were made (once, by hand, on this project's build machine):

    git archive 44f5247 | tar -x -C OLD && cd OLD && export PYTHONPATH=OLD
    python -c "from tests.toy_lake import make_toy_lake; make_toy_lake(Path('home/lake'))"
    python -m lce.cli build --lake home/lake --db home/lce.duckdb \\
        --var n_boot=20 --var stability_resamples=5 --var similarity_permutations=9

i.e. 44f5247's own toy lake writer and `lce build` (dbt-core 1.11.16, DuckDB 1.5.6), nothing of
the current code. The file is kept gzipped (8.7 MB of DuckDB blocks, 47 KB compressed; gzip
gives back the very bytes, checked by sha256 below) and the lake as a tar of its Parquet files
(no runs.weights_sha256 column, no .last-commit: the lake of an older lce).
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tarfile
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "lce-0.1.0"
WAREHOUSE_SHA256 = "fe6eb80431a44d3522042acc142a0a54f14fab260e5cf017270eb4261ffe3450"


def old_warehouse(folder: Path, name: str = "lce.duckdb") -> Path:
    """The 0.1.0 warehouse, unpacked into ``folder`` byte for byte."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / name
    with gzip.open(DATA / "lce.duckdb.gz", "rb") as src, db.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == WAREHOUSE_SHA256
    return db


def old_lake(folder: Path) -> Path:
    """The lake 0.1.0 built that warehouse from, unpacked into ``folder``/lake."""
    with tarfile.open(DATA / "lake.tar.gz") as tar:
        tar.extractall(folder, filter="data")
    return folder / "lake"
