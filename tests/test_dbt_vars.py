"""One var spec (warehouse/dbt_vars.py) for lce build's check, the marts' Python models and the
docs: dbt_project.yml's defaults and the guide's vars table must say what the spec says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from warehouse import dbt_vars

REPO = Path(__file__).resolve().parents[1]


def test_dbt_project_defaults_are_the_spec() -> None:
    project = yaml.safe_load((REPO / "dbt_project" / "dbt_project.yml").read_text())
    assert project["vars"] == {name: var.default for name, var in dbt_vars.SPEC.items()}


def test_every_var_the_marts_read_is_forwarded_once() -> None:
    """The Python models read vars with dbt.config.get; the marts' YAML writes the forwarding
    once (the anchor &mart_vars) and gives it to every Python mart by alias."""
    marts = REPO / "dbt_project" / "models" / "marts"
    read = set()
    for path in marts.glob("*.py"):
        read |= set(re.findall(r'dbt\.config\.get\("([a-z_]+)"\)', path.read_text()))
    text = (marts / "_marts.yml").read_text()
    assert text.count("var('") == len(set(re.findall(r"var\('([a-z_]+)'\)", text)))  # once each
    entries = {m["name"]: m for m in yaml.safe_load(text)["models"]}
    for path in marts.glob("*.py"):
        config = entries[path.stem].get("config", {})
        assert set(re.findall(r'dbt\.config\.get\("([a-z_]+)"\)', path.read_text())) <= set(config)
    assert read and read <= set(dbt_vars.SPEC)


def guide_table() -> dict[str, str]:
    text = (REPO / "docs" / "guide.md").read_text()
    section = text[text.index("### dbt vars") :]
    section = section[: section.index("\n### ", 1)]
    return dict(re.findall(r"(?m)^\| `([a-z_]+)` \| ([^|]+?) \|", section))


def test_the_guide_documents_every_var_with_its_default() -> None:
    table = guide_table()
    assert list(table) == list(dbt_vars.SPEC)
    for name, var in dbt_vars.SPEC.items():
        shown = table[name].strip("` ")
        expected = "unset" if var.default is None else str(var.default)
        assert shown == expected, (name, shown, expected)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("min_iou", 0.1, 0.1), ("min_iou", 0, 0.0), ("n_components", 2, 2),
        ("n_categories", "auto", "auto"), ("n_categories", 4, 4), ("seed", 0, 0),
        ("q_threshold", 0.2, 0.2), ("fdr_family", "task", "task"),
        ("interpretable_rule", None, "null"), ("exclude_models", "a, b", ["a", "b"]),
        ("exclude_models", None, []), ("similarity_min_images", 4, 4),
    ],
)  # fmt: skip
def test_check_accepts(name: str, value: object, expected: object) -> None:
    assert dbt_vars.check(name, value) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("min_iou", 1), ("min_iou", -0.1), ("min_iou", True), ("min_iou", "x"),
        ("min_iou", float("nan")), ("n_components", 0), ("n_components", 1.5),
        ("n_categories", 0), ("n_categories", "many"), ("seed", -1), ("q_threshold", 0),
        ("q_threshold", 1), ("fdr_family", "model"), ("interpretable_rule", "loose"),
        ("exclude_models", [1]), ("similarity_min_images", 3), ("n_boot", 0),
    ],
)  # fmt: skip
def test_check_refuses_naming_the_var(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be "):
        dbt_vars.check(name, value)


def test_from_dbt_reads_text_and_defaults() -> None:
    assert dbt_vars.from_dbt("n_boot", "200") == 200
    assert dbt_vars.from_dbt("n_boot", None) == 1000
    assert dbt_vars.from_dbt("fdr_family", "'task'") == "task"
    assert dbt_vars.from_dbt("q_threshold", "0.1") == 0.1
    assert dbt_vars.from_dbt("n_categories", "auto") == "auto"
    with pytest.raises(ValueError, match="dbt var n_boot: got '1.5'"):
        dbt_vars.from_dbt("n_boot", "1.5")
