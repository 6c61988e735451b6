"""The one guard every user-typed query passes: `lce sql` and the explorer's SQL page share it.

A published warehouse is opened read-only with external access off (``warehouse.query``), so
DuckDB itself refuses writes and file reads; this guard adds what DuckDB cannot decide for us:
one statement of a reading kind (a clear sentence for everything else, before DuckDB runs it),
a timeout that interrupts DuckDB, and caps on the rows and bytes brought back, so a query can
neither run forever nor fill the memory of the process that shows it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from base.errors import LceError
from warehouse.query import guarded_config
from warehouse.sql_watchdog import run_isolated, watch

MAX_ROWS = 1000
MAX_BYTES = 50_000_000  # of the Arrow result brought back (strings included)
SQL_TIMEOUT_S = 30.0
_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


class SqlRefused(LceError):
    """A query the guard will not run, or a result it will not bring back; one sentence why."""


@dataclass(frozen=True)
class SqlResult:
    frame: pl.DataFrame
    truncated: bool  # more rows than ``max_rows``: the frame holds the first ``max_rows``
    seconds: float


def _refusal(kind: duckdb.StatementType, sql: str) -> str:
    name = kind.name
    if name == "COPY" or name == "COPY_DATABASE" or name == "EXPORT":
        return (
            "COPY/EXPORT is refused: queries neither write nor read files. "
            "Use the download button (explorer) or redirect `lce sql --csv` instead."
        )
    if name in ("ATTACH", "DETACH"):
        return f"{name} is refused: queries read this warehouse file only."
    if name == "LOAD":
        verb = "INSTALL" if sql.lstrip().lower().startswith(("install", "force")) else "LOAD"
        return f"{verb} is refused: extensions cannot be installed or loaded here."
    writes = {"INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "MERGE_INTO", "VACUUM",
              "CREATE_FUNC", "ANALYZE"}  # fmt: skip
    if name in writes:
        return (
            f"{name} is refused: the warehouse is opened read-only, so only SELECT queries "
            "run (no writes)."
        )
    return f"{name} statements are refused: only SELECT queries run."


def _pivot_expansion(statements: list[duckdb.Statement]) -> bool:
    """A PIVOT without an IN list reaches us as DuckDB's own expansion: CREATE TYPE statements
    with no text of their own, then the SELECT. That is one statement the user typed."""
    *before, last = statements
    return last.type == duckdb.StatementType.SELECT and all(
        s.type == duckdb.StatementType.CREATE and not s.query.strip() for s in before
    )


# DuckDB's system functions and views that show the server's paths (the database file, the home,
# temp, extension and secret folders) or settings; the warehouse's own catalog stays readable.
_REVEALING = re.compile(
    r"\b(duckdb_databases|pragma_database_list|duckdb_settings|current_setting|"
    r"duckdb_extensions|duckdb_secrets|which_secret|duckdb_temporary_files|"
    r"pragma_user_agent|duckdb_secret_types)\b",
    re.IGNORECASE,
)
_QUOTED_PATH = re.compile(r'"(?:/|~|[A-Za-z]:\\)[^"]*"')


def check_sql(conn: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but one SELECT (EXPLAIN, PIVOT, DESCRIBE ...) before DuckDB runs it."""
    if not sql.strip():
        raise SqlRefused("Enter a query.")
    try:
        statements = conn.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlRefused(f"The query does not parse: {_first_line(exc)}") from None
    if not statements:
        raise SqlRefused("Enter a query.")
    if len(statements) > 1 and not _pivot_expansion(statements):
        raise SqlRefused("One statement at a time, please: a single SELECT runs.")
    kind = statements[-1].type
    if kind not in _ALLOWED:
        raise SqlRefused(_refusal(kind, sql))
    revealing = _REVEALING.search(sql)
    if revealing:
        raise SqlRefused(
            f"{revealing.group(1)} is refused: it shows the server's files and settings, "
            "not the warehouse."
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def explain_duckdb_error(exc: BaseException, timeout_s: float = SQL_TIMEOUT_S) -> str:
    """DuckDB's refusal, turned into one sentence a user can act on (paths on the server, such
    as its extension or secret folders, hidden)."""
    detail = _QUOTED_PATH.sub('"(a path on the server)"', _first_line(exc))
    if isinstance(exc, duckdb.PermissionException) or "disabled by configuration" in detail:
        return (
            "File and network access is disabled: queries can read the warehouse's tables "
            f"only (no read_csv, read_parquet, paths or URLs). DuckDB: {detail}"
        )
    if "read-only" in detail:
        return f"The warehouse is opened read-only: writes are refused. DuckDB: {detail}"
    if isinstance(exc, duckdb.InterruptException):
        return f"The query was stopped after {timeout_s:g} s; narrow it down or add a limit."
    return f"The query failed: {detail}"


_PLAIN_TYPES = (
    "BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER",
    "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL", "VARCHAR", "DATE", "TIME", "TIMESTAMP",
)  # fmt: skip


def display_projection(relation: duckdb.DuckDBPyRelation) -> str:
    """Select every column by position, as text where the type is not a plain scalar (lists,
    structs, maps, intervals, blobs, UUIDs, huge integers ...): those break a table view or a
    CSV. Repeated names get a suffix, so ``select 1 as a, 2 as a`` shows both."""
    seen: dict[str, int] = {}
    parts = []
    for position, (name, kind) in enumerate(zip(relation.columns, relation.types, strict=True), 1):
        count = seen.get(name, 0)
        seen[name] = count + 1
        label = name if count == 0 else f"{name}_{count}"
        quoted = '"' + label.replace('"', '""') + '"'
        type_name = str(kind)
        plain = type_name.split("(")[0] in _PLAIN_TYPES or type_name.startswith("TIMESTAMP")
        plain = plain and "[" not in type_name and type_name != "TIME WITH TIME ZONE"
        expression = f"#{position}" if plain else f"cast(#{position} as varchar)"
        parts.append(f"{expression} as {quoted}")
    return ", ".join(parts)


def run_sql_isolated(
    db: Path,
    sql: str,
    max_rows: int = MAX_ROWS,
    timeout_s: float = SQL_TIMEOUT_S,
    max_bytes: int = MAX_BYTES,
) -> SqlResult:
    """``run_sql`` in a process of its own that ends itself over its time or memory budget:
    what a server (the explorer) runs, so a runaway query cannot take the server with it."""
    request = {"db": db, "sql": sql, "max_rows": max_rows, "timeout_s": timeout_s,
               "max_bytes": max_bytes}  # fmt: skip
    kind, payload = run_isolated(request, timeout_s)
    if kind != "ok":
        raise SqlRefused(str(payload))
    assert isinstance(payload, SqlResult)
    return payload


@contextmanager
def _connect(db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The published file read-only under ``guarded_config`` (bounded memory, no spilling,
    configuration locked)."""
    if not Path(db).is_file():
        raise LceError(f"{db}: no published warehouse here (run `lce build` first)")
    conn = duckdb.connect(str(db), read_only=True, config=guarded_config())
    try:
        yield conn
    finally:
        conn.close()


def run_sql(
    db: Path,
    sql: str,
    max_rows: int = MAX_ROWS,
    timeout_s: float = SQL_TIMEOUT_S,
    max_bytes: int = MAX_BYTES,
    die: Callable[[str], Any] | None = None,
) -> SqlResult:
    """Run one user query read-only, external access off: at most ``max_rows`` rows and
    ``max_bytes`` bytes back, interrupted after ``timeout_s``. Raises SqlRefused otherwise.

    With ``die`` (a function that ends this process), a watchdog also calls it when DuckDB's
    interrupt has not landed a few seconds after the timeout or the process's memory passes its
    cap; without it, only the interrupt (for callers that run it in a process of its own)."""
    started = time.perf_counter()
    with _connect(db) as conn:
        check_sql(conn, sql)
        if die is not None:
            timer: threading.Timer | threading.Event = watch(conn.interrupt, timeout_s, die)
        else:
            timer = threading.Timer(timeout_s, conn.interrupt)
            timer.start()
        try:
            relation = conn.sql(sql)
            if relation is None:  # not a query after all; nothing to show
                raise SqlRefused("The statement returned no rows.")
            shown = relation.project(display_projection(relation)).limit(max_rows + 1)
            batches: list[pa.RecordBatch] = []
            size = 0
            for batch in shown.to_arrow_reader(256):
                size += batch.nbytes
                if size > max_bytes:
                    raise SqlRefused(
                        f"The result is larger than {max_bytes / 1e6:g} MB; select fewer "
                        "columns or rows, or shorten long values."
                    )
                batches.append(batch)
            table = pa.Table.from_batches(batches) if batches else shown.to_arrow_table()
            frame = pl.from_arrow(table)
        except SqlRefused:
            raise
        except duckdb.Error as exc:
            raise SqlRefused(explain_duckdb_error(exc, timeout_s)) from None
        except Exception as exc:  # e.g. a type the frame conversion cannot take
            raise SqlRefused(f"The result could not be shown: {_first_line(exc)}") from None
        finally:
            timer.cancel() if isinstance(timer, threading.Timer) else timer.set()
    assert isinstance(frame, pl.DataFrame)
    truncated = frame.height > max_rows
    return SqlResult(frame.head(max_rows), truncated, time.perf_counter() - started)
