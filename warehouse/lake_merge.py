"""`lce lake merge`: lakes of one study, made on several machines or by shards that could not
share a lock, merged into one in a single all-or-nothing commit.

Every source (and the target, if it holds runs) must belong to one study (probe fingerprint,
quantile, basis, null seed: warehouse/run_identity.py). A (model, layer) is taken whole (every
table keyed by model and layer) from the source that holds it; one held by two sources, or by a
source and the target, with another identity (weights, settings) is refused unless
``replace``, and then the last source named wins. Partitions of the other tables (concepts per
probe, benchmark and label sources) are compared by content in the same way. What the target
already holds unchanged is not written again, so a second merge of the same sources is a no-op.
Partition files are copied as they are (``Write`` with a folder), never loaded whole.
"""

from __future__ import annotations

from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

from base.errors import LceError
from warehouse.lake import (
    PARTITION_KEYS,
    SCHEMAS,
    Write,
    _partitions,
    commit,
    conform,
    ensure_writable,
    has_data,
    partition_dir,
    read_table,
    reading,
)
from warehouse.run_identity import differences, run_identity, study_identity

MODEL_TABLES = [t for t, keys in PARTITION_KEYS.items() if keys == ("model", "layer")]
OTHER_TABLES = [t for t in PARTITION_KEYS if t not in MODEL_TABLES]


@dataclass
class Merged:
    """What a merge wrote: (model, layer) pairs and other partitions, and what it left as it was."""

    layers: list[tuple[str, str]] = field(default_factory=list)
    partitions: list[str] = field(default_factory=list)
    unchanged: int = 0


def _keys(lake: Path, table: str, folder: Path) -> tuple[str, ...]:
    parts = folder.relative_to(lake / table).parts
    return tuple(unquote(p.partition("=")[2]) for p in parts)


def _content(folder: Path, table: str) -> pa.Table:
    files = sorted(folder.glob("*.parquet"))
    if not files:
        return SCHEMAS[table].empty_table()
    return pa.concat_tables([conform(table, pq.read_table(f)) for f in files])


def _runs(lake: Path, lock: bool) -> dict[tuple[str, str], dict]:
    return {(r["model"], r["layer"]): r for r in read_table(lake, "runs", lock=lock).to_pylist()}


def _check_study(named: list[tuple[str, dict[tuple[str, str], dict]]]) -> None:
    """Every lake that holds runs belongs to the first one's study."""
    first: tuple[str, dict] | None = None
    for name, runs in named:
        for run in runs.values():
            ours = study_identity(run)
            if first is None:
                first = (name, ours)
            elif ours != first[1]:
                diff = ", ".join(differences(ours, first[1]))
                raise LceError(
                    f"merge source {name} belongs to another study than {first[0]}: {diff} "
                    f"(value in {first[0]} in parentheses)"
                )


def merge_lakes(target: Path, sources: list[Path], replace: bool = False) -> Merged:
    """Merge ``sources`` into ``target`` in one commit (see the module docstring)."""
    for src in sources:
        if not src.is_dir():
            raise LceError(f"merge source {src}: no such lake folder")
        if src.resolve() == target.resolve():
            raise LceError(f"merge source {src} is the target itself")
    # a lake without data (a shard that had no jobs) has nothing to give
    sources = [src for src in sources if has_data(src)]
    ensure_writable(target)
    source_runs = [(str(s), _runs(s, lock=True)) for s in sources]
    _check_study(source_runs)
    merged = Merged()

    def plan() -> tuple[list[Write], list[Path]]:
        held = _runs(target, lock=False)
        _check_study([(f"the target {target}", held), *source_runs])
        writes, drops = _model_writes(target, sources, source_runs, held, replace, merged)
        more = _other_writes(target, sources, replace, merged)
        if not writes and not more and not drops:
            raise _NothingToDo  # no commit at all: the lake's state (and its commit id) stays
        return writes + more, drops

    with ExitStack() as stack:
        for src in sources:  # no commit lands in a source while it is copied
            stack.enter_context(reading(src))
        with suppress(_NothingToDo):
            commit(target, [], plan=plan)
    return merged


class _NothingToDo(Exception):
    """Raised under the lock when the target already holds everything: nothing to commit."""


def _model_writes(
    target: Path,
    sources: list[Path],
    source_runs: list[tuple[str, dict[tuple[str, str], dict]]],
    held: dict[tuple[str, str], dict],
    replace: bool,
    merged: Merged,
) -> tuple[list[Write], list[Path]]:
    """Each (model, layer) of the sources: from which source, or refused, or already there."""
    chosen: dict[tuple[str, str], tuple[Path, dict]] = {}
    for src, (name, runs) in zip(sources, source_runs, strict=True):
        for key, run in sorted(runs.items()):
            earlier = chosen.get(key) or ((target, held[key]) if key in held else None)
            if earlier is not None and run_identity(run) != run_identity(earlier[1]):
                if not replace:
                    diff = ", ".join(differences(run_identity(run), run_identity(earlier[1])))
                    raise LceError(
                        f"{key[0]} {key[1]} is in {name} and in {earlier[0]} with other weights "
                        f"or settings: {diff} (value in {earlier[0]} in parentheses); use "
                        "--replace to take the last source's"
                    )
            elif earlier is not None:
                if earlier[0] == target:
                    merged.unchanged += 1
                continue  # the same dissection: the first one found stays
            chosen[key] = (src, run)
    writes: list[Write] = []
    drops: list[Path] = []
    for (model, layer), (src, _) in sorted(chosen.items()):
        merged.layers.append((model, layer))
        keys = {"model": model, "layer": layer}
        for table in MODEL_TABLES:
            folder = partition_dir(src, table, keys)
            if folder.is_dir():
                writes.append(Write(table, keys, folder))
            elif partition_dir(target, table, keys).is_dir():
                drops.append(partition_dir(target, table, keys))
    return writes, drops


def _other_writes(target: Path, sources: list[Path], replace: bool, merged: Merged) -> list[Write]:
    """Partitions of the tables not keyed by model and layer, compared by content."""
    writes: list[Write] = []
    for table in OTHER_TABLES:
        chosen: dict[tuple[str, ...], tuple[str, Path, pa.Table]] = {}
        for folder in _partitions(target, table):
            chosen[_keys(target, table, folder)] = (
                f"the target {target}",
                target,
                _content(folder, table),
            )
        from_target = set(chosen)
        for src in sources:
            for folder in _partitions(src, table):
                key = _keys(src, table, folder)
                data = _content(folder, table)
                if key in chosen and chosen[key][2].equals(data):
                    continue
                if key in chosen and not replace:
                    raise LceError(
                        f"{table} {'/'.join(key)} differs between {src} and {chosen[key][0]}; "
                        "use --replace to take the last source's"
                    )
                chosen[key] = (str(src), folder, data)
                from_target.discard(key)
        for key, (_, folder, _) in sorted(chosen.items()):
            if key in from_target:
                merged.unchanged += 1
                continue
            keys = dict(zip(PARTITION_KEYS[table], key, strict=True))
            writes.append(Write(table, keys, folder))
            merged.partitions.append(f"{table}/{'/'.join(key)}")
    return writes
