"""The published file's schema: which lce made it, whether this lce can read it, and which
DuckDB can open it.

Every mart the explorer, `lce summary` and `lce info` read is described by one number,
``SCHEMA_VERSION``, written into ``dim_study.schema_version`` by every build. A reader compares
it with its own instead of probing tables and columns one by one: a file of another schema gets
one sentence saying which lce built it and what to do (rebuild it, or install a newer lce).
``dim_study.schema_version`` and ``dim_study.lce_version`` keep their names in every schema, so
any lce can read them. tests/test_schema_version.py fails when a mart's columns change while
this number stays.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from base import __version__
from base.errors import LceError
from warehouse.query import MARTS, connect

# Raised whenever a mart's columns (names or types) change or a mart is added or removed.
# 0 stands for every file built before dim_study existed (lce 0.1.0 and earlier); the changes
# of each version are listed in docs/guide.md (Schema versions).
SCHEMA_VERSION = 5


@dataclass(frozen=True)
class FileSchema:
    """What a warehouse file says about itself."""

    schema_version: int  # 0: built before files recorded their schema
    lce_version: str | None  # None when the file does not say (schema 0)
    tables: frozenset[str]

    @property
    def lce_label(self) -> str:
        return f"lce {self.lce_version}" if self.lce_version else "an lce older than 0.2.0"


def read_schema(db: Path) -> FileSchema:
    """The schema a warehouse file records. Raises LceError for a file DuckDB cannot open and
    for a DuckDB file that is not an lce warehouse."""
    try:
        with connect(db) as conn:
            tables = frozenset(
                row[0] for row in conn.execute("select table_name from duckdb_tables()").fetchall()
            )
            if "dim_study" in tables:
                row = conn.execute("select schema_version, lce_version from dim_study").fetchone()
                if row is None:
                    raise LceError(f"{db.name}: dim_study is empty; rebuild it with `lce build`")
                return FileSchema(int(row[0]), row[1], tables)
    except LceError:
        raise
    except Exception as exc:  # duckdb raises several types for a foreign or newer file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LceError(
            f"{db.name} could not be opened as a DuckDB 1.x warehouse ({first}); a file written "
            "by DuckDB 2.0 cannot be read by 1.x"
        ) from None
    if "dim_models" in tables and "fct_lce" in tables:
        return FileSchema(0, None, tables)
    raise LceError(f"{db.name} is a DuckDB file but not an lce warehouse (it has no dim_study)")


def schema_problem(found: FileSchema, name: str) -> str | None:
    """None when this lce reads the file as it is; else the one sentence every reader shows:
    which lce and schema built it, which schema this lce reads, and what to do."""
    if found.schema_version == SCHEMA_VERSION:
        missing = [m for m in MARTS if m not in found.tables]
        if missing:
            return (
                f"{name} lacks {', '.join(missing)} although it records schema {SCHEMA_VERSION}: "
                "run `lce build` on its lake to rebuild it."
            )
        return None
    built = f"{name} was built by {found.lce_label} with schema {found.schema_version}"
    reads = f"this lce ({__version__}) reads schema {SCHEMA_VERSION}"
    if found.schema_version < SCHEMA_VERSION:
        return f"{built}; {reads}: run `lce build` on its lake to update it."
    install = found.lce_version or "a newer lce"
    return f"{built}; {reads}: install lce {install} or later (pip install 'lce>={install}')."


def check(db: Path) -> str | None:
    """The schema check in one call: None for a file this lce reads, else the sentence (an
    unreadable or foreign file too)."""
    try:
        return schema_problem(read_schema(db), db.name)
    except LceError as exc:
        return str(exc)


def require(db: Path) -> None:
    """Raise the schema sentence as an LceError unless this lce reads ``db``."""
    if not Path(db).is_file():
        raise LceError(f"{db}: no published warehouse here (run `lce build` first)")
    problem = check(db)
    if problem:
        raise LceError(problem)


# ---------------------------------------------------------------------------------------------
# Which DuckDB opens the file: its header (https://duckdb.org/docs/internals/storage): a
# checksum, b"DUCK", the storage version number, four flags, the writing DuckDB's version; the
# first database header (at 4096) ends with the serialization compatibility it was written for.
# ---------------------------------------------------------------------------------------------

# Storage version 64 with the default serialization (1) is what DuckDB 1.x writes unless asked
# for newer features; DuckDB itself calls it "v1.0.0+". Newer numbers are only named, not mapped.
OPENED_BY_64 = "DuckDB 1.0.0 or later (DuckDB's own name for the format: v1.0.0+)"


@dataclass(frozen=True)
class DuckdbHeader:
    storage_version: int
    serialization: int
    written_by: str  # e.g. v1.5.6

    @property
    def opened_by(self) -> str:
        if self.storage_version == 64 and self.serialization == 1:
            return OPENED_BY_64
        return (
            f"DuckDB {self.written_by.lstrip('v')} or later (storage version "
            f"{self.storage_version}, serialization {self.serialization}: newer than 1.0's format)"
        )


def duckdb_header(db: Path) -> DuckdbHeader:
    """The DuckDB file header of ``db``; LceError for a file that is not a DuckDB database."""
    with Path(db).open("rb") as fh:
        head = fh.read(3 * 4096)
    if len(head) < 3 * 4096 or head[8:12] != b"DUCK":
        raise LceError(f"{Path(db).name} is not a DuckDB database file")
    (storage,) = struct.unpack_from("<Q", head, 12)
    written_by = head[52:84].split(b"\0", 1)[0].decode("ascii", "replace")
    # two database headers, written in turn: the one with the higher iteration is current
    headers = [struct.unpack_from("<8Q", head, offset) for offset in (4096, 8192)]
    serialization = max(headers, key=lambda fields: fields[1])[7]
    return DuckdbHeader(int(storage), int(serialization), written_by or "unknown")
