"""Task benchmarks: long-format results (model, task, dataset, metric, value, higher_is_better)."""

from __future__ import annotations

import difflib
import math
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from base.errors import LceError
from warehouse.lake import check_name, conform, partition_dir, read_table, reading, write_partition

COLUMNS = ("model", "task", "dataset", "metric", "value", "higher_is_better")
# Correlations square and sum values; beyond this magnitude a sum of squares can overflow to inf
# and every statistic would silently become r = 0, p = 1. No real metric comes near it.
MAX_ABS_VALUE = 1e100
KEY = ("model", "task", "dataset", "metric")
_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}


def _read_raw(path: Path) -> pl.DataFrame:
    """Read every column as text so validation, not the reader, decides what is wrong."""
    if not path.is_file():
        raise LceError(f"{path}: no such benchmark file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pl.read_parquet(path)
            return frame.with_columns(pl.all().cast(pl.String))
        if suffix == ".csv":
            return pl.read_csv(path, infer_schema=False)
    except Exception as exc:  # polars raises several types for unreadable files
        raise LceError(f"{path}: cannot read as {suffix[1:]}: {exc}".splitlines()[0]) from exc
    raise LceError(f"{path}: expected a .csv or .parquet benchmark file")


def validate(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    """Check a raw text frame against the benchmark contract; return it typed."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise LceError(
            f"{name}: missing column(s) {', '.join(missing)}; expected columns {', '.join(COLUMNS)}"
        )
    frame = frame.select(COLUMNS)
    values: list[float] = []
    flags: list[bool] = []
    rows = frame.iter_rows(named=True)
    for i, row in enumerate(rows, start=2 if name.endswith(".csv") else 1):
        where = f"{name}: row {i}"
        for field in KEY:
            if row[field] is None or not str(row[field]).strip():
                raise LceError(f"{where}: field {field!r} is empty")
            # Names from files get the same check as --name: a control character would reach
            # every terminal that prints the name.
            check_name(f"{where}: field {field!r}", str(row[field]))
        raw = row["value"]
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise LceError(f"{where}: field 'value' is {raw!r}, expected a number") from None
        if not math.isfinite(value):
            raise LceError(f"{where}: field 'value' is {raw!r}, expected a finite number")
        if _underflows(str(raw), value):
            raise LceError(
                f"{where}: field 'value' is {raw!r}, too small to store as a number "
                f"(it would read {value!r}; rescale the metric)"
            )
        if abs(value) > MAX_ABS_VALUE:
            raise LceError(
                f"{where}: field 'value' is {raw!r}, too large to compare safely "
                f"(|value| must be at most {MAX_ABS_VALUE:g}; rescale the metric)"
            )
        flag = str(row["higher_is_better"]).strip().lower()
        if flag not in _TRUE | _FALSE:
            raise LceError(
                f"{where}: field 'higher_is_better' is {row['higher_is_better']!r}, "
                "expected true or false"
            )
        values.append(value)
        flags.append(flag in _TRUE)
    typed = frame.with_columns(
        pl.Series("value", values, dtype=pl.Float64),
        pl.Series("higher_is_better", flags, dtype=pl.Boolean),
        *[pl.col(c).str.strip_chars() for c in KEY],
    )
    dupes = typed.group_by(KEY).len().filter(pl.col("len") > 1)
    if dupes.height:
        first = dupes.row(0, named=True)
        key = ", ".join(str(first[c]) for c in KEY)
        raise LceError(
            f"{name}: duplicate (model, task, dataset, metric) = ({key}) "
            f"appears {first['len']} times"
        )
    if typed.height == 0:
        raise LceError(f"{name}: no benchmark rows")
    return typed


def _underflows(raw: str, value: float) -> bool:
    """Whether a non-zero literal parsed to zero or to a subnormal (digits silently lost)."""
    if value != 0.0:
        return abs(value) < sys.float_info.min
    mantissa = raw.strip().lower().split("e")[0]
    return any(c in "123456789" for c in mantissa)


def source_name(path: Path, source: str | None) -> str:
    name = source or path.stem
    if not name or "/" in name or name.startswith("."):
        raise LceError(f"--source {name!r}: expected a plain name (no '/', not starting with '.')")
    return check_name("--source", name)


def add_benchmarks(
    path: Path, lake: Path, source: str | None = None, unless_same: bool = False
) -> tuple[str, pl.DataFrame]:
    """Validate a benchmark file and write it as the lake partition ``source=<name>``.
    ``unless_same``: leave the lake untouched (no commit) when that partition already holds
    exactly these rows, so a study run with nothing new to do changes nothing."""
    name = source_name(path, source)
    typed = validate(_read_raw(path), str(path))
    data = typed.to_arrow()
    if unless_same and _same_partition(lake, name, data):
        return name, typed
    write_partition(lake, "task_benchmarks", {"source": name}, data)
    return name, typed


def _same_partition(lake: Path, name: str, data: pa.Table) -> bool:
    folder = partition_dir(lake, "task_benchmarks", {"source": name})
    if not folder.is_dir():
        return False
    with reading(lake):
        held = [
            conform("task_benchmarks", pq.read_table(f)) for f in sorted(folder.glob("*.parquet"))
        ]
    return bool(held) and bool(pa.concat_tables(held).equals(conform("task_benchmarks", data)))


def unknown_models(lake: Path, models: list[str]) -> list[str]:
    """One warning per benchmark model the lake knows nothing of (no dissection in ``runs``, no
    labels in ``unit_labels``), naming the closest known model: a typo here would otherwise
    only show as a model without a profile after the next build. No warnings when the lake
    holds no model yet (benchmarks may come first)."""
    known = sorted(
        str(m)
        for table in ("runs", "unit_labels")
        for m in set(read_table(lake, table).column("model").to_pylist())
        if m is not None
    )
    if not known:
        return []
    out = []
    for model in sorted(set(models) - set(known)):
        close = difflib.get_close_matches(model, known, n=1, cutoff=0.0)
        out.append(
            f"model {model!r} is not in the lake (no dissection or unit labels)"
            + (f"; the closest known model is {close[0]!r}" if close else "")
        )
    return out
