"""Driving the Streamlit explorer in tests: the app on a warehouse through AppTest, and what the
tests read off its pages (charts as the JSON sent to the browser, tables, metrics, texts).

A plugin module (listed in conftest's ``pytest_plugins``) for the ``open_page`` fixture, and
imported by tests/test_app.py and tests/test_page_*.py for the readers. Expected values
come from ``sql`` (DuckDB straight on the file), never from the app's own functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO

APP = REPO / "app.py"


def sql(db: Path, text: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """The expected values: straight from the file with DuckDB, not through the app's code."""
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(text, params or []).fetchall()


@pytest.fixture
def open_page(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., AppTest]]:
    """The app on ``db`` (and ``probe`` for the images, else none), switched to ``page``,
    without exceptions."""

    def _open(db: Path, page: str, probe: Path | str | None = None) -> AppTest:
        monkeypatch.setenv("LCE_DB", str(db))
        if probe is None:
            monkeypatch.delenv("LCE_PROBE_DIR", raising=False)
        else:
            monkeypatch.setenv("LCE_PROBE_DIR", str(probe))
        at = AppTest.from_file(str(APP), default_timeout=60).run()
        at.switch_page(f"app_pages/{page}.py").run()
        assert_clean(at)
        return at

    yield _open


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def charts(at: AppTest) -> list[dict[str, Any]]:
    """Every plotly figure on the page, as the JSON Streamlit sends to the browser."""
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]  # type: ignore[attr-defined]


def chart_with_title(at: AppTest, words: str) -> dict[str, Any]:
    for fig in charts(at):
        title = fig["layout"].get("title", {})
        if words in (title.get("text", "") if isinstance(title, dict) else str(title)):
            return fig
    raise AssertionError(f"no chart titled with {words!r}")


def shown(markdown: str) -> str:
    """A Markdown string as a visitor reads it: names are backslash-escaped on the pages
    (``lce.explore.safe_text.md``), the escapes are not shown."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def metric(at: AppTest, label: str) -> str:
    for m in at.metric:
        if shown(m.label) == label:
            return m.value
    raise AssertionError(f"no metric {label!r}: {[m.label for m in at.metric]}")


def table(at: AppTest, column: str) -> Any:
    """The first table on the page with ``column`` (st.dataframe carries no key without
    selections, so tables are found by what they hold)."""
    for frame in at.dataframe:
        if column in frame.value.columns:
            return frame.value
    raise AssertionError(f"no table with a {column!r} column")


def has_table(at: AppTest, column: str) -> bool:
    return any(column in frame.value.columns for frame in at.dataframe)


def texts(elements: Any) -> str:
    return " | ".join(shown(str(e.value)) for e in elements)
