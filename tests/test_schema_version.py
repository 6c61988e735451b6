"""One schema number instead of probes: SCHEMA_VERSION must move with the marts' columns, and a
file of another schema gets one sentence naming the lce and schema that built it."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from base import __version__
from tests.mart_signature import documented, recorded, signature
from warehouse import schema
from warehouse.query import MARTS

RERECORD = (
    "raise SCHEMA_VERSION in warehouse/schema.py, then re-record the marts: "
    "`.venv/bin/python -m tests.mart_signature path/to/lce.duckdb` (see tests/mart_signature.py)"
)


def test_schema_version_is_the_one_the_marts_were_recorded_with() -> None:
    assert recorded()["schema_version"] == schema.SCHEMA_VERSION, (
        "SCHEMA_VERSION changed but tests/data/mart_signature.json was not re-recorded: " + RERECORD
    )


def test_documented_mart_columns_match_the_record() -> None:
    """Fast: the columns the properties files document (a test elsewhere checks that each
    column of a built file is documented) against the recorded signature."""
    marts = {name: {c for c, _ in cols} for name, cols in recorded()["marts"].items()}
    docs = documented()
    changed = {m for m in set(marts) | set(docs) if marts.get(m) != docs.get(m)}
    assert not changed, f"the columns of {sorted(changed)} changed: {RERECORD}"
    assert set(MARTS) <= set(marts), "every mart the readers check is in the record"


def test_built_marts_match_the_record(toy_home: Path) -> None:
    """A real build's marts, names and DuckDB types, against the record."""
    built = signature(toy_home / "lce.duckdb")
    marts = recorded()["marts"]
    diff = sorted(m for m in set(built) | set(marts) if built.get(m) != marts.get(m))
    assert not diff, f"the columns of {diff} differ from the record: {RERECORD}"
    with duckdb.connect(str(toy_home / "lce.duckdb"), read_only=True) as conn:
        assert conn.execute("select schema_version, lce_version from dim_study").fetchall() == [
            (schema.SCHEMA_VERSION, __version__)
        ]


def found(version: int, lce: str | None, tables: tuple[str, ...] = MARTS) -> schema.FileSchema:
    return schema.FileSchema(version, lce, frozenset(tables))


def test_the_one_sentence_for_each_kind_of_file() -> None:
    now = schema.SCHEMA_VERSION
    assert schema.schema_problem(found(now, __version__), "x.duckdb") is None
    old = schema.schema_problem(found(0, None), "old.duckdb")
    assert old == (
        f"old.duckdb was built by an lce older than 0.2.0 with schema 0; this lce "
        f"({__version__}) reads schema {now}: run `lce build` on its lake to update it."
    )
    newer = schema.schema_problem(found(now + 1, "9.1.0"), "new.duckdb")
    assert newer == (
        f"new.duckdb was built by lce 9.1.0 with schema {now + 1}; this lce ({__version__}) "
        f"reads schema {now}: install lce 9.1.0 or later (pip install 'lce>=9.1.0')."
    )
    lacking = schema.schema_problem(found(now, __version__, MARTS[1:]), "cut.duckdb")
    assert lacking is not None and f"lacks {MARTS[0]}" in lacking and "lce build" in lacking


@pytest.mark.parametrize(
    ("compatibility", "storage", "serialization"), [(None, 64, 1), ("v1.4.0", 67, 6)]
)
def test_which_duckdb_opens_a_file(
    tmp_path: Path, compatibility: str | None, storage: int, serialization: int
) -> None:
    """The header read by hand against what DuckDB itself says of the file it wrote."""
    db = tmp_path / "a.duckdb"
    config = {"storage_compatibility_version": compatibility} if compatibility else {}
    with duckdb.connect(str(db), config=config) as conn:
        conn.execute("create table t as select 1 as x")
        tags = conn.execute(
            "select tags from duckdb_databases() where database_name = 'a'"
        ).fetchone()
    header = schema.duckdb_header(db)
    assert (header.storage_version, header.serialization) == (storage, serialization)
    assert header.written_by == f"v{duckdb.__version__}"
    assert tags is not None
    if compatibility is None:
        assert tags[0]["storage_version"] == "v1.0.0+"  # DuckDB's own words for the format
        assert header.opened_by.startswith("DuckDB 1.0.0 or later")
    else:
        assert "newer than 1.0's format" in header.opened_by


def test_a_file_that_is_not_duckdb_has_no_header(tmp_path: Path) -> None:
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"x" * 20000)
    with pytest.raises(Exception, match="not a DuckDB database file"):
        schema.duckdb_header(junk)
