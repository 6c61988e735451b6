"""`lce summary`'s correlations: only what survives the correction, counted from the file with
plain SQL; a study without task results publishes the task correlation marts empty and says why.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from tests.conftest import lce, needs_reference
from tests.toy_lake import make_toy_lake
from warehouse.lake import write_partition

TASK_MARTS = (
    "fct_component_task_correlations",
    "fct_category_task_correlations",
    "fct_concept_task_correlations",
)


def count(db: Path, sql: str) -> int:
    with duckdb.connect(str(db), read_only=True) as conn:
        return int(conn.execute(sql).fetchone()[0])


@needs_reference
def test_summary_lists_only_what_survives(reference_home: Path) -> None:
    db = reference_home / "lce.duckdb"
    code, out = lce("summary", "--db", db)
    assert code == 0, out
    flat = " ".join(out.split())
    tests = count(db, "select count(p_value) from fct_component_task_correlations")
    kept = count(db, "select count(*) from fct_component_task_correlations where q_value < 0.05")
    assert tests == 108
    assert (
        f"{kept} of {tests} component / task correlations survive Benjamini-Hochberg at q < 0.05"
        in flat
    )
    cat_tests = count(db, "select count(p_value) from fct_category_task_correlations")
    cat_kept = count(db, "select count(*) from fct_category_task_correlations where significant")
    assert f"{cat_kept} of {cat_tests} concept category / task correlations survive" in flat
    with duckdb.connect(str(db), read_only=True) as conn:
        shown = conn.execute(
            "select dataset, round(pearson_r, 3) from fct_component_task_correlations "
            "where q_value < 0.05"
        ).fetchall()
        hidden = conn.execute(
            "select dataset from fct_component_task_correlations "
            "where p_value < 0.05 and q_value >= 0.05 and task = 'many_shot_linear'"
        ).fetchall()
    for dataset, r in shown:
        assert f"{dataset} " in out and f"{r:.3f}" in out
    # raw p < 0.05 alone is not enough to be listed
    table = out.split("that survive", 1)[1].split("What each task family", 1)[0]
    for (dataset,) in hidden:
        assert f": {dataset} " not in table, dataset
    assert "What each task family requires" in out


@pytest.mark.slow
def test_no_task_results_gives_empty_marts_and_a_reason(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    make_toy_lake(lake)
    empty = pa.table(
        {
            "model": pa.array([], pa.string()),
            "task": pa.array([], pa.string()),
            "dataset": pa.array([], pa.string()),
            "metric": pa.array([], pa.string()),
            "value": pa.array([], pa.float64()),
            "higher_is_better": pa.array([], pa.bool_()),
        }
    )
    write_partition(lake, "task_benchmarks", {"source": "toy"}, empty)
    db = tmp_path / "lce.duckdb"
    code, out = lce("build", "--lake", lake, "--db", db)
    assert code == 0, out
    assert count(db, "select count(*) from fct_task_benchmarks") == 0
    for mart in TASK_MARTS:
        assert count(db, f"select count(*) from {mart}") == 0, mart
    # the components still meet the concept categories
    assert count(db, "select count(*) from fct_component_category_correlations") > 0
    code, out = lce("summary", "--db", db)
    assert code == 0, out
    flat = " ".join(out.split())
    assert "no task results in this warehouse" in flat and "lce benchmarks add" in flat
    assert "component / task correlations survive" not in flat
