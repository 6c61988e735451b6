"""The paper's published data (Mustapha et al. 2022) turned into lake tables.

The two files are read from a folder or downloaded from the authors' repository at a pinned
commit; either way their sha256 must match before anything is written.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from base.download import download, verify_sha256
from base.errors import LceError
from warehouse.lake import Write, commit

SOURCE = "paper-2022"
BASE_URL = (
    "https://raw.githubusercontent.com/AhmadM-DL/Intermodel-Interpretation/"
    "7474b6605511cfab18e6e99eee8b00638666cb03/Data"
)
PROFILES_FILE = "models_dissect_profiles_raw.csv"
TASKS_FILE = "models_performance_on_tasks.csv"
SHA256 = {
    PROFILES_FILE: "5363c6c77e0b99354177340b6f27ba4cd90d59656ddb6128504efec4bbeba33c",
    TASKS_FILE: "506656c7689ee3fa144d5096e92551d8f6cd8399f52b84450c6f108ffbd5abfd",
}
# The published table is ResNet-50 layer4 for every model.
LAYER = "layer4"
WEAK = "authors' exclusion: weak profile (few interpretable units)"
NO_TASKS = "authors' exclusion: no task data"
# The authors' exclusion list (reference README), the reference's default exclude_models.
EXCLUSIONS = {
    "SimCLRV1(R)": WEAK,
    "SimCLRV2(R)": WEAK,
    "Random(R)": WEAK,
    "SwAV200(R)": NO_TASKS,
    "SwAV400(R)": NO_TASKS,
    "SwAV200bs256(R)": NO_TASKS,
    "SwAV400_2x244(R)": NO_TASKS,
}


@dataclass(frozen=True)
class Loaded:
    unit_labels: pl.DataFrame
    task_benchmarks: pl.DataFrame
    exclusions: pl.DataFrame


def fetch(cache: Path) -> Path:
    """Download both files into ``cache``, verified; LCE_REFERENCE_URL overrides the address."""
    base = os.environ.get("LCE_REFERENCE_URL", BASE_URL).rstrip("/")
    for name, digest in SHA256.items():
        download(f"{base}/{name}", cache / name, digest)
    return cache


def _require(frame: pl.DataFrame, path: Path, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise LceError(f"{path}: missing column(s) {', '.join(missing)}")


def convert_profiles(path: Path) -> pl.DataFrame:
    """Dissect's best label per unit -> lake unit_labels ('-', background, is kept as is)."""
    frame = pl.read_csv(path)
    _require(frame, path, ["name", "unit", "iou", "label", "category"])
    return frame.select(
        pl.col("name").alias("model"),
        pl.lit(LAYER).alias("layer"),
        pl.col("unit").cast(pl.Int32),
        pl.col("label").alias("concept"),
        pl.col("category"),
        pl.col("iou").cast(pl.Float64),
    )


_FEW_SHOT = re.compile(r"^(?P<dataset>.+)_(?P<k>\d+)_shot$")


def task_column(column: str) -> tuple[str, str, str, bool]:
    """Map a wide column name to (task family, dataset, metric, higher_is_better)."""
    if column.startswith("dt_"):
        return "many_shot_linear", column[3:], "top-1 accuracy", True
    for prefix, task in (
        ("voc_forzen_", "detection_frozen"),
        ("voc_tuned_", "detection_finetuned"),
    ):
        if column.startswith(prefix):
            metric = {"ap": "AP", "ap_50": "AP50", "ap_75": "AP75"}.get(column[len(prefix) :])
            if metric:
                return task, "VOC07+12", metric, True
    if match := _FEW_SHOT.match(column):
        return "few_shot", match["dataset"], f"{match['k']}-shot accuracy", True
    if column.startswith("sne_"):
        stat = column[4:]
        if stat in {"Mean", "Median"}:
            return "surface_normals", "NYUv2", f"{stat.lower()} angular error", False
        return "surface_normals", "NYUv2", f"% within {stat} deg", True
    raise LceError(f"{TASKS_FILE}: column {column!r} is not a known task column")


def convert_tasks(path: Path) -> pl.DataFrame:
    """The wide task table -> long task_benchmarks; index debris columns are dropped."""
    frame = pl.read_csv(path)
    _require(frame, path, ["model"])
    tasks = [c for c in frame.columns if c not in {"", "model"} and not c.startswith("Unnamed:")]
    rows = []
    for column in tasks:
        task, dataset, metric, higher = task_column(column)
        rows.append(
            frame.select(
                pl.col("model"),
                pl.lit(task).alias("task"),
                pl.lit(dataset).alias("dataset"),
                pl.lit(metric).alias("metric"),
                pl.col(column).cast(pl.Float64).alias("value"),
                pl.lit(higher).alias("higher_is_better"),
            )
        )
    return pl.concat(rows).filter(pl.col("value").is_not_null())


def load(folder: Path) -> Loaded:
    """Verify and convert the two files in ``folder`` (nothing is written here)."""
    for name, digest in SHA256.items():
        path = folder / name
        if not path.is_file():
            raise LceError(f"{path}: reference file not found")
        verify_sha256(path, digest)
    exclusions = pl.DataFrame(
        {"model": list(EXCLUSIONS), "reason": list(EXCLUSIONS.values())}, schema_overrides=None
    )
    return Loaded(
        unit_labels=convert_profiles(folder / PROFILES_FILE),
        task_benchmarks=convert_tasks(folder / TASKS_FILE),
        exclusions=exclusions,
    )


def write(loaded: Loaded, lake: Path) -> None:
    """The three tables in one lake commit: all of them land, or none."""
    keys = {"source": SOURCE}
    commit(
        lake,
        [
            Write("unit_labels", keys, loaded.unit_labels.to_arrow()),
            Write("task_benchmarks", keys, loaded.task_benchmarks.to_arrow()),
            Write("model_exclusions", keys, loaded.exclusions.to_arrow()),
        ],
    )
