"""The app's contract is the marts: the explorer and `lce summary` read no staging or
intermediate relation.

dbt's staging (``stg_*``) and intermediate (``int_*``) models are the warehouse's inside; only
the marts in ``warehouse.query.MARTS`` are documented, tested and kept stable, as jaffle-shop's
consumers read marts only. The check reads every string literal of the code that queries for
the app (``lce/explore/``, ``lce/summary.py``, ``app.py``, ``app_pages/``) with the ast module,
docstrings aside, so a query text built in pieces or kept in a constant counts as much as one
written inline.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from warehouse.query import MARTS

REPO = Path(__file__).resolve().parents[1]
APP_CODE = ["lce/explore", "lce/report", "lce/summary.py", "app.py", "app_pages"]
INSIDE = re.compile(r"\b(?:stg|int)_[a-z0-9_]+\b")
MART_NAME = re.compile(r"\b(?:fct|dim)_[a-z0-9_]+\b")


def app_files() -> Iterator[Path]:
    for name in APP_CODE:
        path = REPO / name
        yield from [path] if path.is_file() else sorted(path.rglob("*.py"))


def literals(source: str) -> Iterator[tuple[int, str]]:
    """(line, text) of every string literal except docstrings (which may name a staging model
    to say where a mart comes from); f-strings give their literal parts."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            yield node.lineno, node.value


def test_the_scan_finds_relations() -> None:
    """Guards the guard: a staging name in a query, inline or in an f-string, is seen; a
    docstring is not."""
    source = (
        '"""Reads stg_runs for the doc."""\n'
        'A = "select * from stg_runs"\n'
        'B = f"select * from {A} join int_unit_labels using (unit)"\n'
    )
    found = [name for _, text in literals(source) for name in INSIDE.findall(text)]
    assert found == ["stg_runs", "int_unit_labels"]
    assert len(list(app_files())) > 20


def test_the_app_reads_no_staging_or_intermediate_relation() -> None:
    wrong = sorted(
        f"{path.relative_to(REPO)}:{line} names {name}"
        for path in app_files()
        for line, text in literals(path.read_text(encoding="utf-8"))
        for name in INSIDE.findall(text)
    )
    assert not wrong, f"the app must read marts only (warehouse.query.MARTS): {wrong}"


def test_every_table_the_app_names_is_a_mart() -> None:
    """A fct_/dim_ name outside MARTS would be a relation outside the contract (or a typo)."""
    wrong = sorted(
        f"{path.relative_to(REPO)}:{line} names {name}"
        for path in app_files()
        for line, text in literals(path.read_text(encoding="utf-8"))
        for name in MART_NAME.findall(text)
        if name not in MARTS
    )
    assert not wrong, f"not in warehouse.query.MARTS: {wrong}"


def mart_docs() -> dict[str, dict]:
    """Every mart's YAML entry (name -> its model block) from dbt_project/models/marts."""
    import yaml

    entries: dict[str, dict] = {}
    for path in sorted((REPO / "dbt_project" / "models" / "marts").glob("*.yml")):
        for model in yaml.safe_load(path.read_text()).get("models", []):
            entries[model["name"]] = model
    return entries


def test_marts_list_is_the_marts_folder() -> None:
    """MARTS is written by hand for the app and the schema check: it must name every mart model
    in dbt_project/models/marts, and nothing else."""
    folder = REPO / "dbt_project" / "models" / "marts"
    models = {p.stem for p in folder.iterdir() if p.suffix in {".sql", ".py"}}
    assert set(MARTS) == models
    assert len(MARTS) == len(set(MARTS))


def test_every_marts_model_column_points_at_dim_models() -> None:
    """A model named in any mart is one dim_models knows (a dbt relationships test on each)."""
    missing = []
    for name, entry in mart_docs().items():
        for column in entry.get("columns", []):
            if column["name"] in {"model", "model_a", "model_b"} and name != "dim_models":
                tests = column.get("data_tests", [])
                if not any(isinstance(t, dict) and "relationships" in t for t in tests):
                    missing.append(f"{name}.{column['name']}")
    assert not missing, f"model columns without a relationships test to dim_models: {missing}"
    assert mart_docs()  # the YAML was read
