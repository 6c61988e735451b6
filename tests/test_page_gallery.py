"""The Gallery page: the units of the file in the order and filters it offers, the
outlines it draws against S > T recomputed from the model, and its links to Units.

Expected values come from DuckDB on the file, never from the app's own functions. The
warehouses are the session-scoped ones of tests/app_fixtures.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.app_driver import APP, assert_clean, shown, sql, texts


def gallery_order(db: Path, model: str, layer: str, where: str = "", params: list | None = None):
    return [
        u
        for (u,) in sql(
            db,
            "select unit from fct_unit_labels where model = ? and layer = ? "
            f"{where} order by concept is null, iou desc nulls last, unit",
            [model, layer, *(params or [])],
        )
    ]


def tile_units(at: AppTest) -> list[int]:
    return [
        int(shown(m.value).split(":")[0].removeprefix("**unit "))
        for m in at.markdown
        if m.value.startswith("**unit ")
    ]


def _boundary(mask: np.ndarray) -> np.ndarray:
    """The mask's inner boundary, by scipy (4-connected erosion, outside the image is empty)."""
    from scipy import ndimage

    cross = ndimage.generate_binary_structure(2, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=cross, border_value=0)


def test_gallery_shows_the_units_of_the_file_sorted_filtered_and_paged(
    open_page: Callable[..., AppTest], maps_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = maps_home / "lce.duckdb"
    at = open_page(db, "gallery")
    at.selectbox(key="gallery_model").set_value("cnnB").run()
    at.selectbox(key="gallery_layer").set_value("block2").run()
    assert_clean(at)
    assert tile_units(at) == gallery_order(db, "cnnB", "block2")
    n_images = sql(
        db, "select count(*) from fct_unit_top_images where model = 'cnnB' and layer = 'block2'"
    )[0][0]
    assert sum(len(i.value) if isinstance(i.value, list) else 1 for i in at.image) >= 1
    shown_images = sum(len(el.proto.imgs) for el in at.image)
    assert shown_images == n_images, "every top image, outlined"
    assert not at.info, "outlines are drawn, nothing to explain"
    links = [el.proto.query_string for el in at.get("page_link")]
    assert links == [f"model=cnnB&layer=block2&unit={u}" for u in tile_units(at)]

    at.slider(key="gallery_min_iou").set_value(0.05).run()
    assert tile_units(at) == gallery_order(db, "cnnB", "block2", "and coalesce(iou, 0) >= 0.05")
    categories = at.multiselect(key="gallery_categories").options
    at.multiselect(key="gallery_categories").set_value(categories[:1]).run()
    assert tile_units(at) == gallery_order(
        db, "cnnB", "block2", "and coalesce(iou, 0) >= 0.05 and category = ?", [categories[0]]
    )
    at.slider(key="gallery_min_iou").set_value(0.0).run()
    at.multiselect(key="gallery_categories").set_value(categories).run()
    (concept,) = sql(
        db,
        "select concept from fct_unit_labels where model = 'cnnB' and layer = 'block2' "
        "and concept is not null order by iou desc limit 1",
    )[0]
    at.text_input(key="gallery_concept").input(concept[:3]).run()
    assert tile_units(at) == gallery_order(
        db, "cnnB", "block2", "and contains(lower(concept), lower(?))", [concept[:3]]
    )

    # Paging (2,048 units of a ResNet layer): pages of GALLERY_PAGE_SIZE tiles, in order.
    monkeypatch.setattr("lce.explore.gallery.GALLERY_PAGE_SIZE", 3)  # the Gallery's module
    at = open_page(db, "gallery")
    every = gallery_order(db, *sql(db, "select model, layer from fct_unit_labels "
                                       "order by model, layer limit 1")[0])  # fmt: skip
    assert tile_units(at) == every[:3]
    at.number_input(key="gallery_page").set_value(2).run()
    assert tile_units(at) == every[3:6]


@pytest.mark.parametrize("model", ["cnnA", "cnnB"])
def test_the_outline_drawn_is_s_above_t_computed_from_the_model(
    maps_home: Path, tmp_path: Path, model: str
) -> None:
    """Pixel for pixel at label resolution: the gallery's outline against S > T from the
    model run here, one image at a time, thresholded with numpy's quantile."""
    import torch
    import torch.nn.functional as F

    from lce import explore
    from tests.brute import MEAN, STD, brute_force
    from tests.probe_factory import make_probe, small_cnn

    probe = make_probe(tmp_path / "broden", n_images=12)  # the fixture's probe, regenerated

    def factory() -> torch.nn.Module:
        net = small_cnn()
        if model == "cnnB":
            net.load_state_dict(torch.load(maps_home / "seeded.pt", weights_only=True))
        return net

    db = maps_home / "lce.duckdb"
    layer = "block1"
    thresholds = np.asarray(brute_force(probe, layer, 0.08, "raw", factory)["thresholds"])
    net = factory().eval()
    captured: dict[str, torch.Tensor] = {}
    dict(net.named_modules())[layer].register_forward_hook(
        lambda _m, _i, out: captured.__setitem__("a", out)
    )
    units = tuple(u for (u,) in sql(db, "select distinct unit from fct_unit_top_images "
                                        "where model = ? and layer = ?", [model, layer]))  # fmt: skip
    tiles = explore.unit_tiles(db, str(maps_home / "probe" / "broden"), model, layer, units)
    assert len(tiles) == 3 * len(units) and all(t["outlined"] for t in tiles)
    by_name = {img.name: img for img in probe.images}
    drawn_somewhere = 0
    for tile in tiles:
        img = by_name[tile["image"]]
        x = (img.rgb.transpose(2, 0, 1) / 255.0 - MEAN) / STD
        with torch.no_grad():
            net(torch.tensor(x, dtype=torch.float32)[None])
        s = F.interpolate(captured["a"].float(), size=(12, 12), mode="bilinear",
                          align_corners=False)[0, tile["unit"]].numpy()  # fmt: skip
        expected = _boundary(s > thresholds[tile["unit"]])
        pixels = tile["pixels"]
        scale = pixels.shape[0] // 12
        assert scale == 2 and pixels.shape == (24, 24, 3)
        magenta = (pixels == np.array(explore.OUTLINE_RGB, dtype=np.uint8)).all(axis=-1)
        assert not (img.rgb == np.array(explore.OUTLINE_RGB)).all(axis=-1).any()
        np.testing.assert_array_equal(magenta[::scale, ::scale], expected)
        # each label pixel is a whole scale x scale block: no stray outline pixels between
        np.testing.assert_array_equal(magenta, np.kron(expected, np.ones((2, 2), bool)))
        drawn_somewhere += int(expected.sum())
    assert drawn_somewhere > 0


def test_gallery_on_a_lake_without_maps_shows_images_and_says_why(
    open_page: Callable[..., AppTest], maps_home: Path, tmp_path: Path
) -> None:
    db = tmp_path / "lce.duckdb"
    shutil.copy(maps_home / "lce.duckdb", db)
    with duckdb.connect(str(db)) as conn:  # as a lake written before unit_top_maps builds
        conn.execute("delete from fct_unit_top_maps")
        conn.execute("update fct_unit_top_images set has_map = false")
    at = open_page(db, "gallery")
    assert "No outlines" in texts(at.info) and "unit_top_maps" in texts(at.info)
    assert at.image, "the top images are still shown"
    units = open_page(db, "units")
    assert "not outlined" in texts(units.caption)


def test_gallery_without_top_images_says_so(
    open_page: Callable[..., AppTest], app_db: Path, tmp_path: Path
) -> None:
    db = tmp_path / "lce.duckdb"
    shutil.copy(app_db, db)
    with duckdb.connect(str(db)) as conn:
        conn.execute("delete from fct_unit_top_images")
    at = open_page(db, "gallery")
    assert "no top images" in texts(at.info)
    assert not at.image and tile_units(at)


def test_a_tile_link_opens_the_unit_on_the_units_page(
    monkeypatch: pytest.MonkeyPatch, maps_home: Path
) -> None:
    db = maps_home / "lce.duckdb"
    monkeypatch.setenv("LCE_DB", str(db))
    monkeypatch.delenv("LCE_PROBE_DIR", raising=False)
    (unit,) = sql(
        db,
        "select max(unit) from fct_unit_top_images where model = 'cnnB' and layer = 'block2'",
    )[0]
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params.update({"model": "cnnB", "layer": "block2", "unit": str(unit)})
    at.run()
    at.switch_page("app_pages/units.py").run()
    assert_clean(at)
    assert at.selectbox(key="units_model").value == "cnnB"
    assert at.selectbox(key="units_layer").value == "block2"
    assert at.selectbox(key="units_unit").value == unit
    assert at.selectbox(key="units_probe").value == str(maps_home / "probe" / "broden")
    (images,) = at.image
    assert len(images.proto.imgs) == 3
    assert "Outlined in magenta" in texts(at.caption)
