"""The Concept page: every model with units for a concept, each model's best unit
with its outlines.

Expected values come from DuckDB on the file, never from the app's own functions. The
warehouses are the session-scoped ones of tests/app_fixtures.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app_driver import assert_clean, chart_with_title, sql, table


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
