"""Taking things out of a lake: a model (or one of its layers) and a benchmark source.

Each removal is one lake commit (``warehouse.lake.commit``), so it is all-or-nothing under the
same lock as every write: what it removes is decided under the lock, a kill at any step leaves
the lake as it was before or after, and readers never see half of it. A model's dissection
partitions (every table keyed by model and layer) are dropped; its rows in published unit
labels (``unit_labels``, one partition per source holding many models) are filtered out of
that source's partition, which is rewritten, or dropped when nothing else is left in it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

from base.errors import LceError
from warehouse.lake import PARTITION_KEYS, Write, _partitions, commit, conform

MODEL_TABLES = [t for t, keys in PARTITION_KEYS.items() if keys == ("model", "layer")]


@dataclass
class Removed:
    """What a removal took out: partitions dropped, unit-label rows removed per source."""

    partitions: list[str] = field(default_factory=list)
    label_rows: dict[str, int] = field(default_factory=dict)


def _value(folder: Path) -> str:
    return unquote(folder.name.partition("=")[2])


def _labels(folder: Path) -> pa.Table:
    """One unit_labels partition, read directly (the caller holds the lake's lock)."""
    return pa.concat_tables(
        [conform("unit_labels", pq.read_table(f)) for f in sorted(folder.glob("*.parquet"))]
    )


def remove_model(lake: Path, model: str, layer: str | None = None) -> Removed:
    """Drop a model's (or one layer's) dissections and unit labels in one commit; a model or
    layer the lake does not hold is an error naming the closest it does."""
    removed = Removed()

    def plan() -> tuple[list[Write], list[Path]]:
        drops, writes, known = [], [], set()
        for table in MODEL_TABLES:
            for folder in _partitions(lake, table):
                m, lay = _value(folder.parent), _value(folder)
                known.add((m, lay))
                if m == model and layer in (None, lay):
                    drops.append(folder)
        for folder in _partitions(lake, "unit_labels"):
            data = _labels(folder)
            pairs = [(str(m), str(lay)) for m, lay in zip(data["model"].to_pylist(),
                     data["layer"].to_pylist(), strict=True)]  # fmt: skip
            known |= set(pairs)
            hit = [m == model and layer in (None, lay) for m, lay in pairs]
            count = sum(hit)
            if not count:
                continue
            removed.label_rows[_value(folder)] = count
            keep = data.filter(pa.array([not h for h in hit]))
            if keep.num_rows:
                writes.append(Write("unit_labels", {"source": _value(folder)}, keep))
            else:
                drops.append(folder)
        if not drops and not writes:
            raise LceError(_not_found(lake, model, layer, known))
        removed.partitions = sorted(str(p.relative_to(lake)) for p in drops)
        return writes, drops

    commit(lake, [], plan=plan)
    return removed


def _not_found(lake: Path, model: str, layer: str | None, known: set[tuple[str, str]]) -> str:
    models = sorted({m for m, _ in known})
    if layer is not None and model in models:
        layers = sorted({lay for m, lay in known if m == model})
        return (
            f"lake {lake}: model {model!r} has no layer {layer!r} (its layers: {', '.join(layers)})"
        )
    close = difflib.get_close_matches(model, models, n=1, cutoff=0.0)
    hint = f"; the closest is {close[0]!r}" if close else "; the lake holds no model"
    return f"lake {lake}: no model {model!r}{hint}"


def remove_benchmarks(lake: Path, source: str) -> int:
    """Drop one benchmark source (rows it held returned); an unknown source is an error
    naming the sources there are."""
    rows = 0

    def plan() -> tuple[list[Write], list[Path]]:
        nonlocal rows
        folders = {_value(f): f for f in _partitions(lake, "task_benchmarks")}
        if source not in folders:
            there = ", ".join(sorted(folders)) or "none"
            raise LceError(f"lake {lake}: no benchmark source {source!r} (sources: {there})")
        rows = sum(pq.read_metadata(f).num_rows for f in folders[source].glob("*.parquet"))
        return [], [folders[source]]

    commit(lake, [], plan=plan)
    return rows
