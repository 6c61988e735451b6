"""Explorer, second edition (issue 13): the defects found in use, each with a test that failed
before its fix, and the gallery, concept page and exports.

Expected values come from DuckDB on the file or from the paper's CSV, never from the app's own
functions. The warehouses are the session-scoped ones of tests/app_fixtures.py.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.app_driver import APP, assert_clean, chart_with_title, charts, sql, table, texts
from tests.app_fixtures import TOP_IMAGE_LAYER, TOP_IMAGE_MODEL
from tests.conftest import REFERENCE, REPO, lce

needs_reference = pytest.mark.skipif(
    not (REFERENCE / "models_dissect_profiles_raw.csv").is_file(),
    reason="the paper's published data is not here",
)


# ---------------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------------


def test_units_category_filter_does_not_carry_over_to_the_next_model(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    """Before the fix, one category chosen on a model kept hiding the other categories' units
    of the next model (the demo's colour-sup -> shape-sup hid all 22 object units)."""
    at = open_page(app_db, "units")
    models = at.selectbox(key="units_model").options
    first = at.multiselect(key="units_categories").options
    at.multiselect(key="units_categories").set_value(first[:1]).run()
    assert_clean(at)
    other = models[-1]
    at.selectbox(key="units_model").set_value(other).run()
    assert_clean(at)
    layer = at.selectbox(key="units_layer").value
    box = at.multiselect(key="units_categories")
    assert list(box.value) == list(box.options), "every category of the new model is chosen"
    (n,) = sql(
        app_db, "select count(*) from fct_unit_labels where model = ? and layer = ?", [other, layer]
    )[0]
    assert len(table(at, "is_interpretable")) == n


@needs_reference
def test_no_none_is_shown_for_background_units_or_excluded_models(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    (model,) = sql(
        app_db,
        "select model from fct_unit_labels where concept is null group by model "
        "order by count(*) desc limit 1",
    )[0]
    at = open_page(app_db, "units")
    at.selectbox(key="units_model").set_value(model).run()
    frame = table(at, "is_interpretable")
    assert frame["concept"].notna().all() and frame["category"].notna().all()
    (first_with_concept,) = sql(
        app_db,
        "select unit from fct_unit_labels where model = ? and concept is not null "
        "order by iou desc nulls last, unit limit 1",
        [model],
    )[0]
    assert frame["unit"].iloc[0] == first_with_concept, "background units do not come first"
    background = frame[frame["concept"].str.contains("background")]
    (n_background,) = sql(
        app_db, "select count(*) from fct_unit_labels where model = ? and concept is null", [model]
    )[0]
    assert len(background) == n_background

    overview = table(open_page(app_db, "overview"), "interpretable_units")
    assert overview["category"].notna().all()
    excluded = {m for (m,) in sql(app_db, "select model from dim_models where not in_embedding")}
    assert excluded and set(overview[overview["category"] == "not embedded"]["model"]) == excluded


def test_probe_folder_starts_with_the_folder_the_run_recorded(
    open_page: Callable[..., AppTest], toy_home: Path, tmp_path: Path
) -> None:
    db = tmp_path / "lce.duckdb"
    shutil.copy(toy_home / "lce.duckdb", db)
    probe = toy_home / "probe"
    with duckdb.connect(str(db)) as conn:
        # as `lce build` publishes runs.probe = 'broden:<path>' (the toy lake records 'broden:toy')
        conn.execute(
            "update fct_unit_top_images set probe_dir = ? where model = ? and layer = ?",
            [str(probe), TOP_IMAGE_MODEL, TOP_IMAGE_LAYER],
        )
    at = open_page(db, "units")  # no LCE_PROBE_DIR
    at.selectbox(key="units_model").set_value(TOP_IMAGE_MODEL).run()
    at.selectbox(key="units_layer").set_value(TOP_IMAGE_LAYER).run()
    assert_clean(at)
    assert at.text_input(key="units_probe").value == str(probe)
    assert at.image, "the top images are shown without typing the folder"


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------


@needs_reference
def test_tasks_show_names_natural_order_full_colour_scale_and_readable_labels(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "tasks")
    options = at.selectbox(key="task_family").options
    assert "many_shot_linear" not in options and "Many-shot linear classification" in options
    assert not any("_" in o for o in options)
    at.selectbox(key="task_family").set_value("few_shot").run()
    assert_clean(at)
    results = at.selectbox(key="task_result").options
    dataset = results[0].split(" · ")[0]
    shots = [int(re.match(r"(\d+)-shot", r.split(" · ")[1]).group(1))  # type: ignore[union-attr]
             for r in results if r.startswith(dataset + " · ")]  # fmt: skip
    assert shots == sorted(shots) == [5, 20, 50]

    fig = chart_with_title(at, "-NN map")
    heat = next(t for t in fig["data"] if t["type"] == "heatmap")
    result = at.selectbox(key="task_result").value
    ds, met = str(result).split(" · ")
    values = dict(
        sql(
            app_db,
            "select b.model, b.value from fct_task_benchmarks b join fct_lce l using (model) "
            "where l.component = 1 and task = 'few_shot' and dataset = ? and metric = ?",
            [ds, met],
        )
    )
    assert heat["zmin"] <= min(values.values()) and heat["zmax"] >= max(values.values())
    assert heat["zmin"] == pytest.approx(min(values.values()))
    assert heat["zmax"] == pytest.approx(max(values.values()))
    colour = {
        name: c
        for t in fig["data"]
        if t.get("mode") == "markers+text"
        for name, c in zip(t["text"], t["textfont"]["color"], strict=True)
    }
    # Viridis runs from dark purple (#440154) to light yellow (#fde725): the worst model's label
    # sits on the dark end, the best one's on the light end (higher is better here).
    worst = min(values, key=lambda m: values[m])
    best = max(values, key=lambda m: values[m])
    assert colour[worst].upper() == "#FFFFFF"
    assert colour[best].upper() == "#111111"


# ---------------------------------------------------------------------------------------------
# Embedding and Compare
# ---------------------------------------------------------------------------------------------


def test_embedding_never_plots_a_component_against_itself_and_names_models_in_the_legend(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "embedding")
    x_box, y_box = at.selectbox(key="emb_x"), at.selectbox(key="emb_y")
    assert x_box.options[0] not in y_box.options
    at.selectbox(key="emb_x").set_value(2).run()
    assert_clean(at)
    assert at.selectbox(key="emb_x").value == 2
    assert at.selectbox(key="emb_y").value != 2
    assert at.selectbox(key="emb_x").options[1] not in at.selectbox(key="emb_y").options

    members: dict[str, set[str]] = {}
    for model, label in sql(app_db, "select model, category_label from dim_model_categories"):
        members.setdefault(label, set()).add(model)
    fig = chart_with_title(at, "Learned Concepts Embedding")
    for trace in fig["data"]:
        if trace.get("mode") == "markers+text":
            for model in members[trace["legendgroup"]]:
                assert model in trace["name"]
    if "The first three components" in str([f["layout"].get("title") for f in charts(at)]):
        three = chart_with_title(at, "The first three components")
        labelled = {m for t in three["data"] if "text" in t.get("mode", "") for m in t["text"]}
        assert labelled >= set().union(*members.values())
        eye = three["layout"]["scene"]["camera"]["eye"]
        assert (eye["x"] ** 2 + eye["y"] ** 2 + eye["z"] ** 2) ** 0.5 > 2.2  # default is 2.17


@needs_reference
def test_compare_defines_weight_and_disambiguates_concepts_in_tables(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    pair = sql(
        app_db,
        "select a.model, b.model from fct_concept_profiles a join fct_concept_profiles b "
        "on a.concept = b.concept and a.category <> b.category and a.model < b.model "
        "join dim_models da on da.model = a.model join dim_models db on db.model = b.model "
        "where da.has_profile and db.has_profile limit 1",
    )
    a, b = pair[0]
    (name,) = sql(
        app_db,
        "select concept from fct_concept_profiles where model in (?, ?) group by concept "
        "having count(distinct category) > 1 limit 1",
        [a, b],
    )[0]
    at = open_page(app_db, "compare")
    at.selectbox(key="cmp_a").set_value(a).run()
    at.selectbox(key="cmp_b").set_value(b).run()
    assert_clean(at)
    assert "Weight:" in texts(at.caption)
    shown = {c for frame in at.dataframe if "concept" in frame.value for c in frame.value.concept}
    assert name not in shown
    categories = {
        c
        for (c,) in sql(
            app_db, "select distinct category from fct_concept_profiles where concept = ?", [name]
        )  # fmt: skip
    }
    assert {f"{name} ({c})" for c in categories} <= shown


# ---------------------------------------------------------------------------------------------
# Every page, the command, the README
# ---------------------------------------------------------------------------------------------

PAGE_WORDS = {
    "overview": "interpretable units",
    "embedding": "k-means",
    "components": "loading",
    "tasks": "transfers",
    "compare": "side by side",
    "units": "IoU",
    "gallery": "S > T",
    "concept": "learned a concept",
    "sql": "SQL",
}


@pytest.mark.parametrize("page", sorted(PAGE_WORDS))
def test_every_page_opens_with_a_sentence_saying_what_it_is_for(
    open_page: Callable[..., AppTest], app_db: Path, page: str
) -> None:
    at = open_page(app_db, page)
    assert at.markdown, "a sentence under the title"
    assert PAGE_WORDS[page] in at.markdown[0].value
    if page in ("components", "units", "compare", "gallery", "concept"):
        assert "-t top" in texts(at.caption) and "-r right" in texts(at.caption)


def test_lce_app_runs_without_file_watcher_or_deploy_button(
    monkeypatch: pytest.MonkeyPatch, app_db: Path
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(os, "execve", lambda path, command, env: calls.append(command))
    code, out = lce("app", "--db", app_db)
    assert code == 0, out
    (command,) = calls
    assert command[0] == sys.executable
    assert "--server.fileWatcherType=none" in command
    assert "--client.toolbarMode=minimal" in command


@needs_reference
def test_readme_counts_the_rows_without_iou_per_model_as_the_paper_has_them() -> None:
    with (REFERENCE / "models_dissect_profiles_raw.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = Counter(r["name"] for r in rows if r["iou"].strip().lower() in ("", "nan"))
    assert missing == {"Random(R)": 368, "SimCLRV2(R)": 29}
    readme = (REPO / "README.md").read_text() + (REPO / "docs" / "guide.md").read_text()
    assert "397 SimCLR-v2 rows have no IoU" not in readme
    assert "368 are the random model's and 29 SimCLR-v2's" in readme


# ---------------------------------------------------------------------------------------------
# Gallery, outlines, Units links (issue 13 parts 1-2)
# ---------------------------------------------------------------------------------------------


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
        int(m.value.split(":")[0].removeprefix("**unit "))
        for m in at.markdown
        if m.value.startswith("**unit ")
    ]


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


def _boundary(mask: np.ndarray) -> np.ndarray:
    """The mask's inner boundary, by scipy (4-connected erosion, outside the image is empty)."""
    from scipy import ndimage

    cross = ndimage.generate_binary_structure(2, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=cross, border_value=0)


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
    assert at.text_input(key="units_probe").value == str(maps_home / "probe" / "broden")
    (images,) = at.image
    assert len(images.proto.imgs) == 3
    assert "Outlined in magenta" in texts(at.caption)


# ---------------------------------------------------------------------------------------------
# Concept page (issue 13 part 3)
# ---------------------------------------------------------------------------------------------


def test_concept_page_lists_every_model_with_units_for_the_concept(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "concept")
    options = at.selectbox(key="concept_label").options
    (concept, category) = sql(
        app_db,
        "select concept, category from fct_unit_labels where is_interpretable and "
        "is_primary_layer group by all order by count(distinct model), concept desc limit 1",
    )[0]
    label = next(o for o in options if o == concept or o == f"{concept} ({category})")
    at.selectbox(key="concept_label").set_value(label).run()
    assert_clean(at)
    expected = {
        m: (n, best, n / total)
        for m, n, best, total in sql(
            app_db,
            "select l.model, count(*), max(l.iou), any_value(t.n) from fct_unit_labels l "
            "join (select model, count(*) as n from fct_unit_labels where is_primary_layer "
            "group by model) t using (model) where l.is_interpretable and l.is_primary_layer "
            "and l.concept = ? and l.category = ? group by l.model",
            [concept, category],
        )
    }
    frame = table(at, "best_unit")
    assert {r.model: (r.n_units, r.best_iou, r.unit_share) for r in frame.itertuples()} == {
        m: (n, pytest.approx(b), pytest.approx(s)) for m, (n, b, s) in expected.items()
    }
    fig = chart_with_title(at, "Share of each model's units")
    bars = dict(zip(fig["data"][0]["y"], fig["data"][0]["x"], strict=True))
    assert bars == {m: pytest.approx(100 * s) for m, (_, _, s) in expected.items()}
    assert at.metric[0].value.startswith(f"{len(expected)} of ")


def test_concept_page_shows_each_models_best_unit_with_outlines(
    open_page: Callable[..., AppTest], maps_home: Path
) -> None:
    db = maps_home / "lce.duckdb"
    at = open_page(db, "concept")
    label = at.selectbox(key="concept_label").value
    frame = table(at, "best_unit")
    rows = sql(
        db,
        "select model, unit from fct_unit_labels where is_interpretable and is_primary_layer "
        "and concept = ? qualify iou = max(iou) over (partition by model) order by model, unit",
        [str(label).split(" (")[0]],
    )
    best = {m: u for m, u in reversed(rows)}  # ties: the lowest unit
    assert {r.model: r.best_unit for r in frame.itertuples()} == best
    assert len(at.image) == len(best)
    links = sorted(el.proto.query_string for el in at.get("page_link"))
    layer = sql(db, "select primary_layer from dim_models limit 1")[0][0]
    assert links == sorted(f"model={m}&layer={layer}&unit={u}" for m, u in best.items())


# ---------------------------------------------------------------------------------------------
# Export (issue 13 part 4)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["CSV", "Parquet"])
def test_export_brings_the_whole_result_not_the_preview(
    app_db: Path, tmp_path: Path, fmt: str
) -> None:
    import polars as pl

    from lce import explore

    query = "select model, layer, unit, concept, iou from fct_unit_labels order by all"
    data, rows = explore.export_sql(app_db, query, fmt)
    path = tmp_path / f"out.{fmt.lower()}"
    path.write_bytes(data)
    frame = pl.read_csv(path) if fmt == "CSV" else pl.read_parquet(path)
    expected = sql(app_db, query)
    assert rows == frame.height == len(expected) > explore.MAX_ROWS
    assert [tuple(r) for r in frame.head(50).iter_rows()] == [
        tuple(None if v is None else v for v in r) for r in expected[:50]
    ]
    data, rows = explore.export_mart(app_db, "fct_unit_labels", fmt)
    assert rows == len(expected)
    with pytest.raises(ValueError):
        explore.export_mart(app_db, "stg_runs", fmt)


def test_export_keeps_the_guard_and_a_size_cap(
    app_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lce import explore

    with pytest.raises(explore.SqlRefused, match="refused"):
        explore.export_sql(app_db, "copy fct_lce to '/tmp/x.csv'", "CSV")
    with pytest.raises(explore.SqlRefused):
        explore.export_sql(app_db, "select * from read_csv('/etc/passwd')", "CSV")
    monkeypatch.setattr("lce.explore.sql.EXPORT_MAX_BYTES", 10_000)  # the SQL page's module
    with pytest.raises(explore.SqlRefused, match="larger than"):
        explore.export_sql(app_db, "select * from fct_unit_labels", "Parquet")


def test_sql_page_exports_the_full_result_and_any_mart(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "sql")
    at.text_area(key="sql_text").input("select * from fct_unit_labels").run()
    (n,) = sql(app_db, "select count(*) from fct_unit_labels")[0]
    at.radio(key="sql_export_fmt").set_value("Parquet").run()
    at.button(key="sql_export_run").click().run()
    assert_clean(at)
    labels = [el.proto.label for el in at.get("download_button")]
    assert f"Download {n} rows as Parquet" in " | ".join(labels)
    at.selectbox(key="sql_mart").set_value("fct_unit_top_images").run()
    at.button(key="mart_export_fct_unit_top_images_run").click().run()
    (m,) = sql(app_db, "select count(*) from fct_unit_top_images")[0]
    labels = [el.proto.label for el in at.get("download_button")]
    assert f"Download {m} rows as CSV" in " | ".join(labels)


def test_figures_download_as_svg_or_png(open_page: Callable[..., AppTest], app_db: Path) -> None:
    import json

    at = open_page(app_db, "overview")

    def formats() -> set[str]:
        return {
            json.loads(el.proto.config)["toImageButtonOptions"]["format"]
            for el in at.get("plotly_chart")
        }

    assert formats() == {"png"}
    at.sidebar.radio(key="lce_figure_format").set_value("svg").run()
    assert formats() == {"svg"}
    at.switch_page("app_pages/tasks.py").run()
    assert at.get("plotly_chart") and formats() == {"svg"}


def test_performance_map_axes_never_repeat_a_component(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "tasks")
    x_box = at.selectbox(key="task_map_x")
    assert x_box.value not in [at.selectbox(key="task_map_y").value]
    assert x_box.options[0] not in at.selectbox(key="task_map_y").options
    at.selectbox(key="task_map_x").set_value(2).run()
    assert_clean(at)
    assert at.selectbox(key="task_map_y").value != 2
    fig = chart_with_title(at, "-NN map")
    assert fig["layout"]["xaxis"]["title"]["text"].startswith("PC2")
    assert not fig["layout"]["yaxis"]["title"]["text"].startswith("PC2")
