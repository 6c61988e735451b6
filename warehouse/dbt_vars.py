"""The build's dbt vars, declared once: name, kind, bounds, default and what each means.

Three readers share this spec, so a var cannot mean one thing to ``lce build`` and another to
the marts: ``lce build --var key=value`` checks values with :func:`check` before dbt runs (a bad
value is refused in one line and the published file is left as it was); the dbt Python models
parse what dbt hands them (text) with :func:`from_dbt`, for ``dbt build`` run by hand; and
tests/test_dbt_vars.py keeps ``dbt_project.yml``'s defaults and the guide's vars table equal to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True)
class Var:
    name: str
    kind: str  # "integer", "number", "choice", "count_or_auto" or "models"
    default: Any
    description: str
    least: float | None = None  # inclusive lower bound
    below: float | None = None  # exclusive upper bound
    above: float | None = None  # exclusive lower bound
    choices: tuple[str, ...] = ()

    def expected(self) -> str:
        """What a valid value is, in the words of an error message."""
        if self.kind == "integer":
            return f"an integer >= {self.least:g}"
        if self.kind == "count_or_auto":
            return "a positive integer or 'auto'"
        if self.kind == "choice":
            return " or ".join(f"'{c}'" for c in self.choices)
        if self.kind == "models":
            return "a list of model names"
        low = f"[{self.least:g}" if self.least is not None else f"({self.above:g}"
        return f"a number in {low}, {self.below:g})"


SPEC: dict[str, Var] = {
    v.name: v
    for v in (
        Var("min_iou", "number", 0.04, "a unit is interpretable when its best IoU exceeds this",
            least=0, below=1),
        Var("exclude_models", "models", None, "models left out of the embedding; unset: the "
            "lake's model_exclusions apply; a list (even []) replaces them"),
        Var("n_components", "integer", 3, "PCA components", least=1),
        Var("n_categories", "count_or_auto", 3, "k of k-means, or 'auto' (best silhouette)"),
        Var("interpretable_rule", "choice", "fixed", "which units count as interpretable",
            choices=("fixed", "null")),
        Var("n_boot", "integer", 1000, "bootstrap resamples of the models behind each "
            "correlation's 95% interval", least=1),
        Var("seed", "integer", 0, "seed of every resampling and permutation of the build",
            least=0),
        Var("q_threshold", "number", 0.05, "a correlation is significant when its BH q is "
            "below this", above=0, below=1),
        Var("fdr_family", "choice", "build", "what Benjamini-Hochberg corrects over",
            choices=("build", "task")),
        Var("stability_resamples", "integer", 200, "unit-bootstrap resamples behind the "
            "stability and interval marts", least=1),
        Var("similarity_k", "integer", 10, "k of the mutual k-nearest-neighbour alignment",
            least=1),
        Var("similarity_min_images", "integer", 50, "the fewest probe images two models must "
            "share to be compared", least=4),
        Var("similarity_permutations", "integer", 999, "model relabellings behind the "
            "similarity agreement's permutation p", least=1),
        Var("similarity_null_permutations", "integer", 99, "permutations of the image "
            "correspondence behind fct_model_similarity's null, p_value and calibrated score",
            least=1),
        Var("match_permutations", "integer", 999, "label shufflings behind "
            "fct_unit_match_agreement's baseline and p_value", least=1),
    )
}  # fmt: skip


def check(name: str, value: Any) -> Any:
    """``value`` (as YAML reads it) checked against the spec; ValueError names the var."""
    var = SPEC[name]
    bad = ValueError(f"{name} must be {var.expected()}")
    if var.kind == "models":
        if value is None:
            return []
        if isinstance(value, str):
            return [m.strip() for m in value.split(",") if m.strip()]
        if isinstance(value, list) and all(isinstance(m, str) for m in value):
            return value
        raise bad
    if var.kind == "choice":
        value = "null" if value is None and "null" in var.choices else value  # YAML's bare null
        if value not in var.choices:
            raise bad
        return value
    if var.kind == "count_or_auto" and value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad
    if var.kind in ("integer", "count_or_auto"):
        least = 1 if var.kind == "count_or_auto" else var.least
        if not isinstance(value, int) or (least is not None and value < least):
            raise bad
        return value
    number = float(value)
    in_range = (
        math.isfinite(number)
        and (var.least is None or number >= var.least)
        and (var.above is None or number > var.above)
        and (var.below is None or number < var.below)
    )
    if not in_range:
        raise bad
    return number


def from_dbt(name: str, value: Any) -> Any:
    """A var as a dbt Python model receives it (text, maybe quoted; None when unset: the
    default), checked like ``lce build --var``. ValueError says ``dbt var NAME: got ...``."""
    text = "" if value is None else str(value).strip().strip("'\"")
    if text in ("", "None"):
        return check(name, SPEC[name].default)
    parsed = yaml.safe_load(text)
    try:
        return check(name, parsed)
    except ValueError:
        raise ValueError(
            f"dbt var {name}: got {value!r}, expected {SPEC[name].expected()}"
        ) from None
