"""A warehouse of another schema: the file lce 0.1.0 built (tests/old_release.py says how it was
made) and a file that says a newer lce built it. Every reader gives the one sentence naming the
lce and schema that built it and what to do; nothing shows a traceback or a half page. (That
`lce build` on the 0.1.0 lake gives a file this lce reads is checked by the installed wheel in
tests/test_packaging.py.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from base import __version__
from tests.app_driver import has_table, texts
from tests.conftest import lce
from tests.old_release import old_warehouse
from warehouse.schema import SCHEMA_VERSION

PAGES = [
    "overview", "embedding", "components", "tasks", "compare", "units", "gallery", "concept",
    "similarity",
]  # fmt: skip
OLD_SENTENCE = (
    f"lce.duckdb was built by an lce older than 0.2.0 with schema 0; this lce ({__version__}) "
    f"reads schema {SCHEMA_VERSION}: run `lce build` on its lake to update it."
)


def newer_warehouse(folder: Path) -> Path:
    """A file as a future lce 9.1.0 of schema SCHEMA_VERSION + 1 would write it: whatever its
    marts, its dim_study keeps schema_version and lce_version (the one contract across
    schemas)."""
    db = old_warehouse(folder, "newer.duckdb")
    with duckdb.connect(str(db)) as conn:
        conn.execute(
            "create table dim_study as select ? as schema_version, '9.1.0' as lce_version, "
            "'a setting no lce reads yet' as future_setting",
            [SCHEMA_VERSION + 1],
        )
    return db


def test_lce_info_and_summary_on_the_previous_release(tmp_path: Path) -> None:
    db = old_warehouse(tmp_path)
    code, out = lce("info", "--db", db)
    assert code == 0, out
    assert OLD_SENTENCE in " ".join(out.split())
    assert "opens with DuckDB 1.0.0 or later" in out
    code, out = lce("summary", "--db", db)
    assert code == 1 and OLD_SENTENCE in " ".join(out.split()), out
    assert "Traceback" not in out


def test_lce_info_on_a_newer_file_says_which_lce_to_install(tmp_path: Path) -> None:
    db = newer_warehouse(tmp_path)
    code, out = lce("info", "--db", db)
    assert code == 0, out
    flat = " ".join(out.split())
    assert (
        f"newer.duckdb was built by lce 9.1.0 with schema {SCHEMA_VERSION + 1}; this lce "
        f"({__version__}) reads schema {SCHEMA_VERSION}: install lce 9.1.0 or later "
        "(pip install 'lce>=9.1.0')."
    ) in flat
    assert "future_setting" in flat, "its dim_study is listed as the file has it"
    code, out = lce("info", "--db", db, "--json")
    assert code == 0
    import json

    facts = json.loads(out)
    assert facts["schema"]["readable"] is False and facts["runs"] is None
    assert facts["study"]["lce_version"] == "9.1.0"
    code, out = lce("summary", "--db", db)
    assert code == 1 and "install lce 9.1.0 or later" in out


@pytest.mark.slow
def test_the_explorer_on_the_previous_release(
    open_page: Callable[..., AppTest], tmp_path: Path
) -> None:
    """Every page that reads marts says it cannot render, with the one sentence; the SQL page
    still queries the tables the file has."""
    db = old_warehouse(tmp_path)
    for page in PAGES:
        at = open_page(db, page)  # no exception
        warning = texts(at.warning)
        assert OLD_SENTENCE in warning and "cannot render" in warning, page
        assert not at.dataframe and not at.get("plotly_chart"), page
    at = open_page(db, "sql")
    assert OLD_SENTENCE in texts(at.warning) and "cannot render" not in texts(at.warning)
    assert at.title and has_table(at, "n_units"), "the first example query ran on the old file"
    at = open_page(newer_warehouse(tmp_path), "overview")
    assert "install lce 9.1.0 or later" in texts(at.warning)
