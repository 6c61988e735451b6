"""Two builds of the same study compared table by table: every lake table and every mart.

For a change that must not change results (a rename, a move), build the same study with the old
code and with the new one (same machine, same batch size: floating point is not portable) into
two folders and run

    .venv/bin/python -m tests.compare_builds OLD_DIR NEW_DIR [--rename OLD_MART=NEW_MART ...]

where each folder holds ``lake/`` and ``lce.duckdb`` (a demo work folder does). Rows are compared
as multisets (``EXCEPT ALL`` both ways, floats bit for bit); the folder's own path inside string
values is replaced by ``<root>`` first, so two folders can hold the same study. Columns that
record when and how long (``VOLATILE``) are left out and listed. For a table that differs, each
column that differs on its own is named. Exit status 1 when anything differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

# Columns that hold the time of a run or build, a duration or a random id (run_id is a uuid4):
# never equal across two builds.
VOLATILE = {"started_at", "built_at", "seconds", "lake_commit", "run_id"}


def _load(conn: duckdb.DuckDBPyConnection, name: str, select: str, root: Path) -> list[str]:
    """Materialise ``select`` as table ``name`` with ``root`` replaced in string columns;
    returns the columns kept (VOLATILE ones left out)."""
    conn.execute(f"create or replace temp table {name}_raw as {select}")
    kept, exprs = [], []
    for column, kind in conn.execute(
        f"select column_name, column_type from (describe {name}_raw)"
    ).fetchall():
        if column in VOLATILE:
            continue
        kept.append(column)
        quoted = f'"{column}"'
        exprs.append(
            f"replace({quoted}, '{root}', '<root>') as {quoted}" if kind == "VARCHAR" else quoted
        )
    conn.execute(
        f"create or replace temp table {name} as select {', '.join(exprs)} from {name}_raw"
    )
    return kept


def _differences(conn: duckdb.DuckDBPyConnection, columns: list[str]) -> tuple[int, int, list[str]]:
    """(rows only in a, rows only in b, the columns whose values differ on their own)."""
    cols = ", ".join(f'"{c}"' for c in columns)
    only_a = conn.execute(
        f"select count(*) from (select {cols} from a except all select {cols} from b)"
    ).fetchone()[0]
    only_b = conn.execute(
        f"select count(*) from (select {cols} from b except all select {cols} from a)"
    ).fetchone()[0]
    changed = []
    if only_a or only_b:
        for c in columns:
            q = f'select count(*) from (select "{c}" from a except all select "{c}" from b)'
            if conn.execute(q).fetchone()[0]:
                changed.append(c)
    return only_a, only_b, changed


def compare_table(
    conn: duckdb.DuckDBPyConnection, label: str, old: str, new: str, roots: tuple[Path, Path]
) -> bool:
    cols_a = _load(conn, "a", old, roots[0])
    cols_b = _load(conn, "b", new, roots[1])
    if cols_a != cols_b:
        print(f"{label}: columns differ: {cols_a} vs {cols_b}")
        return False
    rows = conn.execute("select count(*) from a").fetchone()[0]
    only_a, only_b, changed = _differences(conn, cols_a)
    if only_a or only_b:
        print(
            f"{label}: {rows} rows; {only_a} only in old, {only_b} only in new; columns: {changed}"
        )
        return False
    print(f"{label}: {rows} rows, identical")
    return True


def lake_tables(lake: Path) -> list[str]:
    return sorted(p.name for p in lake.iterdir() if p.is_dir() and not p.name.startswith("."))


def compare(old: Path, new: Path, renames: dict[str, str]) -> bool:
    conn = duckdb.connect()
    same = True
    roots = (old.resolve(), new.resolve())
    tables_old, tables_new = lake_tables(old / "lake"), lake_tables(new / "lake")
    if tables_old != tables_new:
        print(f"lake tables differ: {tables_old} vs {tables_new}")
        same = False
    for table in sorted(set(tables_old) & set(tables_new)):
        select = "select * from read_parquet('{}/**/*.parquet', hive_partitioning = true, union_by_name = true)"
        same &= compare_table(
            conn,
            f"lake {table}",
            select.format(old / "lake" / table),
            select.format(new / "lake" / table),
            roots,
        )
    conn.execute(f"attach '{old / 'lce.duckdb'}' as old_db (read_only)")
    conn.execute(f"attach '{new / 'lce.duckdb'}' as new_db (read_only)")
    marts_sql = (
        "select table_name from duckdb_tables() where database_name = '{}' "
        "and regexp_matches(table_name, '^(dim|fct)_') order by 1"
    )
    marts_old = [r[0] for r in conn.execute(marts_sql.format("old_db")).fetchall()]
    marts_new = {r[0] for r in conn.execute(marts_sql.format("new_db")).fetchall()}
    expected = {renames.get(m, m) for m in marts_old}
    if expected != marts_new:
        print(
            f"marts differ: only old {sorted(expected - marts_new)}, only new {sorted(marts_new - expected)}"
        )
        same = False
    for mart in marts_old:
        target = renames.get(mart, mart)
        if target not in marts_new:
            continue
        label = f"mart {mart}" + (f" -> {target}" if target != mart else "")
        same &= compare_table(
            conn,
            label,
            f"select * from old_db.main.{mart}",
            f"select * from new_db.main.{target}",
            roots,
        )
    print("left out everywhere (times, durations, random ids): " + ", ".join(sorted(VOLATILE)))
    return same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rename", action="append", default=[], help="OLD_MART=NEW_MART")
    args = parser.parse_args(argv)
    renames = dict(r.split("=", 1) for r in args.rename)
    return 0 if compare(args.old, args.new, renames) else 1


if __name__ == "__main__":
    sys.exit(main())
