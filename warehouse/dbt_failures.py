"""What a failed dbt test means for the user's data, in one sentence.

dbt's tests are the warehouse's last line of defence: an ordinary study should never reach
them (the marts handle degenerate studies themselves and say so in fct_build_notes). When one
does fail, ``lce build`` reports what the failure means, not only dbt's name for the test
(``value_between_fct_lce_components_explained_variance_ratio__1__0``).

dbt names a generic test ``<test>_<model>_<column>__<arguments>`` (names of 64 characters or
more are cut to 30 and given a hash); ``parse_test_name`` recovers the three parts where it
can, and ``explain`` looks them up in ``MEANINGS``, falling back to a sentence per kind of test.

The columns that must hold no null are checked by one ``not_null_columns`` test per model (one
test node per column cost a fifth of a small build; docs/NOTES.md), whose name carries no
column. Given the failed build's work file, ``explain`` finds the column by querying it and
then answers as a per-column ``not_null`` test would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import duckdb
import yaml

from warehouse.paths import dbt_project_dir

KINDS = (
    "not_null_columns",  # before "not_null", whose prefix it shares
    "unique_combination",
    "expression_is_true",
    "accepted_values",
    "relationships",
    "value_between",
    "not_null",
    "unique",
)
_FAILED_TEST = re.compile(r"(?:Failure|Error) in test (\S+)")
BUG = "a bug in lce, not a problem with your data: please report it with the log"

_TWICE = (
    "one unit (model, layer, unit) is labelled twice: two lake sources describe the same model "
    "and layer (two unit_labels sources, e.g. one study loaded under two source names); keep "
    "one of them"
)
# (model, column or None, kind or None) -> what a failure means. Most specific key wins.
MEANINGS: dict[tuple[str, str | None, str | None], str] = {
    ("fct_lce_components", "explained_variance_ratio", None): (
        "the embedding's explained variance is not a share between 0 and 1 (NaN): the concept "
        "profiles could not be decomposed; lce leaves out components that do not exist, so "
        f"this is {BUG}"
    ),
    ("fct_lce", "value", None): (f"a model's score on an LCE component is missing (NaN); {BUG}"),
    ("fct_component_loadings", "loading", None): (
        f"a concept's loading on an LCE component is missing (NaN); {BUG}"
    ),
    ("fct_model_distances", "cosine_distance", None): (
        f"a cosine distance between two concept profiles is not in [0, 2]; {BUG}"
    ),
    ("fct_component_task_correlations", "pearson_r", None): (
        f"a component / task correlation is not in [-1, 1]; {BUG}"
    ),
    ("fct_unit_labels", None, "unique_combination"): _TWICE,
    ("int_unit_labels", None, "unique_combination"): _TWICE,
    ("int_unit_labels_from_tallies", None, "unique_combination"): (
        "the lake's unit_concept_tally describes one unit (model, layer, unit) twice: re-run "
        "`lce extract` for that model"
    ),
    ("fct_unit_labels", "iou", "value_between"): (
        "a unit's IoU is outside [0, 1]: the lake's unit_labels or unit_concept_tally hold a "
        "value that is not an IoU"
    ),
    ("fct_task_benchmarks", None, "unique_combination"): (
        "two task results have the same model, task, dataset and metric: two benchmark sources "
        "(folders of lake/task_benchmarks) report the same result; keep one of them"
    ),
    ("fct_task_benchmarks", "value", "not_null"): (
        "a task result has no value: a benchmark source holds an empty value"
    ),
    ("fct_concept_profiles", None, "unique_combination"): (
        f"a model's concept profile counts one concept twice; {BUG}"
    ),
    ("dim_models", "model", None): (
        "a model name is empty or appears twice in dim_models: check the model names in the "
        "lake's runs, unit_labels and task_benchmarks"
    ),
    ("dim_models", None, "expression_is_true"): (
        f"a model's in_embedding flag disagrees with its excluded_reason; {BUG}"
    ),
    ("dim_model_categories", "model", None): (f"a model has no or two categories; {BUG}"),
    ("fct_lce", "model", "relationships"): (
        f"a model in the embedding is missing from dim_models; {BUG}"
    ),
}

GENERIC = {
    "not_null": "{where} has empty (null) values",
    "unique": "{where} repeats a value that must be unique",
    "unique_combination": "{where} has two rows for the same key",
    "value_between": "{where} has values outside their valid range",
    "relationships": "{where} names rows that the table it refers to does not have",
    "expression_is_true": "{where} breaks one of its consistency rules",
    "accepted_values": "{where} holds a value outside its allowed set",
}


@dataclass(frozen=True)
class FailedTest:
    kind: str | None
    model: str | None
    column: str | None


@lru_cache(maxsize=1)
def known_models() -> tuple[str, ...]:
    """The dbt project's model names (file stems), longest first so prefixes do not win."""
    stems = {
        path.stem
        for pattern in ("*.sql", "*.py")
        for path in (dbt_project_dir() / "models").rglob(pattern)
    }
    return tuple(sorted(stems, key=lambda s: (-len(s), s)))


def parse_test_name(name: str) -> FailedTest:
    """``value_between_fct_lce_components_explained_variance_ratio__1__0`` -> its parts.

    For a column test the column is what follows the model up to the first ``__`` (the
    arguments); a model-level test (unique_combination, expression_is_true) has no column.
    """
    kind = next((k for k in KINDS if name.startswith(f"{k}_")), None)
    if kind is None:
        return FailedTest(None, None, None)
    rest = name[len(kind) + 1 :]
    model = next((m for m in known_models() if rest == m or rest.startswith(f"{m}_")), None)
    if model is None:
        return FailedTest(kind, None, None)
    column = None
    if kind not in ("unique_combination", "expression_is_true", "not_null_columns"):
        column = rest[len(model) + 1 :].split("__")[0] or None
    return FailedTest(kind, model, column)


@lru_cache(maxsize=1)
def not_null_columns() -> dict[str, tuple[str, ...]]:
    """model -> the columns its ``not_null_columns`` test lists, from the project's YAML files."""
    found: dict[str, tuple[str, ...]] = {}
    for path in sorted((dbt_project_dir() / "models").rglob("*.yml")):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models") or []:
            for test in model.get("data_tests") or []:
                if isinstance(test, dict) and "not_null_columns" in test:
                    found[model["name"]] = tuple(test["not_null_columns"]["arguments"]["columns"])
    return found


def null_column(db: Path, model: str) -> str | None:
    """The first column of ``model`` in ``db`` that its not_null_columns test lists and that
    holds a null; None when there is none or the file cannot be read."""
    try:
        with duckdb.connect(str(db), read_only=True) as conn:
            for column in not_null_columns().get(model, ()):
                sql = f'select count(*) from "{model}" where "{column}" is null'
                row = conn.execute(sql).fetchone()
                if row and row[0]:
                    return column
    except duckdb.Error:
        return None
    return None


def explain(line: str, db: Path | None = None) -> str | None:
    """What the failed test named in dbt's ``Failure in test ...`` line means, or None.
    ``db``: the failed build's work file, where a not_null_columns failure finds its column."""
    found = _FAILED_TEST.search(line)
    if not found:
        return None
    test = parse_test_name(found.group(1))
    kind = test.kind
    if kind is None:
        return None
    if kind == "not_null_columns":  # answered as the per-column not_null test would be
        kind = "not_null"
        column = null_column(db, test.model) if db is not None and test.model else None
        test = FailedTest(kind, test.model, column)
    if test.model is not None:
        for key in (
            (test.model, test.column, test.kind),
            (test.model, test.column, None),
            (test.model, None, test.kind),
        ):
            if key in MEANINGS:
                return MEANINGS[key]
    if test.model is None:
        where = "a warehouse table"
    elif test.model.startswith("stg_"):  # staging models are typed reads of one lake table
        where = f"the lake's {test.model[4:]}" + (f".{test.column}" if test.column else "")
    elif test.column is None:
        where = f"the table {test.model}"
    else:
        where = f"{test.model}.{test.column}"
    return GENERIC[kind].format(where=where)
