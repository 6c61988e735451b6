"""`lce build`: run dbt into a work file, then publish it over the database by atomic rename.

dbt runs in a subprocess, so every DuckDB connection it opened is gone when it exits; readers of
the published file keep their snapshot (their open inode) and new readers see the new file.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import yaml

from base.errors import LceError
from base.scratch import owned_scratch
from warehouse import dbt_failures, dbt_vars
from warehouse.lake import file_lock, has_data, os_error, reading
from warehouse.paths import dbt_project_dir
from warehouse.query import connect

_URL_CHARACTERS = {"?", "#"}
VARS = tuple(dbt_vars.SPEC)  # every dbt var lce build accepts (warehouse/dbt_vars.py)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class BuildResult:
    db: Path
    log: Path
    warnings: list[str] = field(default_factory=list)


def parse_vars(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs (values in YAML) -> checked dbt vars."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or key not in VARS:
            raise LceError(f"--var {pair!r}: expected key=value with key one of {', '.join(VARS)}")
        value = yaml.safe_load(text) if text.strip() else None
        result[key] = _check_var(key, value, pair)
    return result


def _check_var(key: str, value: Any, pair: str) -> Any:
    try:
        return dbt_vars.check(key, value)
    except ValueError as exc:
        raise LceError(f"--var {pair!r}: {exc}") from None


def dbt_executable() -> str:
    beside = Path(sys.executable).parent / "dbt"
    if beside.exists():
        return str(beside)
    found = shutil.which("dbt")
    if not found:
        raise LceError("dbt is not installed in this environment (pip install dbt-duckdb)")
    return found


def _failure_summary(output: str, work: Path | None = None) -> str:
    """The first failure in dbt's output, said as what it means; ``work``: the failed build's
    file, which a failed not_null_columns test reads to name its column."""
    lines = [_ANSI.sub("", line).split("  ", 1)[-1].strip() for line in output.splitlines()]
    for i, line in enumerate(lines):
        if re.search(r"(Error|Failure) in |Compilation Error|Runtime Error|Parsing Error", line):
            detail = next((x for x in lines[i + 1 : i + 4] if x), "")
            found = f"{line}: {detail}" if detail else line
            meaning = dbt_failures.explain(line, work)
            return f"{meaning} ({found})" if meaning else found
    tail = [x for x in lines if x]
    return tail[-1] if tail else "no output"


_WARNING_TABLES = ("+dim_models", "+fct_task_benchmarks")  # what model_warnings reads


def build(
    lake: Path,
    db: Path,
    dbt_vars: dict[str, Any] | None = None,
    select: Sequence[str] = (),
) -> BuildResult:
    """Build from ``lake`` and publish at ``db``; on any failure ``db`` is left untouched.

    One build per published file at a time (an advisory lock beside it); the lake is held
    still (its lock, shared) while dbt reads it, so a commit landing meanwhile cannot mix two
    states of a study into one warehouse.

    ``select`` (dbt node selectors) builds only those models and their tests, for files that
    are read for a few tables and thrown away (`lce sensitivity`'s scratch builds); a published
    warehouse is always built whole. Each selector should carry its ancestors (``+model``): dbt
    builds what is named, and a model whose parents are missing fails. ``dim_models`` and
    ``fct_task_benchmarks`` are always added, since ``model_warnings`` reads them."""
    lake = lake.resolve()
    if not has_data(lake):
        raise LceError(
            f"lake {lake} holds no data: run `lce reference load`, `lce benchmarks add` "
            "or `lce extract` first"
        )
    db = db.resolve()
    if set(str(db)) & _URL_CHARACTERS:
        raise LceError(
            f"{db}: a database path must not contain '?' or '#' (dbt-duckdb reads it as a URL "
            "and would open another file); choose another --db or LCE_HOME"
        )
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, str(db.parent)) from None
    if not os.access(db.parent, os.W_OK):
        raise LceError(f"database folder {db.parent} is not writable")
    busy = f"another lce build is publishing {db} right now; wait for it to finish"
    with file_lock(db.with_name(f".{db.name}.lock"), exclusive=True, wait=False, busy=busy):
        _remove_stale_work_files(db)
        work = db.with_name(f".{db.name}.build-{uuid.uuid4().hex[:8]}")
        log = db.with_name(f".{db.stem}.build.log")
        try:
            with reading(lake):
                output, code = _run_dbt(lake, work, dbt_vars or {}, select)
            log.write_text(output)
            if code != 0:
                raise LceError(
                    f"dbt build failed, {db} left as it was: {_failure_summary(output, work)} "
                    f"(full log: {log})"
                )
            # Fold any WAL into the file so the single file is the whole database.
            try:
                with duckdb.connect(str(work)) as conn:
                    conn.execute("CHECKPOINT")
            except duckdb.Error as exc:
                raise LceError(f"{work}: {str(exc).splitlines()[0]}; {db} left as it was") from None
            Path(f"{db}.wal").unlink(missing_ok=True)
            os.replace(work, db)
        except OSError as exc:
            raise os_error(exc, str(work)) from exc
        finally:
            work.unlink(missing_ok=True)
            Path(f"{work}.wal").unlink(missing_ok=True)
    return BuildResult(db=db, log=log, warnings=model_warnings(db))


def _remove_stale_work_files(db: Path) -> None:
    """Work files of builds that were killed (we hold the build lock, so none is live)."""
    for stale in db.parent.glob(f".{glob_escape(db.name)}.build-*"):
        stale.unlink(missing_ok=True)


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a glob pattern."""
    return re.sub(r"([\[\]*?])", r"[\1]", text)


class _Terminated(LceError):
    """SIGTERM arrived while dbt ran (turned into an exception so the clean-up runs)."""


@contextmanager
def _terminate_as_exception() -> Iterator[None]:
    if threading.current_thread() is threading.main_thread():

        def handler(signum: int, frame: Any) -> None:
            raise _Terminated("stopped by SIGTERM while dbt ran; the published file is unchanged")

        previous = signal.signal(signal.SIGTERM, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
    else:
        yield


def _die_with_parent() -> None:
    """In the dbt child: be killed when lce dies, even by SIGKILL (Linux prctl)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _run_dbt(
    lake: Path, work: Path, dbt_vars: dict[str, Any], select: Sequence[str] = ()
) -> tuple[str, int]:
    """dbt build into ``work``; the child dies with us (Ctrl+C, SIGTERM or SIGKILL)."""
    project = dbt_project_dir()
    env = dict(
        os.environ,
        LCE_DB_PATH=str(work),
        LCE_LAKE=str(lake),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
    )
    # dbt's target and logs; the folders that killed builds left in $TMPDIR go first
    with owned_scratch("lce-dbt-") as scratch:
        command = [
            dbt_executable(),
            "--no-use-colors",
            "build",
            "--project-dir", str(project),
            "--profiles-dir", str(project),
            "--target-path", str(Path(scratch) / "target"),
            "--log-path", str(Path(scratch) / "logs"),
            # dbt's debug file log (1.3 MB a build) went into the scratch folder and was deleted
            # unread; writing it cost about 3% of a small build's CPU. The console output is
            # what lce keeps (.<db>.build.log).
            "--log-level-file", "none",
            "--vars", json.dumps(dbt_vars),
        ]  # fmt: skip
        if select:
            # "cautious": a test runs only when every model it reads was built (the default,
            # "eager", would also run a relationships test into a model left out, and fail)
            command += [
                "--select", " ".join([*select, *_WARNING_TABLES]),
                "--indirect-selection", "cautious",
            ]  # fmt: skip
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        try:
            with _terminate_as_exception():
                output, _ = proc.communicate()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return output, proc.returncode


def model_warnings(db: Path) -> list[str]:
    """Benchmarks naming models without a profile, and the reverse: reported, not fatal."""
    with connect(db) as conn:  # the readers' own config: one process may hold both
        rows = conn.execute(
            "select model, has_profile, has_benchmarks from dim_models "
            "where not has_profile or not has_benchmarks order by model"
        ).fetchall()
        any_benchmarks = conn.execute("select count(*) from fct_task_benchmarks").fetchone()
    warnings = []
    no_profile = [m for m, profile, _ in rows if not profile]
    no_bench = [m for m, profile, bench in rows if profile and not bench]
    if no_profile:
        warnings.append(
            f"benchmarks name models with no dissection profile: {', '.join(no_profile)}"
        )
    if no_bench and any_benchmarks and any_benchmarks[0]:
        warnings.append(f"models with a profile but no benchmarks: {', '.join(no_bench)}")
    return warnings
