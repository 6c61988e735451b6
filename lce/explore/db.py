"""Which database, and is it usable: the checks every page runs before it queries.

Every query goes through ``warehouse.query`` (read-only, external access off), so the app never
holds the file that ``lce build`` writes and cannot read any other file.
"""

from __future__ import annotations

from pathlib import Path

from warehouse.query import MARTS, query


def db_stamp(db: Path) -> tuple[str, int, int]:
    """Cache key of a database file: a rebuilt (atomically replaced) file gets a new key."""
    path = Path(db).expanduser()
    try:
        stat = path.stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def check_db(db: Path) -> str | None:
    """None when the file is a usable warehouse, else a sentence saying what is wrong and what
    to do: every page shows it instead of a traceback."""
    path = Path(db).expanduser()
    hint = (
        "Build one with `lce build` (or `make demo`), "
        "or open another file with `lce app --db FILE`."
    )
    if not path.exists():
        return f"No warehouse at `{path}`. {hint}"
    if not path.is_file():
        return f"`{path}` is not a file. {hint}"
    try:
        tables = set(query(path, "select table_name from duckdb_tables()")["table_name"].to_list())
    except Exception as exc:  # duckdb raises several types for a foreign or newer file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return (
            f"`{path}` could not be opened as a DuckDB 1.x warehouse ({first}). "
            "A file written by DuckDB 2.0 cannot be read by 1.x."
        )
    missing = [name for name in MARTS if name not in tables]
    if missing:
        return (
            f"`{path}` is not an lce warehouse: it lacks {', '.join(missing)}. "
            "Rebuild it with `lce build`."
        )
    return None


def table_exists(db: Path, table: str) -> bool:
    """Whether the file has ``table``: a warehouse built before a mart existed (e.g. top
    images) lacks it, and the page then says so instead of failing."""
    frame = query(db, "select count(*) as n from duckdb_tables() where table_name = ?", [table])
    return bool(frame["n"][0])


def has_column(db: Path, table: str, column: str) -> bool:
    """Whether the file's ``table`` has ``column``: a file built before a mart (or a column of
    it) existed lacks it, and the pages and `lce summary` then leave that part out."""
    found = query(
        db,
        "select count(*) as n from duckdb_columns() where table_name = ? and column_name = ?",
        [table, column],
    )
    return bool(found["n"][0])
