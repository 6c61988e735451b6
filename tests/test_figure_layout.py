"""How the explorer's figures are laid out: equal-scaled embedding axes, significance stars past
the error-bar caps, legends at the foot of every figure.

The pure helpers are checked against hand-worked examples; the figures are checked on the
objects the pages send to the browser (AppTest), against the file's numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from selenium.webdriver.support.ui import WebDriverWait
from streamlit.testing.v1 import AppTest

from lce.explore.figures import STAR_TRACE, star_positions
from lce.explore.scatter_text import equal_ranges
from lce.explore.tasks import task_correlation_figure
from tests.app_driver import assert_clean, chart_with_title, charts, sql
from tests.browser import CHROMIUM, chromium

PAGES = ["overview", "embedding", "components", "tasks", "compare", "units", "concept"]


def test_equal_ranges_by_hand() -> None:
    # x data 0..4 padded by a quarter of its span: -1..5 (span 6); y data 0..1: -0.25..1.25.
    (x, y) = equal_ranges([0.0, 4.0], [0.0, 1.0], pad=0.25)
    assert x == pytest.approx((-1.0, 5.0)) and y == pytest.approx((-2.5, 3.5))  # both span 6
    # A plot area twice as wide as high: y needs only half x's span, 3, around 0.5.
    (x, y) = equal_ranges([0.0, 4.0], [0.0, 1.0], pad=0.25, aspect=2.0)
    assert x == pytest.approx((-1.0, 5.0)) and y == pytest.approx((-1.0, 2.0))
    # Tall data: y's padded span 6 decides, x gets 2 x 6 = 12 around 0.5.
    (x, y) = equal_ranges([0.0, 1.0], [0.0, 4.0], pad=0.25, aspect=2.0)
    assert x == pytest.approx((-5.5, 6.5)) and y == pytest.approx((-1.0, 5.0))


def test_star_positions_by_hand() -> None:
    r = [0.5, -0.4, 0.2, None]
    lo = [0.3, -0.7, None, None]
    hi = [0.8, -0.1, None, None]
    # Above the upper bound for r >= 0, below the lower bound for r < 0, at r without bounds.
    assert star_positions(r, lo, hi, 0.05) == pytest.approx([0.85, -0.75, 0.25, None])


def _stars_past_the_caps(fig: Any) -> int:
    """Every significant bar's star lies beyond its error bar, in the bar's direction, in the
    bar's slot (same panel, offsetgroup and x); the bars themselves carry no star. Returns how many."""
    data = [t if isinstance(t, dict) else t.to_plotly_json() for t in fig["data"]]
    stars = {
        (t.get("xaxis"), t["offsetgroup"], x): (text, y)
        for t in data
        if t["name"] == STAR_TRACE
        for x, text, y in zip(t["x"], t["text"], t["y"], strict=True)
    }
    seen = 0
    for t in data:
        if t["name"] == STAR_TRACE:
            continue
        assert "*" not in (t.get("text") or [])
        up, down = t["error_y"]["array"], t["error_y"]["arrayminus"]
        for x, r, u, d in zip(t["x"], t["y"], up, down, strict=True):
            text, y = stars.get((t.get("xaxis"), t.get("offsetgroup"), x), ("", None))
            if text != "*":
                continue
            assert y is not None and (y > r + u if r >= 0 else y < r - d), (x, r, u, d, y)
            seen += 1
    return seen


def _task_frame() -> pl.DataFrame:
    """Four correlations by hand: three survive, one positive bar reaching r_hi = 1, one negative."""
    return pl.DataFrame(
        {
            "component": [1, 1, 2, 2],
            "result": ["A", "B", "A", "B"],
            "pearson_r": [0.6, -0.5, 0.1, 0.9],
            "r_lo": [0.4, -0.8, -0.2, 0.7],
            "r_hi": [0.75, -0.3, 0.4, 1.0],
            "p_value": [0.01, 0.02, 0.5, 0.001],
            "q_value": [0.02, 0.03, 0.5, 0.004],
            "n": [10, 10, 10, 10],
            "significant": [True, True, False, True],
            "higher_is_better": [True, True, True, True],
        }
    )


def test_task_stars_sit_past_the_error_bar_caps() -> None:
    assert _stars_past_the_caps(task_correlation_figure(_task_frame(), "classification")) == 3


def test_components_stars_sit_past_the_error_bar_caps(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "components")
    fig = chart_with_title(at, "per-category counts")
    surviving = sql(
        app_db,
        "select count(*) from fct_component_category_correlations where significant "
        "and measure in ('n_units', 'n_unique_concepts')",
    )[0][0]
    assert _stars_past_the_caps(fig) == surviving


def _legend_at_foot(fig: dict[str, Any]) -> bool:
    legend = fig["layout"].get("legend", {})
    at_container_foot = legend.get("yref") == "container" and legend.get("y", 1) <= 0.05
    below_plot = legend.get("y", 1) < 0 and legend.get("yanchor") == "top"
    return legend.get("orientation") == "h" and (at_container_foot or below_plot)


@pytest.mark.slow
def test_every_legend_lies_at_the_foot_of_its_figure(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    """Every figure with a legend on the pages (the Embedding with its intervals and the 3-D view
    included) puts it horizontally below the plot, where no title can meet it."""
    with_legend = 0
    for page in PAGES:
        at = open_page(app_db, page)
        if page == "embedding":
            at.toggle(key="emb_intervals").set_value(True).run()
            assert_clean(at)
        for fig in charts(at):
            shown = [t for t in fig["data"] if t.get("showlegend", True)]
            if len(shown) < 2 or fig["layout"].get("showlegend") is False:
                continue
            title = fig["layout"].get("title", {})
            assert _legend_at_foot(fig), (page, title)
            with_legend += 1
    assert with_legend >= 5


def test_embedding_axes_are_equal_scaled(open_page: Callable[..., AppTest], app_db: Path) -> None:
    at = open_page(app_db, "embedding")
    at.toggle(key="emb_intervals").set_value(True).run()
    assert_clean(at)
    fig = chart_with_title(at, "Learned Concepts Embedding")
    layout = fig["layout"]
    assert layout["yaxis"]["scaleanchor"] == "x" and layout["yaxis"].get("scaleratio", 1) == 1
    (x0, x1), (y0, y1) = layout["xaxis"]["range"], layout["yaxis"]["range"]
    margin = layout["margin"]
    plot_w = layout["width"] - margin["l"] - margin["r"]
    plot_h = layout["height"] - margin["t"] - margin["b"]
    # One unit is as many pixels on x as on y.
    assert (x1 - x0) / plot_w == pytest.approx((y1 - y0) / plot_h)
    # Every point and every interval end is inside the ranges.
    xs = [v for t in fig["data"] for v in t["x"] if v is not None]
    ys = [v for t in fig["data"] for v in t["y"] if v is not None]
    assert x0 < min(xs) and max(xs) < x1 and y0 < min(ys) and max(ys) < y1
    threes = [f for f in charts(at) if "three components" in str(f["layout"].get("title"))]
    for three in threes:
        assert three["layout"]["scene"]["aspectmode"] == "data"


@pytest.mark.slow  # a real browser: a few seconds
@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent")
def test_stars_and_legend_as_chromium_draws_them(tmp_path: Path) -> None:
    """In the drawn SVG: each star is centred on its bar's error bar and clear of it (beyond the
    cap, not on it), and the legend lies below the tick labels and the title above the plot."""
    fig = task_correlation_figure(_task_frame(), "classification")
    page = tmp_path / "figure.html"
    fig.write_html(page, include_plotlyjs=True)
    driver = chromium(tmp_path)
    try:
        driver.get(page.as_uri())
        boxes = WebDriverWait(driver, 30).until(lambda d: d.execute_script(BOXES_JS))
    finally:
        driver.quit()
    stars = [b for b in boxes["text"] if b["text"] == "*"]
    assert len(stars) == 3
    for star in stars:
        centre = (star["left"] + star["right"]) / 2
        (bar,) = [e for e in boxes["errorbars"] if e["left"] - 1 <= centre <= e["right"] + 1]
        assert star["bottom"] <= bar["top"] or star["top"] >= bar["bottom"], (star, bar)
    legend, ticks, title = boxes["legend"], boxes["xticks"], boxes["title"]  # legend: its items
    assert legend["top"] >= ticks["bottom"] and title["bottom"] <= boxes["plot"]["top"]


BOXES_JS = """
const box = e => { const b = e.getBoundingClientRect();
  return {left: b.left, right: b.right, top: b.top, bottom: b.bottom, text: e.textContent}; };
const one = s => { const e = document.querySelector(s); return e ? box(e) : null; };
const text = Array.from(document.querySelectorAll('.bartext')).map(box);
if (!text.length || !one('g.legend')) return null;
return {text: text, errorbars: Array.from(document.querySelectorAll('.errorbar path')).map(box),
        legend: one('g.legend .scrollbox'), xticks: one('.xaxislayer-above'), title: one('.gtitle'),
        plot: one('.nsewdrag')};
"""
