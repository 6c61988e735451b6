"""The marts' column signature: every dim_/fct_ table of a built warehouse with its columns'
names and DuckDB types, in column order. tests/data/mart_signature.json records it together
with the SCHEMA_VERSION it belongs to, and tests/test_schema_version.py fails when a build's
marts differ from the record while SCHEMA_VERSION stayed the same.

After changing a mart's columns: raise SCHEMA_VERSION in warehouse/schema.py, build any
warehouse with the new code, and re-record from it:

    .venv/bin/python -m tests.mart_signature path/to/lce.duckdb
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import duckdb
import yaml

from warehouse.schema import SCHEMA_VERSION

RECORD = Path(__file__).resolve().parent / "data" / "mart_signature.json"
MARTS_YML = Path(__file__).resolve().parents[1] / "dbt_project" / "models" / "marts"


def signature(db: Path) -> dict[str, list[list[str]]]:
    """{mart: [[column, type], ...]} of a built file, read with DuckDB directly."""
    with duckdb.connect(str(db), read_only=True) as conn:
        rows = conn.execute(
            """
            select table_name, column_name, data_type from duckdb_columns()
            where schema_name = 'main' and regexp_matches(table_name, '^(dim|fct)_')
            order by table_name, column_index
            """
        ).fetchall()
    marts: dict[str, list[list[str]]] = {}
    for table, column, kind in rows:
        marts.setdefault(table, []).append([column, kind])
    return marts


def documented() -> dict[str, set[str]]:
    """{mart: documented column names} from the marts' properties files (no build needed)."""
    marts: dict[str, set[str]] = {}
    for path in sorted(MARTS_YML.glob("*.yml")):
        for model in yaml.safe_load(path.read_text()).get("models", []):
            marts[model["name"]] = {c["name"] for c in model.get("columns", [])}
    return marts


def recorded() -> dict[str, Any]:
    return json.loads(RECORD.read_text())


def record(db: Path) -> None:
    """Write the record: one line per mart, so a change reads as a one-line diff."""
    marts = signature(db)
    lines = [f"  {json.dumps(name)}: {json.dumps(columns)}" for name, columns in marts.items()]
    body = ",\n".join(lines)
    RECORD.write_text(f'{{"schema_version": {SCHEMA_VERSION}, "marts": {{\n{body}\n}}}}\n')


if __name__ == "__main__":
    record(Path(sys.argv[1]))
    print(f"recorded the marts of {sys.argv[1]} as schema {SCHEMA_VERSION} in {RECORD}")
