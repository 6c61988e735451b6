"""The Parquet lake: one folder per table, hive-style partitions, each replaced atomically.

Every file carries all of its table's columns (the partition keys included), so readers never
depend on folder names; folders only let a (model, layer) or a source be replaced as a unit.
A run's partitions (any number, any tables) are committed together: staged under ``lake/.tmp/``,
then moved into place under the lake's lock after one atomic commit point, so a reader or a
killed writer never sees half a run (see ``commit``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

from base.errors import LceError
from base.faults import kill_point


def _schema(fields: list[tuple[str, Any]]) -> pa.Schema:
    return pa.schema([pa.field(name, dtype) for name, dtype in fields])


# The lake contract (docs/DESIGN.md "The lake"), plus the repo's additions documented in
# docs/NOTES.md: runs.layer_order / normalize / n_skipped_images / non_strict / settings,
# and the model_exclusions table.
SCHEMAS: dict[str, pa.Schema] = {
    "runs": _schema(
        [
            ("run_id", pa.string()),
            ("model", pa.string()),
            ("layer", pa.string()),
            ("layer_order", pa.int32()),
            ("probe", pa.string()),
            ("probe_fingerprint", pa.string()),
            ("quantile", pa.float64()),
            ("basis", pa.string()),
            ("normalize", pa.string()),
            ("n_images", pa.int64()),
            ("n_skipped_images", pa.int64()),
            ("n_units", pa.int64()),
            ("non_strict", pa.bool_()),
            ("device", pa.string()),
            ("torch_version", pa.string()),
            ("lce_version", pa.string()),
            ("started_at", pa.timestamp("us", tz="UTC")),
            ("seconds", pa.float64()),
            ("settings", pa.string()),
            ("weights_sha256", pa.string()),
        ]
    ),
    "unit_thresholds": _schema(
        [
            ("model", pa.string()),
            ("layer", pa.string()),
            ("unit", pa.int32()),
            ("threshold", pa.float64()),
            ("act_max", pa.float64()),
            ("act_mean", pa.float64()),
        ]
    ),
    "unit_concept_tally": _schema(
        [
            ("model", pa.string()),
            ("layer", pa.string()),
            ("unit", pa.int32()),
            ("concept_id", pa.int32()),
            ("intersection", pa.int64()),
            ("activation_in_category", pa.int64()),
            ("label_pixels", pa.int64()),
            ("iou", pa.float64()),
        ]
    ),
    # The tally of each fold of the probe images (lce extract --folds K): for every row of
    # unit_concept_tally, one row per fold, whose integer columns sum over the folds to the
    # row's (an image is in one fold); iou is the fold's own. Empty with --folds 1.
    "unit_concept_tally_folds": _schema(
        [
            ("model", pa.string()),
            ("layer", pa.string()),
            ("unit", pa.int32()),
            ("concept_id", pa.int32()),
            ("fold", pa.int32()),
            ("intersection", pa.int64()),
            ("activation_in_category", pa.int64()),
            ("label_pixels", pa.int64()),
            ("iou", pa.float64()),
        ]
    ),
    "unit_top_images": _schema(
        [
            ("model", pa.string()),
            ("layer", pa.string()),
            ("unit", pa.int32()),
            ("rank", pa.int32()),
            ("image", pa.string()),
            ("max_activation", pa.float64()),
        ]
    ),
    "unit_null_iou": _schema(
        [
            ("model", pa.string()),
            ("layer", pa.string()),
            ("unit", pa.int32()),
            ("permutation", pa.int32()),
            ("concept_id", pa.int32()),
            ("iou", pa.float64()),
        ]
    ),
    # Each image's spatially averaged activation vector per dissected layer (image_features): the
    # features the geometric similarity marts compare models by. list<float32>, one width per
    # (model, layer) partition (the layer's channels).
    "image_features": _schema(
        [
            ("model", pa.string()),
            ("layer", pa.string()),
            ("image", pa.string()),
            ("features", pa.list_(pa.float32())),
        ]
    ),
    # The raw activation map (the layer's own h x w, row-major float32) of each unit on each of
    # its top images, and the mask S > T at label resolution (sh x sw, row-major, packed eight
    # pixels a byte by numpy.packbits) exactly as the tally counted it (unit_top_maps): what the
    # explorer outlines on the top images. One row per unit_top_images row.
    "unit_top_maps": _schema(
        [
            ("model", pa.string()),
            ("layer", pa.string()),
            ("unit", pa.int32()),
            ("rank", pa.int32()),
            ("image", pa.string()),
            ("h", pa.int32()),
            ("w", pa.int32()),
            ("values", pa.list_(pa.float32())),
            ("sh", pa.int32()),
            ("sw", pa.int32()),
            ("mask", pa.binary()),
        ]
    ),
    "concepts": _schema(
        [
            ("probe", pa.string()),
            ("concept_id", pa.int32()),
            ("concept", pa.string()),
            ("category", pa.string()),
            ("frequency", pa.int64()),
            ("coverage", pa.float64()),
            ("label_pixels", pa.int64()),
        ]
    ),
    "unit_labels": _schema(
        [
            ("model", pa.string()),
            ("layer", pa.string()),
            ("unit", pa.int32()),
            ("concept", pa.string()),
            ("category", pa.string()),
            ("iou", pa.float64()),
        ]
    ),
    "task_benchmarks": _schema(
        [
            ("model", pa.string()),
            ("task", pa.string()),
            ("dataset", pa.string()),
            ("metric", pa.string()),
            ("value", pa.float64()),
            ("higher_is_better", pa.bool_()),
        ]
    ),
    "model_exclusions": _schema(
        [
            ("model", pa.string()),
            ("reason", pa.string()),
        ]
    ),
}

LOCK_NAME = ".lock"  # the lake's commit lock (flock)
COMMITTED = "commit.json"  # present in a commit folder once the commit is decided
LAST_COMMIT = ".last-commit"  # the id of the last commit applied to the lake (dim_study reads it)
NAME_MAX = 255  # bytes in one folder name on Linux file systems

PARTITION_KEYS: dict[str, tuple[str, ...]] = {
    "runs": ("model", "layer"),
    "unit_thresholds": ("model", "layer"),
    "unit_concept_tally": ("model", "layer"),
    "unit_concept_tally_folds": ("model", "layer"),
    "unit_top_images": ("model", "layer"),
    "unit_top_maps": ("model", "layer"),
    "unit_null_iou": ("model", "layer"),
    "image_features": ("model", "layer"),
    "concepts": ("probe",),
    "unit_labels": ("source",),
    "task_benchmarks": ("source",),
    "model_exclusions": ("source",),
}


def partition_dir(lake: Path, table: str, keys: Mapping[str, str]) -> Path:
    """The folder of one partition; values are percent-encoded so any model name is a safe path."""
    expected = PARTITION_KEYS[table]
    if tuple(keys) != expected:
        raise ValueError(f"{table} partitions are keyed by {expected}, got {tuple(keys)}")
    path = lake / table
    for key, value in keys.items():
        if not value:
            raise LceError(f"{table}: partition key {key!r} must not be empty")
        path = path / f"{key}={quote(str(value), safe='')}"
    return path


def check_name(kind: str, value: str) -> str:
    """Refuse, before any work, a name that cannot become a partition folder.

    Names are data: they are percent-encoded into one folder level (``model=<encoded>``), so any
    character is allowed except control characters (invisible in every listing); the encoded
    folder name must fit the file system's limit on one name (255 bytes on Linux file systems)."""
    if not value or not value.strip():
        raise LceError(f"{kind} must not be empty")
    bad = next((c for c in value if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        raise LceError(f"{kind} {value[:40]!r}: control character {bad!r} is not allowed")
    longest = max(len(k) for keys in PARTITION_KEYS.values() for k in keys) + 1
    encoded = len(quote(value, safe="").encode())
    if longest + encoded > NAME_MAX:
        raise LceError(
            f"{kind} {value[:40]!r}...: too long ({len(value)} characters, {encoded} bytes "
            f"percent-encoded; at most {NAME_MAX - longest} bytes fit a folder name)"
        )
    return value


# Columns added to a table after lakes were written: a file (or a writer) without one reads it as
# null ("not recorded"), so an older lake still reads and builds. Every other column is required.
ADDED_COLUMNS: dict[str, tuple[str, ...]] = {"runs": ("weights_sha256",)}


def conform(table: str, data: pa.Table) -> pa.Table:
    """Select and cast ``data`` to the table's contract; a missing column is a clear error,
    except a column of ADDED_COLUMNS, which is null."""
    schema = SCHEMAS[table]
    for name in ADDED_COLUMNS.get(table, ()):
        if name not in data.column_names:
            data = data.append_column(name, pa.nulls(data.num_rows, schema.field(name).type))
    missing = [name for name in schema.names if name not in data.column_names]
    if missing:
        raise LceError(f"lake table {table}: missing column(s) {', '.join(missing)}")
    try:
        return data.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise LceError(f"lake table {table}: cannot cast to the lake schema: {exc}") from exc


def os_error(exc: OSError, what: str) -> LceError:
    """One line for a failed file operation: which path, and the system's reason."""
    where = exc.filename if exc.filename is not None else what
    return LceError(f"{where}: {exc.strerror or exc}")


def ensure_writable(lake: Path) -> None:
    """Fail before any work when the lake cannot be written."""
    try:
        (lake / ".tmp").mkdir(parents=True, exist_ok=True)
        probe = lake / ".tmp" / f"write-check-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise LceError(f"lake folder {lake} is not writable: {exc.strerror or exc}") from exc


# ---------------------------------------------------------------- locks


# The descriptors of the locks this process holds. A flock belongs to the open file, which a
# forked child (a DataLoader worker) shares: the lock would live until the last child exits, so
# after a `kill -9` the workers held a work folder's lock for seconds and `--resume` was refused.
# Every child closes its copies as it starts (closing a copy releases nothing while the parent
# holds the lock), so the lock lives exactly as long as the process that took it.
_HELD_LOCKS: set[int] = set()


def _close_held_locks_in_child() -> None:
    for fd in _HELD_LOCKS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_close_held_locks_in_child)


@contextmanager
def file_lock(path: Path, exclusive: bool, wait: bool, busy: str) -> Iterator[bool]:
    """An advisory ``flock`` on ``path``, held for the block and released by the OS if the
    process dies (so a killed run never leaves a stale lock); a forked child does not keep it.
    Without ``wait``, a held lock is the one-line error ``busy``. Yields False (no lock) only
    where the folder is read-only and the lock file cannot be created: nobody can write there
    either."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) and not exclusive:
            yield False
            return
        raise os_error(exc, str(path)) from None
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        _HELD_LOCKS.add(fd)
        try:
            fcntl.flock(fd, mode | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LceError(busy) from None
        yield True
    finally:
        _HELD_LOCKS.discard(fd)
        os.close(fd)  # releases the lock


def _lake_lock(lake: Path, exclusive: bool) -> AbstractContextManager[bool]:
    return file_lock(lake / LOCK_NAME, exclusive, wait=True, busy="")


# ---------------------------------------------------------------- commits
#
# A commit replaces or drops any number of partitions of any tables in one step, all of it under
# the lake's exclusive lock:
#   1. stage: every new partition is written under lake/.tmp/commit-<id>/new/<its path>;
#   2. commit point: lake/.tmp/commit-<id>/commit.json (the list of moves) appears by an atomic
#      rename. Before it, the commit never happened; after it, it will complete;
#   3. apply: each old partition is moved to .../old/<its path>, each new one into place;
#   4. clean: commit.json is removed, then the commit folder.
# Readers (read_table, `lce build`) hold it shared,
# so they see the lake before or after a commit, never between. A process killed at any step
# leaves either staging without commit.json (rolled back: deleted) or commit.json (rolled
# forward: every move is idempotent), and the next lce command that touches the lake does that
# first (`recover`). dbt run by hand refuses a lake with an unfinished commit. The tests kill a
# real process at each step (base.faults.kill_point: commit-staged, commit-committed,
# commit-applying, commit-dropping, commit-applied).


@dataclass(frozen=True)
class Write:
    """One partition to write: its table, its keys, its rows; or, as ``data``, the folder of a
    partition of another lake, whose Parquet files are copied as they are (`lce lake merge`:
    a layer's image features at Broden scale are hundreds of MB, never loaded to be copied)."""

    table: str
    keys: Mapping[str, str]
    data: pa.Table | Path


def _partitions(lake: Path, table: str) -> list[Path]:
    """Every partition folder of a table (the leaves of its key folders)."""
    root = lake / table
    depth = len(PARTITION_KEYS[table])
    pattern = "/".join(["*"] * depth)
    return sorted(p for p in root.glob(pattern) if p.is_dir()) if root.exists() else []


def commit(
    lake: Path,
    writes: list[Write],
    decide: Callable[[], tuple[str, ...]] | None = None,
    plan: Callable[[], tuple[list[Write], list[Path]]] | None = None,
) -> list[Path]:
    """Replace the partitions in ``writes`` and drop every other partition of the tables that
    ``decide`` names, in one all-or-nothing step. ``decide`` runs under the lake's lock, before
    anything is staged: it may refuse (raise) or name tables to drop, and what it saw of the lake
    still holds when the commit lands (e.g. the study's settings). ``plan`` also runs under the
    lock and returns more writes and partition folders to drop, for changes that depend on what
    the lake holds (removing a model: `lce lake rm`)."""
    data = [(w, _conformed(w), partition_dir(lake, w.table, w.keys)) for w in writes]
    ensure_writable(lake)
    folder = lake / ".tmp" / f"commit-{uuid.uuid4().hex}"
    try:
        # Staging runs under the lock too, so recovery never mistakes a live writer's staging
        # folder for a dead one's.
        with _lake_lock(lake, exclusive=True):
            _recover_locked(lake)
            drop_tables = decide() if decide is not None else ()
            more_writes, drop_paths = plan() if plan is not None else ([], [])
            data += [(w, _conformed(w), partition_dir(lake, w.table, w.keys))
                     for w in more_writes]  # fmt: skip
            for w, table, final in data:
                staged = folder / "new" / final.relative_to(lake)
                staged.mkdir(parents=True)
                if isinstance(table, Path):
                    for i, part in enumerate(sorted(table.glob("*.parquet"))):
                        shutil.copyfile(part, staged / f"part-{i}.parquet")
                    continue
                pq.write_table(
                    table,
                    staged / "part-0.parquet",
                    compression="zstd",
                    # pyarrow takes a list of columns too; its stubs say bool only
                    use_dictionary=_dictionary_columns(w.table),  # type: ignore[arg-type]
                )
            kill_point("commit-staged")
            replaced = {final for _, _, final in data}
            dropped = [p for t in drop_tables for p in _partitions(lake, t) if p not in replaced]
            dropped += [p for p in drop_paths if p not in replaced and p not in dropped]
            moves = [str(final.relative_to(lake)) for final in sorted(replaced)]
            drops = [str(p.relative_to(lake)) for p in dropped]
            folder.mkdir(parents=True, exist_ok=True)  # a commit that only drops stages nothing
            pending = folder / "commit.json.pending"
            pending.write_text(json.dumps({"replace": moves, "drop": drops}))
            with pending.open("rb") as fh:
                os.fsync(fh.fileno())
            os.replace(pending, folder / COMMITTED)  # the commit point
            kill_point("commit-committed")
            _apply(lake, folder)
    except OSError as exc:
        raise os_error(exc, str(folder)) from exc
    finally:
        if folder.exists() and not (folder / COMMITTED).exists():
            shutil.rmtree(folder, ignore_errors=True)
    return [final for _, _, final in data]


def _conformed(w: Write) -> pa.Table | Path:
    """A write's rows cast to the table's contract; a folder to copy stays a folder."""
    return w.data if isinstance(w.data, Path) else conform(w.table, w.data)


# Columns never dictionary-encoded: float vectors do not repeat, and a dictionary made the demo's
# image_features files a third larger than their floats (134 KB; 91 KB without).
NO_DICTIONARY: dict[str, tuple[str, ...]] = {"image_features": ("features",)}


def _dictionary_columns(table: str) -> bool | list[str]:
    """pyarrow's use_dictionary for a table: every column, except those in NO_DICTIONARY."""
    skip = NO_DICTIONARY.get(table)
    return [n for n in SCHEMAS[table].names if n not in skip] if skip else True


def _apply(lake: Path, folder: Path) -> None:
    """Carry out a committed folder's moves; safe to run again after a kill at any point."""
    plan = json.loads((folder / COMMITTED).read_text())
    for rel in plan["replace"]:
        new, final, old = folder / "new" / rel, lake / rel, folder / "old" / rel
        if new.exists():
            if final.exists():
                old.parent.mkdir(parents=True, exist_ok=True)
                os.rename(final, old)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(new, final)
            kill_point("commit-applying")
    for rel in plan["drop"]:
        final, old = lake / rel, folder / "old" / rel
        if final.exists():
            old.parent.mkdir(parents=True, exist_ok=True)
            os.rename(final, old)
            kill_point("commit-dropping")
    kill_point("commit-applied")
    _record_last_commit(lake, folder.name.removeprefix("commit-"))
    (folder / COMMITTED).unlink()
    shutil.rmtree(folder, ignore_errors=True)
    for rel in plan["drop"]:  # folders of models whose every layer was dropped
        parent = (lake / rel).parent
        while parent != lake and parent.exists() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


def _record_last_commit(lake: Path, commit_id: str) -> None:
    """Name the lake's state: the id of the commit that made it, replaced atomically, so a
    warehouse can say which state of its lake it was built from (dim_study.lake_commit)."""
    pending = lake / f"{LAST_COMMIT}.pending"
    pending.write_text(commit_id + "\n")
    os.replace(pending, lake / LAST_COMMIT)


def last_commit(lake: Path) -> str | None:
    """The id of the last commit applied to ``lake``; None for a lake written before lce
    recorded it (or an empty one)."""
    try:
        return (lake / LAST_COMMIT).read_text().strip() or None
    except FileNotFoundError:
        return None


def _recover_locked(lake: Path) -> None:
    tmp = lake / ".tmp"
    for folder in sorted(tmp.glob("commit-*")) if tmp.exists() else []:
        if (folder / COMMITTED).exists():
            _apply(lake, folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def unfinished_commits(lake: Path) -> list[Path]:
    tmp = lake / ".tmp"
    return sorted(tmp.glob(f"commit-*/{COMMITTED}")) if tmp.exists() else []


def recover(lake: Path) -> None:
    """Finish (or roll back) whatever a killed commit left, before anything reads the lake."""
    tmp = lake / ".tmp"
    if not tmp.exists() or not any(tmp.glob("commit-*")):
        return
    try:
        with _lake_lock(lake, exclusive=True):
            _recover_locked(lake)
    except OSError as exc:
        raise os_error(exc, str(lake)) from exc


@contextmanager
def reading(lake: Path) -> Iterator[None]:
    """Hold the lake still while it is read: no commit lands until the block ends."""
    for _ in range(5):
        recover(lake)
        with _lake_lock(lake, exclusive=False) as locked:
            if not unfinished_commits(lake):
                yield
                return
            if not locked:
                raise LceError(
                    f"lake {lake} has an unfinished commit and is read-only here: run any lce "
                    "command on it where it is writable to finish it"
                )
    raise LceError(f"lake {lake}: an unfinished commit could not be completed")


def write_partition(lake: Path, table: str, keys: Mapping[str, str], data: pa.Table) -> Path:
    """Replace one partition with ``data`` atomically (a commit of one partition)."""
    return commit(lake, [Write(table, keys, data)])[0]


def read_table(lake: Path, table: str, lock: bool = True) -> pa.Table:
    """All partitions of a lake table; an absent table is empty, with the contract's schema.
    ``lock=False`` only for a caller that holds the lake's lock already."""
    root = lake / table
    with reading(lake) if lock else nullcontext():
        files = sorted(root.glob("**/*.parquet")) if root.exists() else []
        if not files:
            return SCHEMAS[table].empty_table()
        return pa.concat_tables([conform(table, pq.read_table(f)) for f in files])


def has_data(lake: Path) -> bool:
    """Whether any table of the lake holds at least one file."""
    recover(lake)
    return any(
        (lake / table).exists() and any((lake / table).glob("**/*.parquet")) for table in SCHEMAS
    )
