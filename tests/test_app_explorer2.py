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
import pytest
from streamlit.testing.v1 import AppTest

from tests.app_fixtures import TOP_IMAGE_LAYER, TOP_IMAGE_MODEL
from tests.conftest import REFERENCE, REPO, lce
from tests.test_app import APP, assert_clean, chart_with_title, charts, sql, table, texts

needs_reference = pytest.mark.skipif(
    not (REFERENCE / "models_dissect_profiles_raw.csv").is_file(),
    reason="the paper's published data is not here",
)


@pytest.fixture
def open_page(monkeypatch: pytest.MonkeyPatch) -> Callable[..., AppTest]:
    """As tests/test_app.py's: the app on ``db``, switched to ``page``, without exceptions."""

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

    return _open


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
        conn.execute(
            "update stg_runs set probe = ? where model = ? and layer = ?",
            [f"broden:{probe}", TOP_IMAGE_MODEL, TOP_IMAGE_LAYER],
        )
        assert conn.execute(
            "select count(*) from stg_runs where model = ? and layer = ?",
            [TOP_IMAGE_MODEL, TOP_IMAGE_LAYER],
        ).fetchone() == (1,)
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
    ds, met = result.split(" · ")
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
    "sql": "SQL",
}


@pytest.mark.parametrize("page", sorted(PAGE_WORDS))
def test_every_page_opens_with_a_sentence_saying_what_it_is_for(
    open_page: Callable[..., AppTest], app_db: Path, page: str
) -> None:
    at = open_page(app_db, page)
    assert at.markdown, "a sentence under the title"
    assert PAGE_WORDS[page] in at.markdown[0].value
    if page in ("components", "units", "compare"):
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
    readme = (REPO / "README.md").read_text()
    assert "397 SimCLR-v2 rows have no IoU" not in readme
    assert "368 are the random model's and 29 SimCLR-v2's" in readme
