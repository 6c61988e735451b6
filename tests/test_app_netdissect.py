"""NetDissect's views in the explorer, on the demo-like study (real extraction, two small CNNs,
two layers each): the layer's concept histogram, interpretable units per category across
layers, a unit's runner-up labels, and the Gallery's darkened look.

Expected values come from the lake's tallies in numpy (labels re-ranked by IoU recomputed from
the integer counts), never from the warehouse's SQL or the app's own functions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.app_driver import assert_clean, chart_with_title, table
from tests.brute import lake_layer
from warehouse.lake import read_table

MIN_IOU = 0.04  # the build's default var min_iou: interpretable is IoU > 0.04 (the paper's rule)


def ranked_concepts(lake: Path, model: str, layer: str) -> dict[int, list[tuple[float, int]]]:
    """Every unit of the layer -> its (iou, concept id) best first, ties to the lowest id, with
    IoU = intersection / (activation_in_category + label_pixels - intersection) in numpy."""
    tally = lake_layer(lake, "unit_concept_tally", model, layer)
    units = lake_layer(lake, "unit_thresholds", model, layer)["unit"]
    iou = tally["intersection"] / (
        tally["activation_in_category"] + tally["label_pixels"] - tally["intersection"]
    )
    ranked: dict[int, list[tuple[float, int]]] = {int(u): [] for u in units}
    for unit, concept, value in zip(tally["unit"], tally["concept_id"], iou, strict=True):
        ranked[int(unit)].append((float(value), int(concept)))
    for pairs in ranked.values():
        pairs.sort(key=lambda p: (-p[0], p[1]))
    return ranked


def vocabulary(lake: Path) -> dict[int, tuple[str, str]]:
    rows = read_table(lake, "concepts").to_pydict()
    return {
        int(i): (c, k)
        for i, c, k in zip(rows["concept_id"], rows["concept"], rows["category"], strict=True)
    }


def histogram(lake: Path, model: str, layer: str) -> Counter[tuple[str, str]]:
    """(concept, category) -> interpretable units whose best concept it is."""
    names = vocabulary(lake)
    return Counter(
        names[pairs[0][1]]
        for pairs in ranked_concepts(lake, model, layer).values()
        if pairs and pairs[0][0] > MIN_IOU
    )


def bars(figure: dict[str, Any], horizontal: bool) -> dict[tuple[str, str], float]:
    """(category, bar label) -> value of every bar of a plotly figure's JSON."""
    out = {}
    for trace in figure["data"]:
        labels, values = (trace["y"], trace["x"]) if horizontal else (trace["x"], trace["y"])
        for label, value in zip(labels, values, strict=True):
            out[(trace["name"], label)] = value
    return out


def test_units_page_shows_the_layer_histogram_and_every_layer_of_the_model(
    open_page: Callable[..., AppTest], maps_home: Path
) -> None:
    lake = maps_home / "lake"
    at = open_page(maps_home / "lce.duckdb", "units")
    for model, layer in (("cnnA", "block1"), ("cnnB", "block2")):
        if at.selectbox(key="units_model").value != model:
            at.selectbox(key="units_model").set_value(model).run()
        at.selectbox(key="units_layer").set_value(layer).run()
        assert_clean(at)
        expected = histogram(lake, model, layer)
        assert expected, "the study has interpretable units to count"
        fig = chart_with_title(at, f"Interpretable units per concept: {model} / {layer}")
        shown = bars(fig, horizontal=True)
        assert {(c, label): n for (c, label), n in shown.items()} == {
            (category, concept): n for (concept, category), n in expected.items()
        }
        order = [v for label in reversed(fig["layout"]["yaxis"]["categoryarray"])
                 for (_, lab), v in shown.items() if lab == label]  # fmt: skip
        assert order == sorted(order, reverse=True), "most units first, top to bottom"

        across = bars(chart_with_title(at, f"every layer of {model}"), horizontal=False)
        want: Counter[tuple[str, str]] = Counter()
        for each in ("block1", "block2"):
            for (_, category), n in histogram(lake, model, each).items():
                want[(category, each)] += n
        assert {k: v for k, v in across.items() if v} == dict(want)
        layers_shown = {label for _, label in across}
        assert layers_shown == {"block1", "block2"}, "every dissected layer side by side"


def test_a_unit_lists_its_runner_up_labels_from_the_tallies(
    open_page: Callable[..., AppTest], maps_home: Path
) -> None:
    lake = maps_home / "lake"
    names = vocabulary(lake)
    at = open_page(maps_home / "lce.duckdb", "units")
    for model, layer in (("cnnA", "block1"), ("cnnB", "block2")):
        if at.selectbox(key="units_model").value != model:
            at.selectbox(key="units_model").set_value(model).run()
        at.selectbox(key="units_layer").set_value(layer).run()
        ranked = ranked_concepts(lake, model, layer)
        for unit in at.selectbox(key="units_unit").options[:2]:
            number = int(str(unit).split(":")[0])
            at.selectbox(key="units_unit").set_value(number).run()
            assert_clean(at)
            shown = table(at, "intersection")
            best = ranked[number][:5]
            assert shown["rank"].to_list() == list(range(1, len(best) + 1))
            assert shown["concept"].to_list() == [names[c][0] for _, c in best]
            assert shown["category"].to_list() == [names[c][1] for _, c in best]
            np.testing.assert_allclose(shown["iou"].to_numpy(), [v for v, _ in best], rtol=1e-12)


def test_darkening_keeps_the_mask_and_dims_everything_else_a_hand_example(tmp_path: Path) -> None:
    """A 6 x 8 label mask on a 12 x 16 image (2 x 2 image pixels a label pixel): inside the mask
    the image's own pixels, outside a fifth of them, rounded; checked pixel by pixel."""
    from PIL import Image

    from lce.explore.images import darkened_image

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    mask = np.zeros((6, 8), bool)
    mask[1:4, 2:7] = True
    mask[5, 0] = True  # a lone pixel at the edge
    out = darkened_image(tmp_path / "x.png", mask)
    inside = np.kron(mask, np.ones((2, 2), bool))
    assert out.shape == rgb.shape and inside.sum() == 4 * 16
    np.testing.assert_array_equal(out[inside], rgb[inside])
    expected = np.floor(rgb[~inside].astype(float) / 5 + 0.5)  # 0.2 x, halves rounded up
    halves = (rgb[~inside].astype(int) * 2) % 10 == 5  # x.5 exactly: numpy rounds to even
    assert (np.abs(out[~inside] - expected) <= halves).all()
    assert (out[~inside] <= rgb[~inside]).all() and out[~inside].max() <= 51
    # no mask: the image as it is
    np.testing.assert_array_equal(darkened_image(tmp_path / "x.png", None), rgb)


def test_gallery_darkens_outside_the_stored_mask(
    open_page: Callable[..., AppTest], maps_home: Path
) -> None:
    """The Gallery's 'darken' look: every top image shown, one row of five at most per unit;
    each tile's pixels against the stored mask (SQL) and the probe's own image (PIL)."""
    from PIL import Image

    from lce.explore import unit_tiles
    from lce.explore.images import unpack_mask
    from tests.app_driver import sql

    db = maps_home / "lce.duckdb"
    at = open_page(db, "gallery")
    outlined = [len(el.proto.imgs) for el in at.image]
    at.radio(key="gallery_look").set_value("darken").run()
    assert_clean(at)
    assert [len(el.proto.imgs) for el in at.image] == outlined and max(outlined) <= 5

    probe = maps_home / "probe" / "broden"
    masks = {
        (u, r): unpack_mask(m, sh, sw)
        for u, r, m, sh, sw in sql(
            db,
            "select unit, rank, mask, sh, sw from fct_unit_top_maps "
            "where model = 'cnnA' and layer = 'block1'",
        )  # fmt: skip
    }
    tiles = unit_tiles(db, str(probe), "cnnA", "block1", tuple({u for u, _ in masks}), "darken")
    assert len(tiles) == len(masks)
    for tile in tiles:
        raw = np.asarray(Image.open(probe / "images" / tile["image"]).convert("RGB"))
        inside = np.kron(masks[(tile["unit"], tile["rank"])], np.ones((2, 2), bool))
        assert raw.shape == tile["pixels"].shape, "the probe's 24 px images need no resizing"
        np.testing.assert_array_equal(tile["pixels"][inside], raw[inside])
        dimmed = np.rint(raw[~inside] * 0.2)
        np.testing.assert_array_equal(tile["pixels"][~inside], dimmed)


def test_units_on_the_demo_draws_the_layer_histogram_in_chromium(
    demo: tuple[Path, str], tmp_path: Path
) -> None:
    """The histogram as a user sees it after `make demo`: plotly draws one bar per concept of
    the primary layer of the model with the most concept categories (opened by a unit link),
    named on the axis (SQL on the file counts them). With LCE_DOCS_SCREENSHOTS=1 the chart
    becomes docs/histogram.png (docs/guide.md shows it)."""
    import os
    import shutil
    import time

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.app_driver import sql
    from tests.browser import CHROMIUM, chromium, serve
    from tests.conftest import REPO

    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent")
    db = demo[0] / "lce.duckdb"
    model, layer, unit = sql(db, """
        select l.model, l.layer, min(t.unit) from fct_unit_labels l
        join dim_models m on m.model = l.model and m.primary_layer = l.layer
        join fct_unit_top_images t on t.model = l.model and t.layer = l.layer
        where l.is_interpretable group by l.model, l.layer
        order by count(distinct l.category) desc, count(distinct l.concept) desc, l.model limit 1
        """)[0]  # fmt: skip
    concepts = {c for (c,) in sql(db, "select distinct concept from fct_unit_labels where "
                                      "model = ? and layer = ? and is_interpretable and concept "
                                      "is not null", [model, layer])}  # fmt: skip
    server = serve(db, tmp_path)
    url = next(server)
    driver = chromium(tmp_path)
    try:
        driver.get(f"{url}/units?model={model}&layer={layer}&unit={unit}")
        title = f"Interpretable units per concept: {model} / {layer}"

        def histogram(d: Any) -> Any:
            for chart in d.find_elements(By.CSS_SELECTOR, '[data-testid="stPlotlyChart"]'):
                if any(t.text == title for t in chart.find_elements(By.CSS_SELECTOR, ".gtitle")):
                    return chart
            return None

        chart = WebDriverWait(driver, 90).until(histogram)
        WebDriverWait(driver, 30).until(
            lambda d: len(chart.find_elements(By.CSS_SELECTOR, ".barlayer .point")) == len(concepts)
        )
        ticks = {t.text for t in chart.find_elements(By.CSS_SELECTOR, ".ytick text")}
        assert {t.split(" (")[0] for t in ticks} == concepts
        driver.execute_script("arguments[0].scrollIntoView();", chart)
        heading = driver.find_element(By.TAG_NAME, "h1")  # the pointer off the chart: no toolbar
        ActionChains(driver).move_to_element(heading).perform()
        time.sleep(1)  # let the bars finish their transition before the picture
        shot = tmp_path / "histogram.png"
        assert chart.screenshot(str(shot))
        if os.environ.get("LCE_DOCS_SCREENSHOTS"):  # refresh the guide's picture
            shutil.copy(shot, REPO / "docs" / "histogram.png")
    finally:
        driver.quit()
        server.close()


def loo_agreement(lake: Path, model: str, layer: str) -> dict[int, float]:
    """Unit -> share of its leave-one-fold-out labels equal to its label, in plain Python: each
    fold's complement summed from the *other* folds' rows of unit_concept_tally_folds (not the
    whole minus the fold, as the build does), IoU and best concept as in ranked_concepts (ties
    to the lowest id, none when every IoU is 0)."""
    rows = lake_layer(lake, "unit_concept_tally_folds", model, layer)
    k = int(rows["fold"].max()) + 1
    counts: dict[tuple[int, int], np.ndarray] = {}
    for unit, concept, fold, i, a, g in zip(
        rows["unit"], rows["concept_id"], rows["fold"], rows["intersection"],
        rows["activation_in_category"], rows["label_pixels"], strict=True,
    ):  # fmt: skip
        counts.setdefault((int(unit), int(concept)), np.zeros((k, 3), dtype=np.int64))[
            int(fold)
        ] = (i, a, g)

    def best(fold: int | None) -> dict[int, int]:
        scores: dict[int, list[tuple[float, int]]] = {}
        for (unit, concept), per_fold in counts.items():
            i, a, g = (per_fold.sum(axis=0) if fold is None else
                       np.delete(per_fold, fold, axis=0).sum(axis=0))  # fmt: skip
            iou = i / (a + g - i) if a + g - i > 0 else 0.0
            scores.setdefault(unit, []).append((-iou, concept))
        return {u: min(s)[1] if min(s)[0] < 0 else -1 for u, s in scores.items()}

    full = best(None)
    loo = [best(f) for f in range(k)]
    return {u: sum(labels.get(u, -1) == c for labels in loo) / k for u, c in full.items()}


def test_units_table_shows_each_units_label_stability_from_the_folds(
    open_page: Callable[..., AppTest], maps_home: Path
) -> None:
    lake = maps_home / "lake"
    at = open_page(maps_home / "lce.duckdb", "units")
    at.selectbox(key="units_model").set_value("cnnB").run()
    at.selectbox(key="units_layer").set_value("block2").run()
    assert_clean(at)
    frame = table(at, "label_kept")
    want = loo_agreement(lake, "cnnB", "block2")
    shown = dict(zip(frame["unit"].tolist(), frame["label_kept"].tolist(), strict=True))
    tallied = {u: v for u, v in shown.items() if u in want}
    assert set(tallied) == set(want) and len(want) >= 3, "every tallied unit is listed"
    assert tallied == pytest.approx(want)
    assert min(want.values()) < 1, "the small study has units whose label moves with a fold"
    low, iou, high = (frame[c].to_numpy(dtype=float) for c in ("iou_low", "iou", "iou_high"))
    assert (low <= iou + 1e-12).all() and (iou <= high + 1e-12).all()
    assert "Label stability" in " ".join(c.value for c in at.caption)


def test_units_table_leaves_out_label_stability_without_fold_tallies() -> None:
    """A layer whose run kept no folds (published labels, --folds 1) has null stability columns:
    the table shows none rather than a column of blanks."""
    import polars as pl

    from lce.explore.units import units_for_display

    frame = pl.DataFrame(
        {"unit": [0, 1], "concept": ["sky", None], "iou": [0.2, 0.0],
         "label_kept": [None, None], "iou_low": [None, None], "iou_high": [None, None]},
        schema_overrides={c: pl.Float64 for c in ("label_kept", "iou_low", "iou_high")},
    )  # fmt: skip
    assert units_for_display(frame).columns == ["unit", "concept", "iou"]
    kept = units_for_display(frame.with_columns(pl.Series("label_kept", [1.0, 0.8])))
    assert kept.columns == ["unit", "concept", "iou", "label_kept", "iou_low", "iou_high"]
