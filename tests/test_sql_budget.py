"""Typed queries stay inside their budget: a query that runs past its timeout or asks for the
machine's memory ends non-zero in one line, in `lce sql` and in the explorer's query process,
with the process's peak resident memory far below what the query asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

# Each asks for 3 GB or more: a 3e9-character string (DuckDB's interrupt does not land inside
# repeat, and its memory limit does not see the string) and a list of 10^9 values.
BOMBS = [
    "select length(repeat('x', 3000000000))",
    "select len(list(x)) from range(1000000000) t(x)",
]
PEAK_LIMIT = 3 * 2**30

# Runs one query in a fresh process and prints that process's answer and its peak resident
# memory (ru_maxrss of its children: the query's process and anything it started).
MEASURE = """
import json, resource, subprocess, sys
mode, db, text = sys.argv[1:4]
if mode == "cli":
    cmd = [sys.executable, "-m", "lce.cli", "sql", text, "--db", db, "--timeout", "2"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    answer = {"rc": p.returncode, "out": p.stdout, "err": p.stderr}
else:
    from pathlib import Path
    from warehouse.sql_guard import SqlRefused, run_sql_isolated
    try:
        run_sql_isolated(Path(db), text, timeout_s=2)
        answer = {"rc": 0, "out": "", "err": ""}
    except SqlRefused as exc:
        answer = {"rc": 1, "out": "", "err": "error: " + str(exc)}
answer["peak"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps(answer))
"""


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Any DuckDB file will do: the bombs read no table."""
    path = tmp_path_factory.mktemp("sqlbudget") / "w.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("create table t as select 1 as x")
    return path


def measure(mode: str, db: Path, text: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, mode, str(db), text],
        capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_stopped(answer: dict, text: str) -> None:
    assert answer["rc"] != 0, (text, answer)
    lines = [x for x in answer["err"].strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), (text, answer)
    assert "stopped" in lines[0] or "Out of Memory" in lines[0], (text, lines)
    assert answer["peak"] < PEAK_LIMIT, (text, answer["peak"] / 2**30)


@pytest.mark.slow
@pytest.mark.parametrize("text", BOMBS)
def test_lce_sql_bombs_end_in_one_line_within_memory(small_db: Path, text: str) -> None:
    assert_stopped(measure("cli", small_db, text), text)


@pytest.mark.slow
def test_sql_page_query_process_stops_the_scalar_bomb(small_db: Path) -> None:
    """The explorer runs each typed query in a process of its own (the server lives on)."""
    assert_stopped(measure("page", small_db, BOMBS[0]), BOMBS[0])


def test_guarded_connection_is_bounded_and_locked(small_db: Path) -> None:
    from warehouse.query import guarded_config

    with duckdb.connect(str(small_db), read_only=True, config=guarded_config()) as conn:
        memory, temp, locked = conn.execute(
            "select current_setting('memory_limit'), current_setting('temp_directory'), "
            "current_setting('lock_configuration')"
        ).fetchone()
        assert memory.endswith("MiB") and float(memory.split()[0]) < 1100, memory
        assert (temp, locked) == ("", True)
        with pytest.raises(duckdb.Error, match="lock"):
            conn.execute("set memory_limit = '10GB'")


@pytest.mark.parametrize(
    "text",
    [
        "select * from duckdb_databases()",
        "select path from duckdb_databases",
        "select * from pragma_database_list",
        "select * from Duckdb_Settings() where value like '%/%'",
        "select current_setting('home_directory')",
        "select * from duckdb_extensions()",
        "select * from duckdb_secrets()",
    ],
)
def test_sql_reveals_no_server_path(small_db: Path, text: str) -> None:
    """The system functions that show the file's path, the home or the secret folders are refused,
    and an error never shows a path on the server."""
    proc = subprocess.run(
        [sys.executable, "-m", "lce.cli", "sql", text, "--db", str(small_db), "--csv"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0, proc.stdout
    assert str(small_db.parent) not in proc.stdout + proc.stderr
    assert "/root" not in proc.stderr and str(Path.home()) not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_printers_escape_control_characters_from_data(small_db: Path) -> None:
    """A name with a terminal escape (clear screen, set title) or a newline prints escaped."""
    text = "select 'esc' || chr(27) || '[2J' || chr(27) || ']0;PWNED' || chr(7) || 'a' || chr(10) || 'b' as m"
    proc = subprocess.run(
        [sys.executable, "-m", "lce.cli", "sql", text, "--db", str(small_db)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    assert "esc\\x1b[2J\\x1b]0;PWNED\\x07a\\nb" in proc.stdout
