"""A warehouse whose every name is markup: the explorer must show each as the text it is.

The toy study (tests/toy_lake.py) is copied through the real lake writer with its model, layer,
concept, category, task, dataset, metric and source names replaced by Markdown and HTML that
would become a live link, a remote image, emphasis or KaTeX if a page rendered it; every name
passes ``check_name``, the check `lce extract --name` and `lce benchmarks add` apply, so a
visitor's warehouse can hold them. Then `lce build` as a user runs it. The links and images all
point at 127.0.0.1:9 (the discard port: nothing is fetched even if one leaked).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from tests.conftest import lce
from tests.toy_lake import make_toy_lake, top_images_table
from warehouse.lake import PARTITION_KEYS, check_name, write_partition

LEAK = "127.0.0.1:9"  # no link or image of a page may point here
PHISH = f"[phish](http://{LEAK}/p) ![img](http://{LEAK}/track.png)"
ANCHOR = f'<a href="http://{LEAK}/x">x</a>'
IMAGE = f"<img src=http://{LEAK}/t.png>"
BOLD = "*bold*"
MATH = "$x$"
HOSTILE = (PHISH, ANCHOR, IMAGE, BOLD, MATH)

RENAME: dict[str, dict[str, str]] = {
    "model": {"tA": PHISH, "tB": ANCHOR, "p1": IMAGE, "p2": BOLD, "p3": MATH, "ghost": "ghost " + BOLD},
    "layer": {"l4": ANCHOR, "l3": MATH, "layer4": PHISH},
    "concept": {"red": PHISH, "blue": ANCHOR, "disc": IMAGE, "square": BOLD, "stripes": MATH},
    "category": {"material": IMAGE, "color": BOLD},
    "task": {"probe": PHISH},
    "dataset": {"shapes": ANCHOR, "colours": IMAGE},
    "metric": {"accuracy": MATH},
    "source": {"pub": BOLD, "toy": IMAGE},
}  # fmt: skip
TOP_IMAGE_MODEL, TOP_IMAGE_LAYER = PHISH, ANCHOR
N_FEATURE_IMAGES = 60  # above var similarity_min_images (50)
MISSING_IMAGE = f"toy/![gone](http://{LEAK}/m.png).png"  # a top image not in the probe folder


def _renamed(table: pa.Table) -> pa.Table:
    for column, names in RENAME.items():
        if column in table.column_names:
            values = [names.get(v, v) if v is not None else None for v in table[column].to_pylist()]
            index = table.column_names.index(column)
            table = table.set_column(index, column, pa.array(values, type=pa.string()))
    return table


def make_hostile_lake(lake: Path, probe: Path) -> None:
    """The toy lake, renamed, with top images for one (model, layer) from ``probe`` (whose
    folder every run records, as extraction does)."""
    toy = lake.with_name(lake.name + "-plain")
    make_toy_lake(toy)
    parts: dict[tuple[str, tuple[tuple[str, str], ...]], list[pa.Table]] = defaultdict(list)
    for file in sorted(toy.glob("*/**/*.parquet")):
        table = file.relative_to(toy).parts[0]
        if table not in PARTITION_KEYS:
            continue
        keys = dict(
            (k, unquote(v))
            for k, _, v in (p.partition("=") for p in file.parent.relative_to(toy / table).parts)
        )
        renamed = {k: RENAME.get(k, {}).get(v, v) for k, v in keys.items()}
        for name in renamed.values():
            check_name("name", name)  # what --name and benchmark files accept
        data = _renamed(pq.read_table(file))
        if table == "runs":  # the run recorded its probe folder (broden:<path>)
            data = data.set_column(
                data.column_names.index("probe"), "probe",
                pc.cast(pa.array([f"broden:{probe}"] * data.num_rows), pa.string()),
            )  # fmt: skip
        parts[(table, tuple(renamed.items()))].append(data)
    for (table, keys), tables in parts.items():
        write_partition(lake, table, dict(keys), pa.concat_tables(tables))
    (probe / "images" / "toy").mkdir(parents=True)
    for i in range(5):
        Image.new("RGB", (16, 12), (40 * i, 100, 200 - 30 * i)).save(
            probe / "images" / "toy" / f"img_{i}.png"
        )
    rng = np.random.default_rng(0)
    for model in (PHISH, ANCHOR):  # image features for the Similarity page (one model pair)
        write_partition(
            lake, "image_features", {"model": model, "layer": ANCHOR},
            pa.table({
                "model": [model] * N_FEATURE_IMAGES, "layer": [ANCHOR] * N_FEATURE_IMAGES,
                "image": [f"toy/f{i}.png" for i in range(N_FEATURE_IMAGES)],
                "features": pa.array(rng.random((N_FEATURE_IMAGES, 8)).tolist(),
                                     type=pa.list_(pa.float32())),
            }),
        )  # fmt: skip
    rows = [(u, r, f"toy/img_{(u + r) % 5}.png", 10.0 - r) for u in range(12) for r in (1, 2, 3)]
    rows.append((0, 4, MISSING_IMAGE, 5.0))
    write_partition(
        lake,
        "unit_top_images",
        {"model": TOP_IMAGE_MODEL, "layer": TOP_IMAGE_LAYER},
        top_images_table(TOP_IMAGE_MODEL, TOP_IMAGE_LAYER, rows),
    )


def build_hostile_home(home: Path) -> Path:
    """``home``/lake and ``home``/probe, built into ``home``/lce.duckdb (returned)."""
    make_hostile_lake(home / "lake", home / "probe")
    code, out = lce("build", "--lake", home / "lake", "--db", home / "lce.duckdb")
    assert code == 0, out
    return home / "lce.duckdb"
