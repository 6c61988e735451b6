"""The Streamlit explorer through AppTest, on warehouses built in the test.

Every page renders on a real warehouse (the paper's reference data when it is here, else a
generated lake), shows values that match a direct SQL query on the file, and changes when a
widget changes. The SQL page refuses file access, attachment, extensions and writes, and leaves
the file byte-for-byte unchanged. Expected values come from DuckDB (or numpy / scikit-learn),
never from the app's own functions. Sections follow the pages; the Gallery and the Concept page
have their own files (tests/test_page_gallery.py, tests/test_page_concept.py).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from lce import explore
from lce.explore.figures import STAR_TRACE
from tests.app_driver import (
    APP,
    assert_clean,
    chart_with_title,
    charts,
    has_table,
    metric,
    sql,
    table,
    texts,
)
from tests.app_fixtures import TOP_IMAGE_LAYER, TOP_IMAGE_MODEL
from tests.conftest import REFERENCE, lce

PAGES = [
    "overview", "embedding", "components", "tasks", "compare", "units", "gallery", "concept",
    "similarity", "sql",
]  # fmt: skip

needs_reference = pytest.mark.skipif(
    not (REFERENCE / "models_dissect_profiles_raw.csv").is_file(),
    reason="the paper's published data is not here",
)


# ---------------------------------------------------------------------------------------------
# Warehouses
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def no_benchmarks_db(app_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same warehouse with no task results (as a study without `lce benchmarks add`)."""
    copy = tmp_path_factory.mktemp("no-bench") / "lce.duckdb"
    shutil.copy(app_db, copy)
    with duckdb.connect(str(copy)) as conn:
        conn.execute("delete from fct_task_benchmarks")
        conn.execute("delete from fct_component_task_correlations")
        conn.execute("delete from fct_category_task_correlations")
        conn.execute("delete from fct_concept_task_correlations")
        conn.execute("update dim_models set has_benchmarks = false, n_benchmarks = 0")
    return copy


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Every page
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exception(
    open_page: Callable[..., AppTest], app_db: Path, page: str
) -> None:
    at = open_page(app_db, page)
    assert not at.error, texts(at.error)
    assert not at.warning, texts(at.warning)
    assert at.title, "every page has a title"


@pytest.mark.parametrize("page", PAGES)
def test_a_missing_database_is_a_clear_note_on_every_page(
    open_page: Callable[..., AppTest], tmp_path: Path, page: str
) -> None:
    at = open_page(tmp_path / "nowhere.duckdb", page)
    assert "No warehouse at" in texts(at.warning)
    assert "lce build" in texts(at.warning)
    assert not at.get("plotly_chart") and not at.dataframe


def test_a_file_that_is_not_a_warehouse_is_named(
    open_page: Callable[..., AppTest], tmp_path: Path
) -> None:
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    assert "not an lce warehouse" in texts(open_page(empty, "overview").warning)
    garbage = tmp_path / "garbage.duckdb"
    garbage.write_bytes(b"not a database at all" * 100)
    assert "could not be opened" in texts(open_page(garbage, "embedding").warning)


def test_the_sidebar_box_switches_the_database(
    open_page: Callable[..., AppTest], app_db: Path, tmp_path: Path
) -> None:
    launch = tmp_path / "lce.duckdb"
    shutil.copy(app_db, launch)
    duckdb.connect(str(tmp_path / "other.duckdb")).close()  # a sibling that is no warehouse
    at = open_page(launch, "overview")
    (expected,) = sql(app_db, "select count(*) from dim_models")[0]
    assert metric(at, "models") == str(expected)
    box = at.sidebar.selectbox(key="lce_db_path")
    assert box.options == ["lce.duckdb", "other.duckdb"]  # names in the launch folder only
    box.select("other.duckdb").run()
    assert_clean(at)
    assert "other.duckdb" in texts(at.warning)


def test_the_sidebar_box_reveals_no_other_paths(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    """No free path box: a visitor picks a name from the launch folder, never types a path."""
    at = open_page(app_db, "overview")
    assert len(at.sidebar.text_input) == 0
    assert all("/" not in option for option in at.sidebar.selectbox(key="lce_db_path").options)


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


# ---------------------------------------------------------------------------------------------
# Overview
# ---------------------------------------------------------------------------------------------


def test_overview_shows_the_models_and_concept_counts_of_the_file(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "overview")
    frame = table(at, "interpretable_units")
    expected = sql(
        app_db,
        "select model, n_units, n_interpretable_units, in_embedding, "
        "coalesce(excluded_reason, '') from dim_models",
    )
    shown = {
        r.model: (r.units, r.interpretable_units, bool(r.in_embedding), r.excluded_reason)
        for r in frame.itertuples()
    }
    assert shown == {m: (u, i, e, x) for m, u, i, e, x in expected}
    categories = dict(sql(app_db, "select model, category_label from dim_model_categories"))
    assert {
        r.model: r.category for r in frame.itertuples() if r.category != "not embedded"
    } == categories

    def bars(fig: dict[str, Any]) -> dict[tuple[str, str], int]:
        return {
            (model, trace["name"]): value
            for trace in fig["data"]
            for model, value in zip(trace["y"], trace["x"], strict=True)
            if value
        }

    units = bars(chart_with_title(at, "Interpretable units per concept category"))
    by_units = sql(app_db, "select model, category, n_units from fct_category_profiles")
    assert units == {(m, c): n for m, c, n in by_units if n}

    at.radio(key="overview_measure").set_value("unique concepts").run()
    assert_clean(at)
    unique = bars(chart_with_title(at, "Unique concepts per concept category"))
    by_unique = sql(app_db, "select model, category, n_unique_concepts from fct_category_profiles")
    assert unique == {(m, c): n for m, c, n in by_unique if n}
    assert unique != units


def test_category_colours_are_the_same_on_every_page(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    def colours(at: AppTest) -> dict[str, str]:
        return {
            trace["name"]: trace["marker"]["color"]
            for fig in charts(at)
            for trace in fig["data"]
            if trace.get("type") == "bar" and isinstance(trace.get("marker", {}).get("color"), str)
        }

    overview = colours(open_page(app_db, "overview"))
    components = colours(open_page(app_db, "components"))
    shared = set(overview) & set(components)
    assert shared, "both pages colour bars by concept category"
    assert {c: overview[c] for c in shared} == {c: components[c] for c in shared}
    assert len(set(overview.values())) == len(overview), "one colour per concept category"


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


# ---------------------------------------------------------------------------------------------
# Embedding
# ---------------------------------------------------------------------------------------------


def _points(fig: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return {
        name: (x, y)
        for trace in fig["data"]
        if trace.get("mode") == "markers+text"
        for name, x, y in zip(trace["text"], trace["x"], trace["y"], strict=True)
    }


def test_embedding_plots_the_scores_of_the_file_and_follows_the_axes(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "embedding")
    scores = {(m, c): v for m, c, v in sql(app_db, "select model, component, value from fct_lce")}
    evr = dict(sql(app_db, "select component, explained_variance_ratio from fct_lce_components"))
    models = {m for m, _ in scores}
    fig = chart_with_title(at, "Learned Concepts Embedding")
    points = _points(fig)
    assert set(points) == models
    for model, (x, y) in points.items():
        assert x == pytest.approx(scores[(model, 1)])
        assert y == pytest.approx(scores[(model, 2)])
    assert f"{100 * evr[1]:.1f}%" in fig["layout"]["xaxis"]["title"]["text"]
    assert f"{100 * evr[2]:.1f}%" in fig["layout"]["yaxis"]["title"]["text"]
    # Colours follow the model categories of the file.
    categories = dict(sql(app_db, "select model, category_label from dim_model_categories"))
    for trace in fig["data"]:
        if trace.get("mode") == "markers+text":
            assert {categories[m] for m in trace["text"]} == {trace["legendgroup"]}

    last = max(evr)
    at.selectbox(key="emb_x").set_value(last).run()
    assert_clean(at)
    moved = _points(chart_with_title(at, "Learned Concepts Embedding"))
    for model, (x, _) in moved.items():
        assert x == pytest.approx(scores[(model, last)])
    assert moved != points


def test_embedding_highlights_a_model_and_lists_its_nearest(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "embedding")
    model = sorted(m for (m,) in sql(app_db, "select model from fct_lce group by model"))[-1]
    at.selectbox(key="emb_highlight").set_value(model).run()
    assert_clean(at)
    nearest = table(at, "cosine_distance")
    expected = sql(
        app_db,
        "select model_b, cosine_distance from fct_model_distances where model_a = ? "
        "order by cosine_distance, model_b limit 5",
        [model],
    )
    assert list(nearest["model"]) == [m for m, _ in expected]
    assert list(nearest["cosine_distance"]) == pytest.approx([d for _, d in expected])
    names = [t["name"] for t in chart_with_title(at, "Learned Concepts Embedding")["data"]]
    assert f"{model} (highlighted)" in names

    at.number_input(key="emb_k").set_value(2).run()
    assert list(table(at, "cosine_distance")["model"]) == [m for m, _ in expected[:2]]


def test_embedding_labels_do_not_overlap() -> None:
    """The label placer on a crowded cloud: greedy placement beats one fixed position."""
    rng = np.random.default_rng(3)
    xs = rng.normal(size=20).tolist()
    ys = rng.normal(size=20).tolist()
    names = [f"Model{i:02d}(R)" for i in range(20)]
    xr, yr = explore.padded_range(xs), explore.padded_range(ys)
    placed = explore.label_positions(xs, ys, names, xr, yr)
    fixed = explore.label_overlaps(xs, ys, names, ["top center"] * 20, xr, yr)
    assert explore.label_overlaps(xs, ys, names, placed, xr, yr) < fixed


def test_reference_embedding_labels_do_not_overlap(app_db: Path) -> None:
    from lce.explore.embedding import embedding  # the Embedding page's module
    from lce.explore.scatter_text import PLOT_ASPECT, equal_ranges

    frame = embedding(app_db)
    comps = [c for c in frame.columns if c.startswith("pc")]
    for a in comps:
        for b in comps:
            if a == b:
                continue
            xs, ys, names = frame[a].to_list(), frame[b].to_list(), frame["model"].to_list()
            xr, yr = equal_ranges(xs, ys, aspect=PLOT_ASPECT)  # as the figure draws them
            placed = explore.label_positions(xs, ys, names, xr, yr)
            assert explore.label_overlaps(xs, ys, names, placed, xr, yr) == 0, (a, b)


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


# ---------------------------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------------------------


def _bars_by_label(fig: dict[str, Any]) -> dict[str, float]:
    return {
        label: value
        for trace in fig["data"]
        for label, value in zip(trace["y"], trace["x"], strict=True)
    }


def _strip(label: str) -> str:
    return label.split(" (")[0]


def test_components_show_the_loadings_of_the_file(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "components")

    def expected(component: int, top: int) -> dict[str, float]:
        rows = sql(
            app_db,
            "select concept, category, loading from fct_component_loadings where component = ? "
            "order by abs(loading) desc, category, concept limit ?",
            [component, top],
        )
        return {f"{c}|{k}": v for c, k, v in rows}

    def shown(at: AppTest) -> dict[str, float]:
        fig = chart_with_title(at, "Loadings of PC")
        return {
            f"{_strip(label)}|{trace['name']}": value
            for trace in fig["data"]
            for label, value in zip(trace["y"], trace["x"], strict=True)
        }

    top = at.slider(key="comp_top").value if at.slider else None
    first = shown(at)
    assert first == pytest.approx(expected(1, top or 10**6))

    at.selectbox(key="comp_component").set_value(2).run()
    assert_clean(at)
    second = shown(at)
    assert second == pytest.approx(expected(2, top or 10**6))
    assert second != first

    if at.slider:
        at.slider(key="comp_top").set_value(10).run()
        assert shown(at) == pytest.approx(expected(2, 10))


def test_components_correlate_with_category_counts_as_numpy_does(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "components")
    fig = chart_with_title(at, "per-category counts")
    models = [m for (m,) in sql(app_db, "select distinct model from fct_lce order by model")]
    scores = {(m, c): v for m, c, v in sql(app_db, "select model, component, value from fct_lce")}
    counts = {
        (m, k): (n, u)
        for m, k, n, u in sql(
            app_db, "select model, category, n_units, n_unique_concepts from fct_category_profiles"
        )
    }
    checked = 0
    for trace in fig["data"]:
        if trace["name"] == STAR_TRACE:
            continue
        kind = 0 if trace["xaxis"] in ("x", None) else 1
        category = trace["name"]
        for label, r in zip(trace["x"], trace["y"], strict=True):
            component = int(label[2:])
            x = np.array([scores[(m, component)] for m in models])
            y = np.array([counts.get((m, category), (0, 0))[kind] for m in models], dtype=float)
            if r is None:
                assert np.ptp(y) == 0 or np.ptp(x) == 0
                continue
            assert r == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-9)
            checked += 1
    assert checked


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------


def _task_bars(fig: dict[str, Any]) -> dict[tuple[int, str], float]:
    return {
        (int(trace["name"][2:]), label): r
        for trace in fig["data"]
        if trace["name"] != STAR_TRACE
        for label, r in zip(trace["x"], trace["y"], strict=True)
    }


def test_tasks_show_the_correlations_of_the_file_per_family(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "tasks")
    # The box shows each family's name (issue 13); its values are the file's identifiers.
    families = sorted(t for (t,) in sql(app_db, "select distinct task from fct_task_benchmarks"))
    assert set(at.selectbox(key="task_family").options) == {explore.task_title(t) for t in families}

    def expected(task: str) -> dict[tuple[int, str], float]:
        rows = sql(
            app_db,
            "select component, dataset, metric, pearson_r from fct_component_task_correlations "
            "where task = ?",
            [task],
        )
        datasets = {d for _, d, _, _ in rows}
        metrics = {m for _, _, m, _ in rows}
        out = {}
        for c, d, m, r in rows:
            label = d if len(metrics) == 1 else m if len(datasets) == 1 else f"{d} · {m}"
            out[(c, label)] = r
        return out

    first = at.selectbox(key="task_family").value
    shown = _task_bars(chart_with_title(at, "Component / task correlations"))
    assert shown == pytest.approx(expected(first))
    if len(families) > 1:
        other = [f for f in families if f != first][-1]
        at.selectbox(key="task_family").set_value(other).run()
        assert_clean(at)
        changed = _task_bars(chart_with_title(at, "Component / task correlations"))
        assert changed == pytest.approx(expected(other))
        assert changed != shown


def test_task_scatter_shows_r_of_the_file_and_follows_the_component(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "tasks")
    task = at.selectbox(key="task_family").value
    result = at.selectbox(key="task_result").value
    rows = sql(
        app_db,
        "select component, dataset, metric, pearson_r from fct_component_task_correlations "
        "where task = ?",
        [task],
    )
    match = [r for r in rows if result in (r[1], r[2], f"{r[1]} · {r[2]}")]

    def r_of(component: int) -> float:
        (value,) = {r for c, _, _, r in match if c == component}
        return value

    assert float(metric(at, "Pearson r")) == pytest.approx(r_of(1), abs=5e-4)
    fig = chart_with_title(at, "against PC1")
    fit = [t for t in fig["data"] if t["name"] == "least-squares fit"]
    assert fit, "the fit line is drawn"
    at.selectbox(key="task_component").set_value(2).run()
    assert_clean(at)
    assert float(metric(at, "Pearson r")) == pytest.approx(r_of(2), abs=5e-4)
    assert chart_with_title(at, "against PC2")


def test_performance_map_is_distance_weighted_knn(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    from sklearn.neighbors import KNeighborsRegressor

    at = open_page(app_db, "tasks")
    task = at.selectbox(key="task_family").value
    result = at.selectbox(key="task_result").value
    bench = sql(
        app_db,
        "select b.model, b.dataset, b.metric, b.value, l1.value, l2.value "
        "from fct_task_benchmarks b join fct_lce l1 on l1.model = b.model and l1.component = 1 "
        "join fct_lce l2 on l2.model = b.model and l2.component = 2 where b.task = ?",
        [task],
    )
    rows = [r for r in bench if result in (r[1], r[2], f"{r[1]} · {r[2]}")]
    xy = np.array([(r[4], r[5]) for r in rows])
    values = np.array([r[3] for r in rows])

    def check(k: int) -> np.ndarray:
        fig = chart_with_title(at, "-NN map")
        heat = next(t for t in fig["data"] if t["type"] == "heatmap")
        gx, gy, z = np.array(heat["x"]), np.array(heat["y"]), np.array(heat["z"], dtype=float)
        grid = np.array([(a, b) for b in gy for a in gx])
        model = KNeighborsRegressor(n_neighbors=k, weights="distance").fit(xy, values)
        assert z.ravel() == pytest.approx(model.predict(grid), rel=1e-9, abs=1e-9)
        return z

    k = at.slider(key="task_map_k").value
    before = check(k)
    at.slider(key="task_map_k").set_value(1 if k != 1 else 2).run()
    assert_clean(at)
    after = check(at.slider(key="task_map_k").value)
    assert not np.allclose(before, after)


def test_knn_interpolation_matches_scikit_learn() -> None:
    from sklearn.neighbors import KNeighborsRegressor

    rng = np.random.default_rng(0)
    points = rng.normal(size=(13, 2))
    values = rng.normal(size=13)
    queries = np.vstack([rng.normal(size=(200, 2)), points[:3]])  # some queries hit points
    for k in (1, 3, 5, 13):
        expected = KNeighborsRegressor(n_neighbors=k, weights="distance").fit(points, values)
        assert explore.knn_interpolate(points, values, queries, k) == pytest.approx(
            expected.predict(queries)
        )


def test_no_task_results_is_a_clear_note(
    open_page: Callable[..., AppTest], no_benchmarks_db: Path
) -> None:
    at = open_page(no_benchmarks_db, "tasks")
    assert "No task results" in texts(at.info)
    assert "lce benchmarks add" in texts(at.info)
    at = open_page(no_benchmarks_db, "compare")
    assert "No task results for" in texts(at.info)


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


# ---------------------------------------------------------------------------------------------
# Correlations with intervals and the multiple-testing correction
# ---------------------------------------------------------------------------------------------


def test_task_bars_carry_the_interval_and_mark_what_survives(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "tasks")
    task = at.selectbox(key="task_family").value
    rows = sql(
        app_db,
        "select component, dataset, metric, pearson_r, r_lo, r_hi, q_value, significant "
        "from fct_component_task_correlations where task = ?",
        [task],
    )
    datasets = {r[1] for r in rows}
    metrics = {r[2] for r in rows}

    def label(d: str, m: str) -> str:
        return d if len(metrics) == 1 else m if len(datasets) == 1 else f"{d} · {m}"

    expected = {(c, label(d, m)): (r, lo, hi, q, s) for c, d, m, r, lo, hi, q, s in rows}
    fig = chart_with_title(at, "Component / task correlations")
    stars = {
        (trace["offsetgroup"], result): (text, y)
        for trace in fig["data"]
        if trace["name"] == STAR_TRACE
        for result, text, y in zip(trace["x"], trace["text"], trace["y"], strict=True)
    }
    checked = 0
    for trace in fig["data"]:
        if trace["name"] == STAR_TRACE:
            continue
        component = int(trace["name"][2:])
        bars = zip(trace["x"], trace["y"], trace["error_y"]["array"],
                   trace["error_y"]["arrayminus"], trace["customdata"], strict=True)  # fmt: skip
        for result, r, up, down, custom in bars:
            er, lo, hi, q, significant = expected[(component, result)]
            if er is None:
                continue
            assert r == pytest.approx(er)
            assert r + up == pytest.approx(hi) and r - down == pytest.approx(lo)
            assert custom[3] == pytest.approx(q)
            star, at_y = stars[(trace["offsetgroup"], result)]
            assert (star == "*") == significant == (q < 0.05)
            if significant:  # past the error bar's cap, never on it
                assert at_y > hi if r >= 0 else at_y < lo
            checked += 1
    assert checked == sum(1 for row in rows if row[3] is not None)
    shown = table(at, "q_value")
    assert sorted(shown["q_value"].dropna()) == pytest.approx(
        sorted(row[6] for row in rows if row[6] is not None)
    )


def test_category_task_heatmap_is_the_file_and_follows_the_measure(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "tasks")
    task = at.selectbox(key="task_family").value

    def expected(measure: str) -> dict[tuple[str, str, str], tuple[float | None, bool]]:
        rows = sql(
            app_db,
            "select category, dataset, metric, pearson_r, significant "
            "from fct_category_task_correlations where task = ? and measure = ?",
            [task, measure],
        )
        return {(c, d, m): (r, s) for c, d, m, r, s in rows}

    def shown() -> dict[tuple[str, str], tuple[float | None, str]]:
        fig = chart_with_title(at, "Concept categories x")
        heat = fig["data"][0]
        return {
            (category, result): (heat["z"][i][j], heat["text"][i][j])
            for i, category in enumerate(heat["y"])
            for j, result in enumerate(heat["x"])
        }

    def check(measure: str) -> list[float | None]:
        want = expected(measure)
        got = shown()
        assert len(got) == len(want)
        datasets = {d for _, d, _ in want}
        metrics = {m for _, _, m in want}
        for (category, d, m), (r, significant) in want.items():
            result = d if len(metrics) == 1 else m if len(datasets) == 1 else f"{d} · {m}"
            z, star = got[(category, result)]
            assert z == pytest.approx(r)
            assert (star == "*") == significant
        return [v for v, _ in got.values()]

    before = check("n_units")
    at.radio(key="task_measure").set_value("share of units").run()
    assert_clean(at)
    after = check("unit_share")
    assert before != after


def test_overview_says_how_many_correlations_survive(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "overview")
    ((tests, kept),) = sql(
        app_db,
        "select count(p_value), count(*) filter (where q_value < 0.05) "
        "from fct_component_task_correlations",
    )
    line = f"{kept} of {tests} component / task correlations survive Benjamini-Hochberg"
    assert line in texts(at.caption)


# ---------------------------------------------------------------------------------------------
# Compare
# ---------------------------------------------------------------------------------------------


def test_compare_shows_distance_concepts_and_tasks_of_the_file(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "compare")

    def check(a: str, b: str) -> tuple[str, str]:
        (distance,) = sql(
            app_db,
            "select cosine_distance from fct_model_distances where model_a = ? and model_b = ?",
            [a, b],
        )[0]
        assert metric(at, "cosine distance") == f"{distance:.3f}"
        concepts = {
            m: {(c, k) for c, k in sql(
                app_db, "select concept, category from fct_concept_profiles where model = ?", [m]
            )}
            for m in (a, b)
        }  # fmt: skip
        assert metric(at, "shared concepts") == str(len(concepts[a] & concepts[b]))
        # the size the cosine distance ignores, counted from the unit labels directly
        n_a, n_b = (
            sql(app_db, "select count(*) from fct_unit_labels "
                "where model = ? and is_primary_layer and is_interpretable", [m])[0][0]
            for m in (a, b)
        )  # fmt: skip
        assert metric(at, f"interpretable units, {a} minus {b}") == f"{n_a - n_b:+,}"
        assert any("directions of the two concept profiles only" in c.value for c in at.caption)
        assert metric(at, f"only in {a}") == str(len(concepts[a] - concepts[b]))
        assert metric(at, f"only in {b}") == str(len(concepts[b] - concepts[a]))
        results = sql(
            app_db,
            "select a.task, a.dataset, a.metric, a.value, b.value from fct_task_benchmarks a "
            "join fct_task_benchmarks b using (task, dataset, metric) "
            "where a.model = ? and b.model = ?",
            [a, b],
        )
        if results:
            frame = table(at, "better")
            shown = {
                (r["task"], r["dataset"], r["metric"]): (r[a], r[b]) for _, r in frame.iterrows()
            }
            for task, dataset, metric_name, va, vb in results:
                # the family by its name (issue 13), not its identifier
                key = (explore.task_title(task), dataset, metric_name)
                assert shown[key] == pytest.approx((va, vb))
        return metric(at, "cosine distance"), metric(at, "shared concepts")

    a = at.selectbox(key="cmp_a").value
    b = at.selectbox(key="cmp_b").value
    first = check(a, b)
    others = [m for m in at.selectbox(key="cmp_b").options if m not in (a, b)]
    with_distance = {m for (m,) in sql(app_db, "select distinct model_b from fct_model_distances")}
    other = next(m for m in reversed(others) if m in with_distance)
    at.selectbox(key="cmp_b").set_value(other).run()
    assert_clean(at)
    assert check(a, other) != first


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
# Units
# ---------------------------------------------------------------------------------------------


def test_units_table_is_the_file_and_filters_follow_the_widgets(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "units")
    model = at.selectbox(key="units_model").value
    layer = at.selectbox(key="units_layer").value

    def rows(where: str = "", params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        return sql(
            app_db,
            "select unit, coalesce(concept, '(background: no concept)'), "
            "coalesce(category, '(none)'), iou from fct_unit_labels where model = ? "
            f"and layer = ? {where} order by concept is null, iou desc nulls last, unit",
            [model, layer, *(params or [])],
        )

    def shown() -> list[tuple[Any, ...]]:
        frame = table(at, "is_interpretable")
        return [
            (r.unit, r.concept, r.category, r.iou)
            for r in frame[["unit", "concept", "category", "iou"]].itertuples(index=False)
        ]

    def same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> None:
        def norm(v: Any) -> Any:
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

        assert [tuple(norm(v) for v in x[:3]) for x in a] == [y[:3] for y in b]
        assert [norm(x[3]) for x in a] == pytest.approx([y[3] for y in b])

    same(shown(), rows())
    at.slider(key="units_min_iou").set_value(0.08).run()
    assert_clean(at)
    filtered = shown()
    same(filtered, rows("and iou >= 0.08"))
    assert len(filtered) < len(rows())

    categories = at.multiselect(key="units_categories").options
    at.multiselect(key="units_categories").set_value(categories[:1]).run()
    same(shown(), rows("and iou >= 0.08 and category = ?", [categories[0]]))

    at.checkbox(key="units_interpretable").check().run()
    same(shown(), rows("and iou >= 0.08 and category = ? and is_interpretable", [categories[0]]))


@pytest.mark.parametrize("state", ["empty", "absent"])
def test_units_without_top_images_explain_why(
    open_page: Callable[..., AppTest], app_db: Path, tmp_path: Path, state: str
) -> None:
    """The published paper data has no top images (an empty mart); a file built before the
    mart lacks it and is named as one to rebuild. Either way the page says so instead of
    failing."""
    db = tmp_path / "lce.duckdb"
    shutil.copy(app_db, db)
    with duckdb.connect(str(db)) as conn:
        if state == "empty":
            conn.execute("delete from fct_unit_top_images")
        else:
            conn.execute("drop table fct_unit_top_images")
    at = open_page(db, "units")
    if state == "absent":
        assert "lacks fct_unit_top_images" in texts(at.warning) and not at.image
        return
    assert "no top images" in texts(at.info)
    assert has_table(at, "is_interpretable"), "the unit table is still there"
    assert not at.image


def test_units_show_top_images_from_the_probe_folder(
    open_page: Callable[..., AppTest], toy_home: Path
) -> None:
    db, probe = toy_home / "lce.duckdb", toy_home / "probe"
    at = open_page(db, "units", probe=probe)
    other = next(m for m in at.selectbox(key="units_model").options if m != TOP_IMAGE_MODEL)
    at.selectbox(key="units_model").set_value(other).run()
    assert f"the lake has them for: {TOP_IMAGE_MODEL} / {TOP_IMAGE_LAYER}" in texts(at.info)
    assert not at.image
    at.selectbox(key="units_model").set_value(TOP_IMAGE_MODEL).run()
    at.selectbox(key="units_layer").set_value(TOP_IMAGE_LAYER).run()

    def expected(unit: int) -> list[tuple[int, str]]:
        return sql(
            db,
            "select rank, image from stg_unit_top_images where model = ? and layer = ? "
            "and unit = ? order by rank",
            [TOP_IMAGE_MODEL, TOP_IMAGE_LAYER, unit],
        )

    units = at.selectbox(key="units_unit").options
    (with_images,) = sql(
        db,
        "select count(distinct unit) from stg_unit_top_images where model = ? and layer = ?",
        [TOP_IMAGE_MODEL, TOP_IMAGE_LAYER],
    )[0]
    assert len(units) == with_images
    at.selectbox(key="units_unit").set_value(0).run()
    assert_clean(at)
    found = [(r, i) for r, i in expected(0) if (probe / "images" / i).is_file()]
    missing = [i for _, i in expected(0) if not (probe / "images" / i).is_file()]
    (images,) = at.image
    assert [c.split()[0] for c in images.captions] == [f"#{r}" for r, _ in found]
    assert missing and all(m in texts(at.info) for m in missing)
    assert "activation map" in texts(at.caption)

    at.selectbox(key="units_unit").set_value(5).run()
    assert [c.split()[0] for c in at.image[0].captions] == [f"#{r}" for r, _ in expected(5)]

    # Only the folders the server offers, in a list (tests/test_app_serving.py); with none offered (the toy runs record a folder this machine lacks), the stored names
    at = open_page(db, "units")
    at.selectbox(key="units_model").set_value(TOP_IMAGE_MODEL).run()
    at.selectbox(key="units_layer").set_value(TOP_IMAGE_LAYER).run()
    at.selectbox(key="units_unit").set_value(5).run()
    assert "lce app --probe DIR" in texts(at.info)
    assert not at.image
    names = list(table(at, "max_activation")["image"])
    assert names == [i for _, i in expected(5)]


def test_units_layer_choice_follows_the_file(
    open_page: Callable[..., AppTest], toy_home: Path
) -> None:
    db = toy_home / "lce.duckdb"
    at = open_page(db, "units")
    at.selectbox(key="units_model").set_value(TOP_IMAGE_MODEL).run()
    layers = at.selectbox(key="units_layer").options
    assert set(layers) == {
        layer
        for (layer,) in sql(
            db, "select distinct layer from fct_unit_labels where model = ?", [TOP_IMAGE_MODEL]
        )
    }
    assert len(layers) > 1
    before = table(at, "is_interpretable")
    at.selectbox(key="units_layer").set_value(layers[-1]).run()
    after = table(at, "is_interpretable")
    (n,) = sql(
        db,
        "select count(*) from fct_unit_labels where model = ? and layer = ?",
        [TOP_IMAGE_MODEL, layers[-1]],
    )[0]
    assert len(after) == n
    assert not before.equals(after)


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
    assert at.selectbox(key="units_probe").value == str(probe)
    assert at.image, "the top images are shown without typing the folder"


# ---------------------------------------------------------------------------------------------
# SQL
# ---------------------------------------------------------------------------------------------


def test_sql_page_runs_examples_and_caps_rows(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "sql")
    first_example = at.text_area(key="sql_text").value
    result = at.dataframe[0].value
    expected = sql(app_db, first_example)
    assert [tuple(r) for r in result.itertuples(index=False)] == expected

    name = list(explore.EXAMPLE_QUERIES)[2]
    at.selectbox(key="sql_example").set_value(name).run()
    assert_clean(at)
    assert at.text_area(key="sql_text").value == explore.EXAMPLE_QUERIES[name]
    changed = at.dataframe[0].value
    assert [tuple(r) for r in changed.itertuples(index=False)] == sql(
        app_db, explore.EXAMPLE_QUERIES[name]
    )

    labels = [el.proto.label for el in at.get("download_button")]
    assert "Download all rows (CSV)" in labels
    at.text_area(key="sql_text").input("select * from range(5000) t(i)").run()
    assert len(at.dataframe[0].value) == explore.MAX_ROWS
    assert "capped at 1000" in texts(at.caption)
    # The quick download holds the capped rows only, and its label says so.
    labels = [el.proto.label for el in at.get("download_button")]
    assert "Download the 1000 rows shown (CSV)" in labels


def test_sql_page_shows_nested_and_odd_types_as_text(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "sql")
    query = (
        "select [1, 2] as l, {'a': 1} as s, map {'k': 1} as m, interval 1 day as i, "
        "'x'::blob as b, 1::hugeint as h, 1 as dup, 2 as dup"
    )
    at.text_area(key="sql_text").input(query).run()
    assert_clean(at)
    assert not at.error
    (row,) = at.dataframe[0].value.itertuples(index=False)
    expected = sql(
        app_db, f"select {', '.join(f'#{i}::varchar' for i in range(1, 7))} from ({query})"
    )
    assert tuple(row)[:6] == expected[0]
    assert tuple(row)[6:] == (1, 2)
    assert list(at.dataframe[0].value.columns)[-2:] == ["dup", "dup_1"]


def test_a_runaway_query_is_stopped(app_db: Path) -> None:
    with pytest.raises(explore.SqlRefused, match="stopped after 0.5 s"):
        explore.run_sql(app_db, "select sum(i) from range(100000000000) t(i)", timeout_s=0.5)


REFUSED = [
    ("copy dim_models to '{tmp}/out.csv'", "COPY"),
    ("COPY (select 1) TO '{tmp}/out.parquet' (format parquet)", "COPY"),
    ("export database '{tmp}/export'", "COPY/EXPORT"),
    ("attach '{tmp}/other.duckdb' as other", "ATTACH"),
    ("select * from read_csv('/etc/passwd')", "File and network access is disabled"),
    ("select * from read_text('/etc/passwd')", "File and network access is disabled"),
    ("select * from read_parquet('{tmp}/*.parquet')", "File and network access is disabled"),
    ("install httpfs", "INSTALL is refused"),
    ("load httpfs", "LOAD is refused"),
    ("insert into dim_models (model) values ('evil')", "INSERT is refused"),
    ("update dim_models set n_units = 0", "UPDATE is refused"),
    ("delete from fct_lce", "DELETE is refused"),
    ("create table evil as select 1", "CREATE is refused"),
    ("drop table fct_lce", "DROP is refused"),
    ("set enable_external_access = true", "SET statements are refused"),
    ("select 1; drop table fct_lce", "One statement at a time"),
    ("checkpoint", "CALL statements are refused"),
]


def test_sql_page_refuses_files_extensions_and_writes(
    open_page: Callable[..., AppTest], app_db: Path, tmp_path: Path
) -> None:
    (tmp_path / "x.parquet").write_bytes(b"")
    before = sha256(app_db)
    at = open_page(app_db, "sql")
    for statement, message in REFUSED:
        at.text_area(key="sql_text").input(statement.format(tmp=tmp_path)).run()
        assert_clean(at)
        assert len(at.error) == 1, statement
        assert message in texts(at.error), (statement, at.error[0].value)
        assert len(at.dataframe) == 1, "only the table list, no result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.parquet"], "nothing was written"
    assert sha256(app_db) == before
    assert not app_db.with_name(app_db.name + ".wal").exists()
    (count,) = sql(app_db, "select count(*) from dim_models where model = 'evil'")[0]
    assert count == 0


def test_sql_refusals_are_checked_before_duckdb_runs_them(app_db: Path) -> None:
    """The pre-check names the statement type even where DuckDB would also refuse."""
    for statement, expected in [
        ("COPY fct_lce TO 'x.csv'", "COPY"),
        ("ATTACH 'x.duckdb'", "ATTACH"),
        ("INSTALL spatial", "INSTALL"),
        ("DELETE FROM fct_lce", "DELETE"),
    ]:
        with duckdb.connect(":memory:") as conn, pytest.raises(explore.SqlRefused) as refused:
            explore.check_sql(conn, statement)
        assert str(refused.value).startswith(expected)


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


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------


def test_lce_app_runs_streamlit_on_the_given_database(
    monkeypatch: pytest.MonkeyPatch, app_db: Path
) -> None:
    calls: list[tuple[str, list[str], dict[str, str]]] = []

    def fake_execve(path: str, command: list[str], env: dict[str, str]) -> None:
        calls.append((path, command, env))

    monkeypatch.setattr(os, "execve", fake_execve)
    code, out = lce("app", "--db", app_db, "--", "--server.port", "8599")
    assert code == 0, out
    ((path, command, env),) = calls
    assert path == sys.executable
    assert command[1:4] == ["-m", "streamlit", "run"]
    assert Path(command[4]) == APP
    assert command[-2:] == ["--server.port", "8599"]
    assert "--browser.gatherUsageStats=false" in command
    assert env["LCE_DB"] == str(app_db.resolve())
    assert str(app_db.resolve()) in out


def test_lce_app_warns_when_there_is_no_warehouse_yet(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "execve", lambda *args: None)
    code, out = lce("app", "--db", tmp_path / "none.duckdb")
    assert code == 0
    assert "no published warehouse yet" in out


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


# ---------------------------------------------------------------------------------------------
# Uncertainty: bootstrap intervals, model category stability, prediction skill
# ---------------------------------------------------------------------------------------------

INTERVAL_TRACE = "95% interval (unit bootstrap)"


def test_embedding_intervals_toggle_draws_the_intervals_of_the_file(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "embedding")
    fig = chart_with_title(at, "Learned Concepts Embedding")
    assert INTERVAL_TRACE not in [t.get("name") for t in fig["data"]]
    at.toggle(key="emb_intervals").set_value(True).run()
    assert_clean(at)
    fig = chart_with_title(at, "Learned Concepts Embedding")
    (trace,) = [t for t in fig["data"] if t.get("name") == INTERVAL_TRACE]
    bounds = {(m, c): (lo, hi) for m, c, lo, hi in sql(app_db, "select * from fct_lce_intervals")}
    points = _points(fig)
    xs, ys = trace["x"], trace["y"]
    crosses = len(xs) // 6
    assert crosses == len(points)
    for i in range(crosses):
        x_lo, x_hi, _, px, _, _ = xs[6 * i : 6 * i + 6]
        py, _, _, y_lo, y_hi, _ = ys[6 * i : 6 * i + 6]
        (model,) = [m for m, (a, b) in points.items() if a == px and b == py]
        assert (x_lo, x_hi) == pytest.approx(bounds[(model, 1)])
        assert (y_lo, y_hi) == pytest.approx(bounds[(model, 2)])
    x_range = fig["layout"]["xaxis"]["range"]
    assert x_range[0] <= min(lo for (_, c), (lo, _) in bounds.items() if c == 1)


def test_embedding_shows_model_category_stability_and_coassignment_of_the_file(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "embedding")
    shown = table(at, "stability")
    expected = dict(sql(app_db, "select model, stability from dim_model_categories"))
    assert dict(zip(shown["model"], shown["stability"], strict=True)) == pytest.approx(expected)
    ari = sql(
        app_db,
        "select count(*), avg(same_partition::int), median(adjusted_rand_index) "
        "from fct_model_category_stability",
    )[0]
    caption = texts(at.caption)
    assert f"Over {ari[0]} resamples" in caption
    assert f"exactly in {100 * ari[1]:.0f}%" in caption and f"median {ari[2]:.3f}" in caption
    heat = chart_with_title(at, "Category co-assignment")["data"][0]
    share = {(a, b): s for a, b, s in sql(app_db, "select * from fct_model_category_coassignment")}
    names = [label.rsplit(" (", 1)[0] for label in heat["y"]]
    assert len(names) == len(expected)
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            assert heat["z"][i][j] == pytest.approx(share[(a, b)])


def test_tasks_show_the_prediction_skill_of_the_file(
    open_page: Callable[..., AppTest], app_db: Path
) -> None:
    at = open_page(app_db, "tasks")
    task = at.selectbox(key="task_family").value
    rows = sql(
        app_db,
        "select dataset, metric, method, skill from fct_task_prediction "
        "where task = ? and method <> 'mean'",
        [task],
    )
    fig = chart_with_title(at, "Leave-one-model-out skill")
    shown = sorted(x for trace in fig["data"] for x in trace["x"])
    assert shown == pytest.approx(sorted(r[3] for r in rows))
    assert {trace["name"] for trace in fig["data"]} == {r[2] for r in rows}
    other = next(
        t
        for (t,) in sql(app_db, "select distinct task from fct_task_benchmarks order by task")
        if t != task
    )
    at.selectbox(key="task_family").set_value(other).run()
    assert_clean(at)
    moved = chart_with_title(at, "Leave-one-model-out skill")
    assert sorted(x for trace in moved["data"] for x in trace["x"]) != shown
