"""How long each explorer page takes to render (Streamlit AppTest), on a published warehouse.

    .venv/bin/python benchmarks/bench_app.py [--db FILE] [--repeat N]

Default database: lce-data/paper-2022/lce.duckdb (what `make demo` builds), else $LCE_DB /
$LCE_HOME/lce.duckdb. For each page it times, as the median of N rounds:

- cold: the page's first render with Streamlit's data cache empty (every query runs);
- warm: a rerun, as after a widget change that leaves the page's queries cached.

Imports (streamlit, plotly, polars, duckdb) are paid once before timing, as a running server
has. The target is under 2 s per page.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PAGES = [
    "overview", "embedding", "components", "tasks", "compare", "units", "gallery", "concept",
    "similarity", "sql",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    started = time.perf_counter()
    import streamlit as st
    import streamlit.logger

    streamlit.logger.set_log_level("error")  # no "missing ScriptRunContext" chatter in bare mode
    from streamlit.testing.v1 import AppTest

    from warehouse.paths import db_path

    demo = REPO / "lce-data" / "paper-2022" / "lce.duckdb"
    db = args.db or (demo if demo.is_file() else db_path())
    if not db.is_file():
        sys.exit(f"{db}: no warehouse; build the reference one with `make demo` or pass --db")
    os.environ["LCE_DB"] = str(db)
    app = str(REPO / "app.py")

    def fresh() -> AppTest:
        at = AppTest.from_file(app, default_timeout=120).run()
        if at.exception:
            sys.exit(f"the app failed: {at.exception[0].value}")
        return at

    fresh()  # imports and first-run costs, paid once like a running server
    first = time.perf_counter() - started
    rows = []
    for page in PAGES:
        cold, warm = [], []
        for _ in range(args.repeat):
            at = fresh()
            st.cache_data.clear()
            started = time.perf_counter()
            at.switch_page(f"app_pages/{page}.py").run()
            cold.append(time.perf_counter() - started)
            if at.exception:
                sys.exit(f"{page}: {at.exception[0].value}")
            started = time.perf_counter()
            at.run()
            warm.append(time.perf_counter() - started)
        rows.append((page, statistics.median(cold), statistics.median(warm)))

    print(f"database: {db} ({db.stat().st_size / 1e6:.1f} MB)")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"first render in a fresh process (imports included): {first:.2f} s")
    print(f"median of {args.repeat} rounds, seconds")
    print(f"{'page':<12} {'cold':>6} {'warm':>6}")
    for page, c, w in rows:
        print(f"{page:<12} {c:>6.2f} {w:>6.2f}")
    worst = max(c for _, c, _ in rows)
    print(
        f"slowest cold render: {worst:.2f} s ({'within' if worst < 2 else 'over'} the 2 s target)"
    )


if __name__ == "__main__":
    main()
