"""A model switch in a real browser: every widget that depends on the model follows it.

AppTest runs the scripts without the frontend, and the frontend is where a switch went wrong:
Streamlit keeps a keyed widget's value in the browser, so after the page popped a key the
browser still showed (and sent back) the previous model's unit label, category chips and page
number. Served by `streamlit run` on 127.0.0.1 on the demo's warehouse (`lce demo`, reduced),
driven in headless Chromium; expected values come from DuckDB on the file.
"""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.browser import CHROMIUM, chromium, serve

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent"),
]
BEFORE, AFTER = "colour-sup", "shape-sup"  # the demo's models: one colour label, four categories
UNIT = 12


def sql(db: Path, text: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(text, params).fetchall()


def categories(db: Path, model: str) -> set[str]:
    rows = sql(db, "select distinct category from fct_unit_labels where model = ? and "
                   "category is not null", [model])  # fmt: skip
    return {c for (c,) in rows}


def unit_label(db: Path, model: str, unit: int) -> str:
    """The picker's text for a unit, written out here from the mart's row."""
    ((concept, category, iou),) = sql(
        db, "select concept, category, iou from fct_unit_labels where model = ? and unit = ?",
        [model, unit],
    )  # fmt: skip
    return f"{unit}: {concept} ({category}), IoU {iou:.3f}"


def wait(driver: Any, condition: Any, what: str, seconds: float = 90) -> Any:
    """Poll ``condition(driver)`` until it is truthy (a rerun's result reaches the page some
    time after the interaction); fail naming ``what`` and the page's last state."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def safe(d: Any) -> Any:
        try:
            return condition(d)
        except (StaleElementReferenceException, WebDriverException):
            return None

    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.3).until(safe)
    except Exception as exc:
        raise AssertionError(f"{what}; the page reads:\n{body(driver)[:3000]}") from exc


def body(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)


def combo(driver: Any, label: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'.react-aria-ComboBox input[aria-label="{label}"]')


def choose(driver: Any, label: str, option: str) -> None:
    """Type ``option`` into the selectbox ``label`` (its list draws only the options in view)
    and click it in the filtered list."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = combo(driver, label)
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(option)
    items = wait(
        driver,
        lambda d: [o for o in d.find_elements(By.CSS_SELECTOR, '[role="option"]')
                   if o.text.strip() == option],
        f"no option {option!r} in {label!r}",
    )  # fmt: skip
    items[0].click()
    wait(driver, lambda d: combo(d, label).get_attribute("value") == option, f"{label} != {option}")


def chips(driver: Any, label: str) -> set[str]:
    """The chips the browser shows in the multiselect ``label``."""
    from selenium.webdriver.common.by import By

    for box in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMultiSelect"]'):
        if box.find_elements(By.CSS_SELECTOR, f'input[aria-label="{label}"]'):
            tags = box.find_elements(By.CSS_SELECTOR, ".react-aria-ComboBox [data-tag] [title]")
            return {str(t.get_attribute("title")) for t in tags}
    raise AssertionError(f"no multiselect {label!r}")


def type_into(driver: Any, label: str, text: str) -> None:
    """Type ``text`` into the text or number input ``label`` and confirm with Enter."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.CSS_SELECTOR, f'input[aria-label="{label}"]')
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(text, Keys.ENTER)


def page_input(driver: Any) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, '[data-testid="stNumberInput"] input')


def check_units_switch(url: str, db: Path, tmp_path: Path) -> None:
    """Units: pick unit 12 of one model, switch the model; the picker reads the new model's
    label, the chips are the new model's categories, and a search then counts the new model's
    units (the browser sent no stale categories back). The address bar names the selection."""
    driver = chromium(tmp_path)
    try:
        driver.get(f"{url}/units")
        wait(driver, lambda d: combo(d, "Unit"), "the Units page drew no unit picker")
        choose(driver, "Unit", unit_label(db, BEFORE, UNIT))
        assert chips(driver, "Concept categories") == categories(db, BEFORE)
        choose(driver, "Model", AFTER)
        expected = unit_label(db, AFTER, UNIT)
        wait(driver, lambda d: combo(d, "Unit").get_attribute("value") == expected,
             f"the unit picker does not read {expected!r} after the switch")  # fmt: skip
        time.sleep(1)  # the chips are drawn by the same rerun; give the frontend a moment
        assert chips(driver, "Concept categories") == categories(db, AFTER)
        # the next interaction sends the browser's widget values back: none may be stale
        concept = sql(db, "select concept from fct_unit_labels where model = ? and unit = ?",
                      [AFTER, UNIT])[0][0]  # fmt: skip
        ((n,),) = sql(db, "select count(*) from fct_unit_labels where model = ? and "
                          "contains(lower(concept), lower(?))", [AFTER, concept])  # fmt: skip
        type_into(driver, "Concept contains", concept)
        wait(driver, lambda d: f"{n} of 64 units shown" in body(d),
             f"the search for {concept!r} does not show {AFTER}'s {n} units")  # fmt: skip
        # the address bar follows the selection: a unit's link can be copied and shared
        wait(driver, lambda d: urllib.parse.parse_qs(urllib.parse.urlsplit(d.current_url).query)
             == {"model": [AFTER], "layer": ["layer3"], "unit": [str(UNIT)]},
             f"the address bar does not name {AFTER} / layer3 / {UNIT}")  # fmt: skip
        shared = driver.current_url
    finally:
        driver.quit()
    driver = chromium(tmp_path)  # a colleague opens the shared link
    try:
        driver.get(shared)
        wait(driver, lambda d: combo(d, "Unit").get_attribute("value") == expected,
             f"the shared link {shared} does not open {expected!r}")  # fmt: skip
        assert combo(driver, "Model").get_attribute("value") == AFTER
    finally:
        driver.quit()


def check_gallery_switch(url: str, db: Path, tmp_path: Path) -> None:
    """Gallery: page 2 of one model, then a switch: page 1 and the new model's chips, and the
    next interaction shows the new model's units (no stale page or categories sent back)."""
    driver = chromium(tmp_path)
    try:
        driver.get(f"{url}/gallery")
        wait(driver, lambda d: page_input(d), "the Gallery drew no page number")
        type_into(driver, "Page (of 3)", "2")
        wait(driver, lambda d: "Units 25 to 48 of 64" in body(d), "page 2 is not shown")
        assert chips(driver, "Concept categories") == categories(db, BEFORE)
        choose(driver, "Model", AFTER)
        wait(driver, lambda d: page_input(d).get_attribute("value") == "1",
             "the page number is not 1 after the switch")  # fmt: skip
        wait(driver, lambda d: chips(d, "Concept categories") == categories(db, AFTER),
             f"the chips are not {AFTER}'s categories")  # fmt: skip
        type_into(driver, "Concept contains", "")  # one more rerun with the browser's values
        time.sleep(2)
        assert "Units 1 to 24 of 64" in body(driver)
        assert "No unit of this layer passes the filters" not in body(driver)
    finally:
        driver.quit()


def check_y_axis_follows_x(url: str, page: str, tmp_path: Path) -> None:
    """Embedding and the Tasks page's performance map: choosing for x the component y shows
    moves y to another one, in the browser too (y never repeats x)."""
    driver = chromium(tmp_path)
    try:
        driver.get(f"{url}/{page}")
        wait(driver, lambda d: combo(d, "y axis"), f"{page} drew no y axis picker")
        y = combo(driver, "y axis").get_attribute("value")
        choose(driver, "x axis", y)
        wait(driver, lambda d: combo(d, "y axis").get_attribute("value") not in ("", y),
             f"{page}: the y axis picker still reads {y!r}, which is now x")  # fmt: skip
    finally:
        driver.quit()


def test_a_model_switch_leaves_no_stale_widget_in_chromium(
    demo: tuple[Path, str], tmp_path: Path
) -> None:
    db = demo[0] / "lce.duckdb"
    server = serve(db, tmp_path)
    url = next(server)
    try:
        check_units_switch(url, db, tmp_path)
        check_gallery_switch(url, db, tmp_path)
        check_y_axis_follows_x(url, "embedding", tmp_path)
        check_y_axis_follows_x(url, "tasks", tmp_path)
    finally:
        server.close()
