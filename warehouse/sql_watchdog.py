"""Budgets a typed query cannot escape: DuckDB's interrupt does not land inside a long scalar
function (``repeat('x', 3000000000)`` ran 71 s past a 30 s timeout) and its memory limit does not
cover every allocation, so a thread watches the clock and the process's resident memory from
outside the query and ends the process that runs it. That process is `lce sql` itself, or, for
the explorer, a child made per query (``run_isolated``) so the server survives.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

GRACE_S = 3.0  # after the timeout, DuckDB's interrupt gets this long before the process ends
RSS_LIMIT_MB = 2048  # resident memory of the query's process; LCE_SQL_RSS_LIMIT_MB overrides it
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_limit_bytes() -> int:
    return int(float(os.environ.get("LCE_SQL_RSS_LIMIT_MB", RSS_LIMIT_MB)) * 2**20)


def resident_bytes() -> int:
    """This process's resident memory now (Linux /proc; 0 where it cannot be read)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def exit_with(message: str) -> NoReturn:
    """End this process at once with one error line (the query thread cannot be stopped)."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    os._exit(1)


def watch(
    interrupt: Callable[[], None], timeout_s: float, die: Callable[[str], Any]
) -> threading.Event:
    """Start a daemon thread that interrupts the query at ``timeout_s`` and calls ``die`` with
    one sentence when it is still running ``GRACE_S`` later or the process's resident memory
    passes ``rss_limit_bytes()``. Set the returned event when the query is over."""
    done = threading.Event()
    limit = rss_limit_bytes()
    start = time.monotonic()

    def run() -> None:
        interrupted = False
        while not done.wait(0.02):
            if resident_bytes() > limit:
                die(
                    f"The query was stopped: it needed more than {limit / 2**30:g} GiB of "
                    "memory; narrow it down or add a limit."
                )
                return
            elapsed = time.monotonic() - start
            if elapsed > timeout_s and not interrupted:
                interrupt()
                interrupted = True
            if elapsed > timeout_s + GRACE_S:
                die(f"The query was stopped after {timeout_s:g} s; narrow it down or add a limit.")
                return

    threading.Thread(target=run, name="lce-sql-watchdog", daemon=True).start()
    return done


def run_isolated(request: dict[str, Any], timeout_s: float) -> tuple[str, Any]:
    """Run ``warehouse.sql_child`` on ``request`` in a fresh process; ``("ok", SqlResult)`` or
    ``("error", sentence)``. The child ends itself over budget; this waits a little longer."""
    proc = subprocess.run(
        [sys.executable, "-m", "warehouse.sql_child"],
        input=pickle.dumps(request),
        capture_output=True,
        timeout=timeout_s + GRACE_S + 30,
    )
    if proc.stdout:
        kind, payload = pickle.loads(proc.stdout)  # noqa: S301 (our own child's answer)
        return kind, payload
    lines = proc.stderr.decode(errors="replace").strip().splitlines()
    if lines and lines[-1].startswith("error: "):
        return "error", lines[-1].removeprefix("error: ")
    return "error", f"The query's process ended without an answer (exit {proc.returncode})."
