"""`lce report`: the static HTML report opened from disk in headless Chromium on the demo-like
study (real extraction, top images with their maps), its numbers against SQL on the file, and
a model name full of markup shown as text."""

from __future__ import annotations

import os
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import numpy as np
import pytest

from tests.app_driver import sql
from tests.browser import CHROMIUM, chromium
from tests.conftest import REPO, lce

MARKUP = '<b>bold</b><script>alert("x")</script>&amp;'


def test_report_opens_from_disk_in_chromium(maps_home: Path, tmp_path: Path) -> None:
    """Embedding, a layer histogram and outlined units render; every image loads; the bars,
    IoUs and coordinates shown are the file's."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent")
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from lce.explore import OUTLINE_RGB

    db = maps_home / "lce.duckdb"
    out = tmp_path / "report"
    code, printed = lce("report", "--db", db, "--out", out)
    assert code == 0, printed
    driver = chromium(tmp_path)
    try:
        driver.get((out / "index.html").as_uri())
        wait = WebDriverWait(driver, 60)
        images = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".unit img"))
        wait.until(lambda d: all(d.execute_script("return arguments[0].complete", i)
                                 for i in images))  # fmt: skip
        widths = [driver.execute_script("return arguments[0].naturalWidth", i) for i in images]
        assert all(w > 0 for w in widths)
        # top images: 3 per unit for every unit of both models' layers (all under the cap)
        (n_top,) = sql(db, "select count(*) from fct_unit_top_images")[0]
        assert len(images) == n_top
        outlined = [i for i in images if i.get_attribute("data-outlined") == "true"]
        assert outlined
        pixels = np.asarray(Image.open(out / outlined[0].get_attribute("src").split("report/")[-1]))
        assert (pixels[..., :3] == OUTLINE_RGB).all(axis=-1).any()
        # the embedding: every embedded model at its coordinates
        points = driver.find_elements(By.CSS_SELECTOR, "svg.embedding g.point")
        shown = {p.get_attribute("data-model"): float(p.get_attribute("data-x")) for p in points}
        expected = dict(sql(db, "select model, value from fct_lce where component = 1"))
        assert shown.keys() == expected.keys() and expected
        assert all(shown[m] == pytest.approx(expected[m], abs=1e-12) for m in expected)
        # a layer histogram: interpretable units per concept
        bars = driver.find_elements(By.CSS_SELECTOR, "svg.histogram")[0]
        first = bars.find_elements(By.CSS_SELECTOR, "g.bar")
        counted = dict(sql(db, """
            select concept, count(*) from fct_unit_labels where model = 'cnnA' and layer = 'block1'
            and is_interpretable and concept is not null group by concept"""))  # fmt: skip
        assert {b.get_attribute("data-concept"): int(b.get_attribute("data-units"))
                for b in first} == counted  # fmt: skip
        # every unit's IoU as the file has it
        ious = dict(sql(db, "select unit, iou from fct_unit_labels where model = 'cnnA' and "
                            "layer = 'block1'"))  # fmt: skip
        grid = driver.find_elements(By.CSS_SELECTOR, "section.layer")[0]
        for cell in grid.find_elements(By.CSS_SELECTOR, ".unit"):
            iou = ious[int(cell.get_attribute("data-unit"))]
            assert cell.get_attribute("data-iou") == ("" if iou is None else f"{iou:.3f}")
        driver.execute_script("arguments[0].scrollIntoView();", grid)
        time.sleep(0.3)
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
        if os.environ.get("LCE_DOCS_SCREENSHOTS"):  # refresh the README's picture
            shutil.copy(shot, REPO / "docs" / "report.png")
    finally:
        driver.quit()


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_report_shows_a_markup_model_name_as_text(maps_home: Path, tmp_path: Path) -> None:
    """A model named with HTML tags is text everywhere in the report: no script or b element.
    (With a probe folder that is not there, each layer says why it has no images.)"""
    db = tmp_path / "markup.duckdb"
    shutil.copy(maps_home / "lce.duckdb", db)
    with duckdb.connect(str(db)) as conn:
        columns = conn.execute(
            "select table_name, column_name from information_schema.columns "
            "where column_name in ('model', 'model_a', 'model_b') and table_schema = 'main' "
            "and table_name in (select table_name from information_schema.tables "
            "where table_type = 'BASE TABLE')"
        ).fetchall()
        for table, column in columns:
            conn.execute(f'update "{table}" set "{column}" = ? where "{column}" = ?',
                         [MARKUP, "cnnA"])  # fmt: skip
    code, printed = lce(
        "report", "--db", db, "--out", tmp_path / "report", "--max-units", "1",
        "--probe", tmp_path / "absent",
    )  # fmt: skip
    assert code == 0, printed
    parser = Tags()
    parser.feed((tmp_path / "report" / "index.html").read_text(encoding="utf-8"))
    assert not parser.tags & {"script", "b"}
    text = "".join(parser.text)
    assert MARKUP in text
    assert f"No top images: The probe folder {tmp_path / 'absent'} is not reachable" in text
    code, printed = lce("report", "--db", db, "--out", tmp_path / "other", "--models", "nosuch")
    assert code == 1 and "no dissected model or layer named 'nosuch'" in printed
    assert not (tmp_path / "other").exists()
