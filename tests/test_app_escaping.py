"""Names are text: a warehouse whose every name is Markdown or HTML (tests/hostile_names.py) puts
no link, image, emphasis or formula on any page of the explorer, nor in `lce report`.

Three views of the same pages: AppTest (every Markdown string a page sends, rendered by a
CommonMark renderer with raw HTML on; every string of every chart), the served app in headless
Chromium (the DOM a visitor gets: no element links to or loads from 127.0.0.1:9, and the names
read literally), and the static report's HTML parsed.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from tests.app_driver import assert_clean, charts
from tests.browser import CHROMIUM, chromium, serve
from tests.hostile_names import (
    ANCHOR,
    HOSTILE,
    LEAK,
    MATH,
    PHISH,
    TOP_IMAGE_LAYER,
    TOP_IMAGE_MODEL,
    build_hostile_home,
)

pytestmark = pytest.mark.slow  # builds its own warehouse

PAGES = [
    "overview", "embedding", "components", "tasks", "compare", "units", "gallery", "concept",
    "similarity", "sql",
]  # fmt: skip
MARKDOWN_ELEMENTS = ("markdown", "caption", "info", "warning", "error", "success", "title",
                     "header", "subheader")  # fmt: skip
RENDER = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [f"{tag} {k}={v}" for k, v in attrs if k in ("href", "src") and v]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def hostile_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("hostile-home")
    build_hostile_home(home)
    return home


def markdown_sources(at: AppTest) -> list[str]:
    """Every string of the page that Streamlit renders as Markdown: body text, notes, titles,
    metric labels and tooltips, tab and widget labels."""
    found = [str(e.value) for kind in MARKDOWN_ELEMENTS for e in at.get(kind)]
    for m in at.metric:
        found += [m.label, m.proto.help]
    found += [t.label for t in at.tabs]
    for kind in ("selectbox", "multiselect", "text_input", "slider", "number_input", "radio"):
        found += [w.label for w in at.get(kind)]  # type: ignore[attr-defined]
    return [s for s in found if s]


def markup_problems(source: str) -> list[str]:
    """What a Markdown string would become that a name must not: a link, an image, raw HTML,
    emphasis of a planted word, or a formula (an unescaped $)."""
    rendered = RENDER.render(source)
    problems = [tag for tag in ("<a ", "<img", "<em>bold</em>") if tag in rendered]
    if re.search(r"(?<!\\)\$", re.sub(r"(`+).*?\1", "", source)):  # outside code spans
        problems.append("unescaped $ (KaTeX)")
    parser = _Links()
    parser.feed(rendered)
    problems += [ref for ref in parser.refs if LEAK in ref]
    return problems


def chart_strings(figure: Any) -> Iterator[str]:
    if isinstance(figure, str):
        yield figure
    elif isinstance(figure, dict):
        for value in figure.values():
            yield from chart_strings(value)
    elif isinstance(figure, list):
        for value in figure:
            yield from chart_strings(value)


def shown_text(source: str) -> str:
    """What a visitor reads of a Markdown string: rendered, tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", RENDER.render(source)))


def open_hostile(hostile_home: Path, page: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """``page`` on the hostile warehouse, showing the model with top images where it can."""
    monkeypatch.setenv("LCE_DB", str(hostile_home / "lce.duckdb"))
    monkeypatch.delenv("LCE_PROBE_DIR", raising=False)
    at = AppTest.from_file(str(Path(__file__).parents[1] / "app.py"), default_timeout=60).run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert_clean(at)
    if page in ("units", "gallery"):
        at.selectbox(key=f"{page}_model").set_value(TOP_IMAGE_MODEL).run()
        at.selectbox(key=f"{page}_layer").set_value(TOP_IMAGE_LAYER).run()
    elif page == "embedding":
        at.selectbox(key="emb_highlight").set_value(ANCHOR).run()
    elif page == "sql":  # DuckDB quotes the value it cannot convert: a name, in an error
        at.text_area(key="sql_text").input("select model::int from dim_models").run()
        assert at.error
    assert_clean(at)
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_shows_markup_names_as_text(
    hostile_home: Path, page: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_hostile(hostile_home, page, monkeypatch)
    bad = {s: p for s in markdown_sources(at) if (p := markup_problems(s))}
    assert not bad, f"{page}: names rendered as markup: {bad}"
    for figure in charts(at):
        raw = [s for s in chart_strings(figure) if re.search(r"<a[\s>]|<img", s, re.IGNORECASE)]
        assert not raw, f"{page}: chart strings with live HTML: {raw[:3]}"
    # the names are there, readable as written
    read = " ".join(shown_text(s) for s in markdown_sources(at))
    read += " ".join(html.unescape(s) for f in charts(at) for s in chart_strings(f))
    read += json.dumps([str(f.value.to_dict()) for f in at.dataframe])
    assert any(name in read for name in HOSTILE), f"{page} shows none of the planted names"


# ---------------------------------------------------------------------------------------------
# In a browser: the DOM a visitor gets
# ---------------------------------------------------------------------------------------------

# Every element attribute that fetches or links, and any text shown by a page; run in the page.
DOM_REPORT = """
const bad = [];
for (const el of document.querySelectorAll('*')) {
  for (const attr of el.attributes) {
    if (/^(href|xlink:href|src|srcset|action|formaction|poster|data|style)$/i.test(attr.name)
        && attr.value.includes(arguments[0])) {
      bad.push(el.tagName + ' ' + attr.name + '=' + attr.value);
    }
  }
}
const emphasis = [...document.querySelectorAll('em, i, strong, b')]
  .filter(e => e.textContent.trim() === 'bold').length;
return {bad: bad, katex: document.querySelectorAll('.katex').length, emphasis: emphasis,
        text: document.body.innerText + ' ' +
              [...document.querySelectorAll('svg text')].map(t => t.textContent).join(' ')};
"""


def wait_for_page(driver: Any, url: str) -> None:
    """Open ``url`` and wait until its title and every chart are drawn and the run is over."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, 120)
    wait.until(lambda d: d.find_elements(By.TAG_NAME, "h1"))
    wait.until(
        lambda d: (
            not d.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
            and all(
                c.find_elements(By.CSS_SELECTOR, ".main-svg")
                for c in d.find_elements(By.CSS_SELECTOR, '[data-testid="stPlotlyChart"]')
            )
        )
    )
    time.sleep(1.5)  # the last elements of the run paint


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent")
def test_served_pages_have_no_link_or_image_from_names_in_chromium(
    hostile_home: Path, tmp_path: Path
) -> None:
    """Every page as a visitor's browser builds it: no element points at 127.0.0.1:9, no
    emphasis or formula comes from a name, and every planted name reads literally somewhere;
    a select box's open list shows the names as text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server = serve(hostile_home / "lce.duckdb", tmp_path)
    url = next(server)
    driver = chromium(tmp_path)
    seen = ""
    try:
        for page in PAGES:
            wait_for_page(driver, url if page == "overview" else f"{url}/{page}")
            found = driver.execute_script(DOM_REPORT, LEAK)
            assert not found["bad"], f"{page}: {found['bad'][:5]}"
            assert found["katex"] == 0, f"{page}: a name became a formula"
            assert found["emphasis"] == 0, f"{page}: *bold* became emphasis"
            seen += found["text"]
        missing = [name for name in HOSTILE if name not in seen]
        assert not missing, f"names never shown as written: {missing}"
        # A select box's options, opened: plain text, no link
        wait_for_page(driver, f"{url}/compare")
        (model_a,) = [
            box
            for box in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSelectbox"]')
            if "Model A" in box.text
        ]
        model_a.find_element(By.CSS_SELECTOR, "input").click()
        options = WebDriverWait(driver, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, '[role="option"]')
        )
        labels = {o.text for o in options}
        assert {PHISH, ANCHOR, MATH} <= labels, labels
        assert not driver.execute_script(DOM_REPORT, LEAK)["bad"]
    finally:
        driver.quit()
        server.close()


# ---------------------------------------------------------------------------------------------
# lce report
# ---------------------------------------------------------------------------------------------


def test_report_shows_markup_names_as_text(hostile_home: Path, tmp_path: Path) -> None:
    from tests.conftest import lce

    code, out = lce(
        "report", "--db", hostile_home / "lce.duckdb", "--out", tmp_path / "report",
        "--probe", hostile_home / "probe",
    )  # fmt: skip
    assert code == 0, out
    parser = _Links()
    parser.feed((tmp_path / "report" / "index.html").read_text())
    assert not [r for r in parser.refs if LEAK in r], parser.refs
    text = "".join(parser.text)
    assert all(name in text for name in (PHISH, ANCHOR, MATH)), "names shown as written"


def test_md_and_plot_text_by_hand() -> None:
    """The two escapes against hand-worked expectations."""
    from lce.explore.safe_text import md, plot_text

    assert md("*a* [b](c)") == r"\*a\* \[b\]\(c\)"
    assert md("résumé 12") == "résumé 12"
    assert plot_text('<a href="x">&</a>') == '&lt;a href="x"&gt;&amp;&lt;/a&gt;'
    assert shown_text(md(PHISH)).strip() == PHISH
