"""One real browser: `streamlit run` on 127.0.0.1, loaded in headless Chromium.

AppTest runs the scripts but not the frontend; this checks that the page a user opens really
draws the embedding chart (plotly's SVG with every embedded model's label).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.browser import CHROMIUM, chromium, serve
from tests.conftest import REPO

pytestmark = [
    pytest.mark.slow,  # a real browser on a served app: seconds per page even when warm
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is absent: apt-get install chromium chromium-driver "
        "(`make test` does this)",
    ),
]


@pytest.fixture
def served_app(app_db: Path, tmp_path: Path) -> Iterator[str]:
    """The app served by `streamlit run` (headless, no usage stats) until the test ends."""
    yield from serve(app_db, tmp_path)


def test_embedding_page_draws_the_chart_in_chromium(
    served_app: str, app_db: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium(tmp_path)
    try:
        driver.get(f"{served_app}/embedding")
        wait = WebDriverWait(driver, 90)
        chart = wait.until(
            lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="stPlotlyChart"]')
        )[0]
        # plotly has drawn when the SVG carries the title and the point labels.
        wait.until(lambda d: chart.find_elements(By.CSS_SELECTOR, ".gtitle"))
        wait.until(lambda d: chart.find_elements(By.CSS_SELECTOR, ".scatterlayer .textpoint"))
        time.sleep(1)  # let the remaining traces paint before the screenshot
        screenshot = tmp_path / "embedding.png"
        assert driver.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 10_000
        title = chart.find_element(By.CSS_SELECTOR, ".gtitle").text
        assert title == "Learned Concepts Embedding"
        labels = {e.text for e in chart.find_elements(By.CSS_SELECTOR, ".textpoint")}
        with duckdb.connect(str(app_db), read_only=True) as conn:
            models = {m for (m,) in conn.execute("select distinct model from fct_lce").fetchall()}
        assert models <= labels, f"missing labels: {models - labels}"
        assert "Embedding" in driver.find_element(By.TAG_NAME, "h1").text
    finally:
        driver.quit()


@pytest.fixture
def served_gallery(maps_home: Path, tmp_path: Path) -> Iterator[str]:
    """The app on a demo-like warehouse (real extraction, activation maps kept)."""
    yield from serve(maps_home / "lce.duckdb", tmp_path)


@pytest.mark.slow
def test_gallery_draws_mask_outlines_on_the_top_images_in_chromium(
    served_gallery: str, maps_home: Path, tmp_path: Path
) -> None:
    """From the screenshot's pixels: the gallery's top images carry magenta outline pixels
    (the probe's own images, random noise, have none), as many tiles as the file has units."""
    from selenium.webdriver.common.by import By

    driver = check_gallery_outlines(served_gallery, tmp_path)
    try:
        with duckdb.connect(str(maps_home / "lce.duckdb"), read_only=True) as conn:
            (n_units,) = conn.execute(
                "select count(*) from fct_unit_labels where model = 'cnnA' and layer = "
                "(select primary_layer from dim_models where model = 'cnnA')"
            ).fetchone()  # type: ignore[misc]
        links = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stPageLink"] a')
        assert len([a for a in links if "in detail" in a.text]) == min(n_units, 24)
    finally:
        driver.quit()


@pytest.mark.slow
def test_gallery_on_the_demo_draws_mask_outlines_in_chromium(
    demo: tuple[Path, str], tmp_path: Path
) -> None:
    """The same check on the embedded demo's warehouse (`lce demo`, reduced), as a user opens it
    after `make demo`: outlines on the top images, none elsewhere on the page."""
    work, _ = demo
    server = serve(work / "lce.duckdb", tmp_path)
    url = next(server)
    try:
        driver = check_gallery_outlines(url, tmp_path)
        driver.quit()
        if os.environ.get("LCE_DOCS_SCREENSHOTS"):  # refresh the README's picture
            shutil.copy(tmp_path / "gallery.png", REPO / "docs" / "explorer.png")
    finally:
        server.close()


def check_gallery_outlines(url: str, tmp_path: Path) -> Any:
    """Open the Gallery at ``url``; assert from the screenshot's pixels that at least three
    visible top images carry the outline colour and that nothing outside the images does.
    Returns the (still open) driver for further checks; the caller quits it."""
    import numpy as np
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from lce.explore import OUTLINE_RGB

    driver = chromium(tmp_path)
    try:
        driver.get(f"{url}/gallery")
        wait = WebDriverWait(driver, 90)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="stImage"] img'))
        images = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stImage"] img')
        wait.until(lambda d: all(d.execute_script("return arguments[0].complete && "
                                                  "arguments[0].naturalWidth > 0", i)
                                 for i in images))  # fmt: skip
        time.sleep(1)
        shot = tmp_path / "gallery.png"
        driver.execute_script("arguments[0].scrollIntoView();", images[0])
        time.sleep(0.5)
        assert driver.save_screenshot(str(shot))
        pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
        target = np.array(OUTLINE_RGB)
        near = (np.abs(pixels - target) <= 40).all(axis=-1)
        ratio = driver.execute_script("return window.devicePixelRatio") or 1
        outlined = 0
        for img in images:
            rect = driver.execute_script(
                "const r = arguments[0].getBoundingClientRect();"
                "return [r.left, r.top, r.width, r.height];", img
            )  # fmt: skip
            x0, y0, w, h = (int(round(v * ratio)) for v in rect)
            if w <= 0 or h <= 0 or y0 < 0 or y0 + h > pixels.shape[0]:
                continue  # below the fold
            if near[y0 : y0 + h, x0 : x0 + w].sum() >= 4:
                outlined += 1
        assert outlined >= 3, f"only {outlined} of the visible top images show an outline"
        # outside the images the page has no such magenta (it is the outline's colour only)
        mask = np.zeros_like(near)
        for img in images:
            x0, y0, w, h = (
                int(round(v * ratio))
                for v in driver.execute_script(
                    "const r = arguments[0].getBoundingClientRect();"
                    "return [r.left, r.top, r.width, r.height];", img
                )
            )  # fmt: skip
            mask[max(0, y0) : max(0, y0 + h), max(0, x0) : max(0, x0 + w)] = True
        assert near[~mask].sum() == 0
        assert "Gallery" in driver.find_element(By.TAG_NAME, "h1").text
    except BaseException:
        driver.quit()
        raise
    return driver


@pytest.mark.slow
def test_lce_app_shows_no_deploy_button_in_chromium(
    maps_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The options `lce app` passes to Streamlit, served: no Deploy button (issue 13)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.conftest import lce

    calls: list[list[str]] = []
    monkeypatch.setattr(os, "execve", lambda path, command, env: calls.append(command))
    code, out = lce("app", "--db", maps_home / "lce.duckdb")
    assert code == 0, out
    options = tuple(a for a in calls[0] if a.startswith("--client."))
    assert options
    server = serve(maps_home / "lce.duckdb", tmp_path, options)
    url = next(server)
    driver = chromium(tmp_path)
    try:
        driver.get(f"{url}/gallery")
        WebDriverWait(driver, 90).until(lambda d: d.find_elements(By.TAG_NAME, "h1"))
        time.sleep(2)  # the toolbar is drawn after the page
        assert "Gallery" in driver.find_element(By.TAG_NAME, "h1").text
        assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stAppDeployButton"]')
        assert "Deploy" not in driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()
        server.close()
