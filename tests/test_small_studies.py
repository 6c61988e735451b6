"""Small and degenerate studies build, publish and say what they could not compute (issue 17).

One model; two models with identical profiles (one network under two names); two different
models; three models with k = 3; a model with no interpretable unit among others. Each study
is a real lake (``write_partition``) built by real dbt (``lce build``). The expected numbers
come from an independent recompute of the paper's profile (numpy) and scikit-learn's PCA on
it, never from lce's own functions. The explorer renders every page of each (AppTest).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.decomposition import PCA
from streamlit.testing.v1 import AppTest

from tests.app_driver import texts
from tests.conftest import REPO, lce
from tests.small_studies_data import CASES, A, B, C, write_study
from warehouse import dbt_failures
from warehouse.lake import write_partition
from warehouse.paths import demo_dir
from warehouse.stats import build_notes, embedding, marts

APP = REPO / "app.py"
PAGES = ["overview", "embedding", "components", "tasks", "compare", "units", "sql"]

# Profiles as (concept, category, interpretable units); each unit's IoU is 0.1 (> min_iou).

# case -> (models and profiles, models without an interpretable unit, expected note codes)
# Task results: one value per model, different for every model (so r exists where n >= 3).


def expected_profiles(
    models: dict[str, list[tuple[str, str, int]]], dead: set[str]
) -> tuple[list[str], np.ndarray]:
    """The paper's profile, recomputed by hand: units per concept / distinct concepts of its
    category among every interpretable unit; rows are the models with interpretable units."""
    live = {m: spec for m, spec in models.items() if m not in dead}
    vocabulary = Counter(cat for _, cat in {(c, cat) for s in live.values() for c, cat, _ in s})
    columns = sorted({(cat, c) for s in live.values() for c, cat, _ in s})
    names = sorted(live)
    matrix = np.zeros((len(names), len(columns)))
    for i, model in enumerate(names):
        for concept, category, count in live[model]:
            matrix[i, columns.index((category, concept))] += count / vocabulary[category]
    return names, matrix


@pytest.fixture(scope="module", params=list(CASES))
def study(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """(case, home, output of `lce build`) for one built and published study."""
    case = request.param
    models, dead, _ = CASES[case]
    home = tmp_path_factory.mktemp(case)
    write_study(home / "lake", models, dead)
    # k = 3 is the default; it is given explicitly only where the lake has three models or more
    # (lce build refuses an explicit k above the models dissected).
    explicit = ["--var", "n_categories=3"] if len(models) >= 3 else []
    code, out = lce("build", "--lake", home / "lake", "--db", home / "lce.duckdb", *explicit)
    assert code == 0, out
    yield case, home, out


def rows(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.slow
def test_builds_and_says_what_it_could_not_compute(study: tuple[str, Path, str]) -> None:
    case, home, out = study
    db = home / "lce.duckdb"
    notes = rows(db, "select topic, code, message from fct_build_notes order by note_id")
    assert {code for _, code, _ in notes} == CASES[case][2]
    for _, _, message in notes:
        # one plain sentence each, printed by `lce build` (after publishing) and `lce summary`
        assert message.endswith(".") and "nan" not in message.lower()
        assert f"note: {message}" in " ".join(out.split())
    code, summary_out = lce("summary", "--db", db)
    assert code == 0, summary_out
    flat = " ".join(summary_out.split())
    assert all(message in flat for _, _, message in notes)


@pytest.mark.slow
def test_published_embedding_matches_sklearn_with_no_nan_or_dust(
    study: tuple[str, Path, str],
) -> None:
    case, home, _ = study
    db = home / "lce.duckdb"
    models, dead, _ = CASES[case]
    names, matrix = expected_profiles(models, dead)
    centred = matrix - matrix.mean(axis=0)
    rank = int(np.linalg.matrix_rank(centred, tol=1e-9)) if len(names) > 1 else 0
    assert rank == {"one_model": 0, "identical": 0, "two_models": 1}.get(case, 2)

    evr = rows(db, "select component, explained_variance_ratio from fct_lce_components")
    assert [c for c, _ in evr] == list(range(1, rank + 1))
    assert all(math.isfinite(r) and r > 1e-6 for _, r in evr)  # no NaN, no 1e-33 component
    scores = rows(db, "select model, component, value from fct_lce order by model, component")
    loadings = rows(db, "select loading from fct_component_loadings")
    assert all(math.isfinite(v) for *_, v in scores) and all(math.isfinite(v) for (v,) in loadings)
    assert len(loadings) == rank * matrix.shape[1]
    if rank:
        pca = PCA(n_components=rank, svd_solver="full").fit(matrix)
        np.testing.assert_allclose([r for _, r in evr], pca.explained_variance_ratio_, atol=1e-9)
        expected = pca.transform(matrix)
        got = np.array([v for *_, v in scores]).reshape(len(names), rank)
        assert [m for m, *_ in scores][::rank] == names
        for c in range(rank):  # the sign of a component is a convention: compare up to it
            sign = np.sign(got[:, c] @ expected[:, c])
            np.testing.assert_allclose(got[:, c], sign * expected[:, c], atol=1e-9)
    else:
        assert scores == []


@pytest.mark.slow
def test_no_table_of_the_file_holds_nan(study: tuple[str, Path, str]) -> None:
    """Every floating column of every table: what cannot be computed is absent or null."""
    _, home, _ = study
    db = home / "lce.duckdb"
    columns = rows(
        db,
        "select table_name, column_name from duckdb_columns() "
        "where data_type in ('DOUBLE', 'FLOAT') and not internal",
    )
    assert columns
    with_nan = [
        (table, column)
        for table, column in columns
        if rows(db, f'select count(*) from "{table}" where isnan("{column}")')[0][0]
    ]
    assert with_nan == []


@pytest.mark.slow
def test_categories_and_distances(study: tuple[str, Path, str]) -> None:
    case, home, _ = study
    db = home / "lce.duckdb"
    models, dead, _ = CASES[case]
    names, matrix = expected_profiles(models, dead)
    categories = dict(rows(db, "select model, category_id from dim_model_categories"))
    assert sorted(categories) == names
    k = {"one_model": 1, "identical": 1, "two_models": 2}.get(case, 3)
    assert len(set(categories.values())) == k
    assert set(
        n for (n,) in rows(db, "select distinct n_categories from dim_model_categories")
    ) == {k}
    distances = {(a, b): d for a, b, d in rows(db, "select * from fct_model_distances")}
    assert {m for pair in distances for m in pair} == (set(names) if len(names) > 1 else set())
    for (a, b), d in distances.items():
        x, y = matrix[names.index(a)], matrix[names.index(b)]
        assert d == pytest.approx(1 - x @ y / (np.linalg.norm(x) * np.linalg.norm(y)), abs=1e-12)
    if case == "identical":
        assert distances[("m1", "m2")] == 0.0  # exactly, not float dust


@pytest.mark.slow
def test_correlations_only_where_they_exist(study: tuple[str, Path, str]) -> None:
    case, home, _ = study
    db = home / "lce.duckdb"
    correlations = rows(db, "select component, n, pearson_r from fct_component_task_correlations")
    n_components = rows(db, "select count(*) from fct_lce_components")[0][0]
    assert {c for c, _, _ in correlations} <= set(range(1, n_components + 1))
    for _, n, r in correlations:
        assert (r is None) == (n < 3)
        assert r is None or (math.isfinite(r) and -1 <= r <= 1)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(
    study: tuple[str, Path, str], page: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    case, home, _ = study
    db = home / "lce.duckdb"
    monkeypatch.setenv("LCE_DB", str(db))
    monkeypatch.delenv("LCE_PROBE_DIR", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.title, "every page has a title"
    shown = texts(at.info)  # as a visitor reads it: the pages escape names
    if page == "embedding":
        for (message,) in rows(db, "select message from fct_build_notes"):
            assert message in shown
    if page in ("components", "tasks") and case in ("one_model", "identical"):
        assert "notes say which" in shown  # not "no model is in the embedding": two are


# ---------------------------------------------------------------------------------------------
# The notes' sentences on hand-made inputs (no dbt), and dbt failures explained
# ---------------------------------------------------------------------------------------------


def inputs_for(
    models: dict[str, list[tuple[str, str, int]]],
    n_components: int = 3,
    n_categories: int | str = 3,
) -> marts.MartInputs:
    """MartInputs as dbt would hand them: profile rows and dim_models (all interpretable)."""
    names, matrix = expected_profiles(models, set())
    columns = sorted({(cat, c) for s in models.values() for c, cat, _ in s})
    profile = [
        (m, concept, category, 1, matrix[i, columns.index((category, concept))])
        for i, m in enumerate(names)
        for category, concept in columns
        if matrix[i, columns.index((category, concept))] > 0
    ]
    return marts.MartInputs(
        profiles=pd.DataFrame(
            profile, columns=["model", "concept", "category", "n_units", "weight"]
        ),
        models=pd.DataFrame(
            {
                "model": names,
                "in_embedding": [True] * len(names),
                "has_profile": [True] * len(names),
                "n_interpretable_units": [5] * len(names),
            }
        ),
        n_components=n_components,
        n_categories=n_categories,
    )


def test_notes_for_auto_categories_and_enough_components() -> None:
    codes = [n.code for n in build_notes.notes(inputs_for({"a": A, "b": B}, 1, "auto"))]
    assert codes == ["auto_single_category"]  # one component asked and given: no note for it
    assert build_notes.notes(inputs_for({"a": A, "b": B, "c": C}, 2, 2)) == []
    assert embedding.categorise(np.eye(3), "auto").k == 2  # three distinct: auto has k = 2


def test_notes_for_correlations_and_an_empty_embedding() -> None:
    inputs = inputs_for({"a": A, "b": B, "c": C})
    bench = pd.DataFrame(
        [
            ("a", "t", "d1", "acc", 0.5, True),
            ("b", "t", "d1", "acc", 0.5, True),
            ("c", "t", "d1", "acc", 0.5, True),  # one value for all three: no r
            ("a", "t", "d2", "acc", 0.1, True),
            ("b", "t", "d2", "acc", 0.2, True),  # two models only: no r
            ("a", "t", "d3", "acc", 0.1, True),
            ("b", "t", "d3", "acc", 0.2, True),
            ("c", "t", "d3", "acc", 0.4, True),  # r exists
        ],
        columns=["model", "task", "dataset", "metric", "value", "higher_is_better"],
    )
    notes = build_notes.notes(marts.MartInputs(inputs.profiles, inputs.models, bench, 2, 2))
    assert [(n.code, n.message) for n in notes] == [
        (
            "too_few_models",
            "Pearson r needs at least 3 embedded models with a result, but 1 of the 3 task "
            "results has fewer, so its r and p are left empty.",
        ),
        (
            "constant_result",
            "1 task result has the same value for every embedded model, so its r and p are "
            "left empty.",
        ),
        (
            # 3 models: multisets of 3 from 3 = C(5, 3) = 10; draws with at most two distinct
            # models: 3 (one model thrice) + 3 pairs x 6 = 21 of 27 = 78%
            "few_models_bootstrap",
            "Bootstrap intervals of r over 3 models: such a study has only 10 distinct "
            "resamples (each one enumerated, when that is at most var n_boot), and 78% of the "
            "3^3 equally likely draws hold at most two distinct models, whose r is +-1 or none; "
            "that is more than the 2.5% tail of a 95% interval, so below 6 models the "
            "interval's ends are set by those draws and say little.",
        ),
    ]
    nobody = inputs.models.assign(in_embedding=False)
    codes = [n.code for n in build_notes.notes(marts.MartInputs(inputs.profiles, nobody, bench))]
    assert codes == ["no_models"]


def test_the_minimum_models_by_brute_force() -> None:
    """Bootstrap: the share of the n^n draws holding at most two distinct models, counted over
    itertools.product, first falls under 2.5% at 6 models. Mantel: 1/n! first falls under 0.05
    at 4 models (3 models: 6 relabellings, p >= 0.167)."""
    share = {
        n: sum(len(set(d)) <= 2 for d in itertools.product(range(n), repeat=n)) / n**n
        for n in (3, 4, 5, 6)
    }
    assert share == pytest.approx({n: build_notes.degenerate_share(n) for n in share})
    assert share[5] > 0.025 > share[6]
    assert build_notes.min_bootstrap_models() == 6
    assert len(list(itertools.permutations(range(3)))) == 6
    assert build_notes.min_mantel_models() == 4


def test_a_mantel_test_over_three_models_gets_a_note() -> None:
    inputs = inputs_for({"a": A, "b": B, "c": C}, 2, 2)
    agreement = pd.DataFrame(
        {"measure": ["linear_cka", "procrustes"], "mantel_r": [0.5, None], "n_models": [3, 3]}
    )
    notes = build_notes.notes(replace(inputs, agreement=agreement))
    assert [(n.topic, n.code, n.message) for n in notes] == [
        (
            "similarity",
            "few_models_mantel",
            "The Mantel test over 3 models has only 6 distinct relabellings (all enumerated, so "
            "p is exact), and no p can be below 1/6 = 0.167: it needs at least 4 models to "
            "reach 0.05.",
        )
    ]
    five = agreement.assign(n_models=5)
    assert build_notes.notes(replace(inputs, agreement=five)) == []


def test_failed_dbt_tests_are_explained() -> None:
    line = (
        "Failure in test value_between_fct_lce_components_explained_variance_ratio__1__0 "
        "(models/marts/_marts.yml)"
    )
    parsed = dbt_failures.parse_test_name(line.split()[3])
    assert (parsed.kind, parsed.model, parsed.column) == (
        "value_between",
        "fct_lce_components",
        "explained_variance_ratio",
    )
    assert "explained variance" in (dbt_failures.explain(line) or "")
    generic = dbt_failures.explain("Failure in test not_null_fct_build_notes_message (x.yml)")
    assert generic == "fct_build_notes.message has empty (null) values"
    hashed = dbt_failures.explain("Failure in test unique_combination_fct_componen_0a1b (x)")
    assert hashed == "a warehouse table has two rows for the same key"
    assert dbt_failures.explain("Compilation Error in model x") is None
    staged = dbt_failures.explain("Failure in test not_null_stg_task_benchmarks_value (x)")
    assert staged == "the lake's task_benchmarks.value has empty (null) values"
    # the project's one test per model for its non-null columns: without the failed build's
    # file the column is unknown, so the table is named
    whole = dbt_failures.explain("Failure in test not_null_columns_fct_unit_labels (x.yml)")
    assert whole == "the table fct_unit_labels has empty (null) values"
    parsed = dbt_failures.parse_test_name("not_null_columns_stg_task_benchmarks")
    assert (parsed.kind, parsed.model, parsed.column) == (
        "not_null_columns",
        "stg_task_benchmarks",
        None,
    )


def test_every_column_that_was_tested_not_null_still_is() -> None:
    """The per-column not_null tests became one not_null_columns test per model, named after
    it (dbt would otherwise cut a long name to a hash and lose the model): the columns each
    lists, read from the YAML independently of dbt_failures, as the project declares them."""
    import yaml

    listed: dict[str, list[str]] = {}
    for path in sorted((REPO / "dbt_project" / "models").rglob("*.yml")):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models") or []:
            for column in model.get("columns") or []:
                assert "not_null" not in (column.get("data_tests") or []), (path, column)
            for test in model.get("data_tests") or []:
                if isinstance(test, dict) and "not_null_columns" in test:
                    spec = test["not_null_columns"]
                    assert spec["name"] == f"not_null_columns_{model['name']}"
                    names = {c["name"] for c in model.get("columns") or []}
                    assert set(spec["arguments"]["columns"]) <= names, model["name"]
                    listed[model["name"]] = spec["arguments"]["columns"]
    assert {m: tuple(c) for m, c in listed.items()} == dbt_failures.not_null_columns()
    assert sum(map(len, listed.values())) == 207  # the 207 per-column tests of 2026-12-06
    assert listed["dim_models"][0] == "model" and "value" in listed["stg_task_benchmarks"]


@pytest.mark.slow
def test_a_failed_dbt_test_says_what_it_means_for_the_data(tmp_path: Path) -> None:
    """Two unit_labels sources labelling the same units: a data problem dbt's test catches."""
    lake = tmp_path / "lake"
    for source in ("first", "second"):
        write_partition(
            lake,
            "unit_labels",
            {"source": source},
            pa.table(
                {
                    "model": ["m1", "m1"],
                    "layer": ["layer4", "layer4"],
                    "unit": [0, 1],
                    "concept": ["red", "disc"],
                    "category": ["color", "object"],
                    "iou": [0.1, 0.2],
                }
            ),
        )
    code, out = lce("build", "--lake", lake, "--db", tmp_path / "lce.duckdb")
    flat = " ".join(out.split())
    assert code != 0
    assert "one unit (model, layer, unit) is labelled twice" in flat, flat
    assert "Failure in test unique_combination_" in flat  # dbt's name still there, for the log
    assert not (tmp_path / "lce.duckdb").exists()


@pytest.mark.slow
def test_a_null_in_a_column_that_must_have_none_is_named(tmp_path: Path) -> None:
    """One not_null_columns test checks a model's columns; the build's message still names the
    column, read from the failed build's file."""
    lake = tmp_path / "lake"
    row = {"model": ["m1", "m2"], "task": ["cls"] * 2, "dataset": ["d"] * 2, "metric": ["acc"] * 2}
    write_partition(
        lake,
        "task_benchmarks",
        {"source": "mine"},
        pa.table({**row, "value": [0.5, None], "higher_is_better": [True, True]}),
    )
    code, out = lce("build", "--lake", lake, "--db", tmp_path / "lce.duckdb")
    flat = " ".join(out.split())
    assert code != 0
    assert "the lake's task_benchmarks.value has empty (null) values" in flat, flat
    assert "Failure in test not_null_columns_stg_task_benchmarks" in flat
    assert not (tmp_path / "lce.duckdb").exists()


# ---------------------------------------------------------------------------------------------
# The demo's home
# ---------------------------------------------------------------------------------------------


def test_demo_folder_follows_lce_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LCE_HOME", str(tmp_path / "home"))
    assert demo_dir() == tmp_path / "home" / "demo"
    monkeypatch.delenv("LCE_HOME")
    assert demo_dir() == Path("lce-data") / "demo"


@pytest.mark.slow
def test_one_network_dissected_twice_under_two_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The case as a user meets it: the same weights extracted under two names (real extraction,
    real dbt). Their profiles are identical, so the build publishes no component and says why."""
    from extract.engine import ExtractConfig, run_extract
    from tests.probe_factory import make_probe

    monkeypatch.syspath_prepend(str(REPO / "tests"))
    probe = make_probe(tmp_path / "broden", n_images=8).root
    for name in ("first", "second"):
        run_extract(
            ExtractConfig(model="probe_factory:small_cnn", layers=["block2"], probe=probe,
                          lake=tmp_path / "lake", name=name, batch_size=4, progress=False,
                          quantile=0.05)
        )  # fmt: skip
    db = tmp_path / "lce.duckdb"
    code, out = lce("build", "--lake", tmp_path / "lake", "--db", db, "--var", "min_iou=0.01")
    assert code == 0, out
    profiles = rows(db, "select model, concept, weight from fct_concept_profiles order by all")
    by_model = {m: [(c, w) for mm, c, w in profiles if mm == m] for m in ("first", "second")}
    assert by_model["first"] and by_model["first"] == by_model["second"]
    assert rows(db, "select count(*) from fct_lce_components") == [(0,)]
    codes = {c for (c,) in rows(db, "select code from fct_build_notes")}
    assert "identical_profiles" in codes
