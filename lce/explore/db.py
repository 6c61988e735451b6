"""Which database, and is it usable: the one check every page runs before it queries.

Every query goes through ``warehouse.query`` (read-only, external access off), so the app never
holds the file that ``lce build`` writes and cannot read any other file. Whether a file has the
marts a page reads is one comparison, its ``dim_study.schema_version`` against this lce's
(``warehouse.schema``), never a probe per table or column.
"""

from __future__ import annotations

from pathlib import Path

from base.errors import LceError
from warehouse import schema


def db_stamp(db: Path) -> tuple[str, int, int]:
    """Cache key of a database file: a rebuilt (atomically replaced) file gets a new key."""
    path = Path(db).expanduser()
    try:
        stat = path.stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def check_db(db: Path) -> str | None:
    """None when the file is a warehouse of this lce's schema, else one sentence saying what is
    wrong and what to do: every page shows it instead of a traceback."""
    path = Path(db).expanduser()
    hint = (
        "Build one with `lce build` (or `make demo`), "
        "or open another file with `lce app --db FILE`."
    )
    if not path.exists():
        return f"No warehouse at `{path}`. {hint}"
    if not path.is_file():
        return f"`{path}` is not a file. {hint}"
    return schema.check(path)


def is_warehouse(db: Path) -> bool:
    """Whether the file is an lce warehouse of any schema (so the SQL page can still query it)."""
    try:
        schema.read_schema(Path(db).expanduser())
    except LceError:
        return False
    return True
