"""How the pages name things: task families, results, components and concepts, in one order.

A name shown on two pages comes from one function here, so the Tasks and Compare pages (and the
tests) agree on what 'Few-shot classification' or 'food (material)' is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import polars as pl

TASK_ORDER = (
    "many_shot_linear",
    "few_shot",
    "detection_frozen",
    "detection_finetuned",
    "surface_normals",
)
TASK_NAMES = {
    "many_shot_linear": "Many-shot linear classification",
    "few_shot": "Few-shot classification",
    "detection_frozen": "Detection (frozen backbone)",
    "detection_finetuned": "Detection (fine-tuned backbone)",
    "surface_normals": "Surface normal estimation",
}


def task_title(task: str) -> str:
    """A task family as people name it ('many_shot_linear' -> 'Many-shot linear
    classification'); an unknown identifier gets its underscores turned into spaces."""
    if task in TASK_NAMES:
        return TASK_NAMES[task]
    text = task.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def natural_key(text: str | None) -> tuple[tuple[int, float, str], ...]:
    """Numbers inside a name compare as numbers ('5-shot' < '20-shot' < '50-shot')."""
    parts = re.split(r"(\d+(?:\.\d+)?)", text or "")
    return tuple(
        (0, float(p), "") if i % 2 else (1, 0.0, p.lower()) for i, p in enumerate(parts) if p
    )


def sort_results(frame: pl.DataFrame, *then: str) -> pl.DataFrame:
    """Rows in result order ('Avg.' last, datasets and metrics in natural order), then ``then``."""
    keys = sorted(
        {
            (d, m)
            for d, m in zip(frame["dataset"].to_list(), frame["metric"].to_list(), strict=True)
        },
        key=lambda dm: (dm[0] == "Avg.", natural_key(dm[0]), natural_key(dm[1])),
    )
    rank = {dm: i for i, dm in enumerate(keys)}
    order = pl.Series(
        "_result_rank",
        [rank[(d, m)] for d, m in zip(frame["dataset"].to_list(), frame["metric"].to_list(),
                                      strict=True)],
    )  # fmt: skip
    return (
        frame.with_columns(order)
        .sort(["_result_rank", *then], maintain_order=True)
        .drop("_result_rank")
    )


def task_sort_key(task: str) -> tuple[int, str]:
    return (TASK_ORDER.index(task), "") if task in TASK_ORDER else (len(TASK_ORDER), task)


def component_label(component: int, evr: float | None = None) -> str:
    """'PC1 (60.7% of variance)': the explained variance goes on every axis that shows a PC."""
    if evr is None or (isinstance(evr, float) and math.isnan(evr)):
        return f"PC{component}"
    return f"PC{component} ({100 * evr:.1f}% of variance)"


def concept_labels(concepts: Sequence[str], categories: Sequence[str | None]) -> list[str]:
    """Concept names, with the category appended where one name has two (Broden's food)."""
    seen: dict[str, set[str | None]] = {}
    for concept, category in zip(concepts, categories, strict=True):
        seen.setdefault(concept, set()).add(category)
    return [
        f"{concept} ({category})" if len(seen[concept]) > 1 else concept
        for concept, category in zip(concepts, categories, strict=True)
    ]


def result_label(dataset: str, metric: str, datasets: int, metrics: int) -> str:
    """Name a task result by what varies within its family (dataset, metric or both)."""
    if metrics == 1:
        return dataset
    if datasets == 1:
        return metric
    return f"{dataset} · {metric}"


def with_result_labels(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with a ``result`` column naming each row's (dataset, metric) by what varies."""
    datasets, metrics = frame["dataset"].n_unique(), frame["metric"].n_unique()
    labels = [
        result_label(d, m, datasets, metrics)
        for d, m in zip(frame["dataset"].to_list(), frame["metric"].to_list(), strict=True)
    ]
    return frame.with_columns(pl.Series("result", labels, dtype=pl.String))


PART_SUFFIXES = (
    "Part concepts carry the object they belong to and a suffix for where: -t top, -b bottom, "
    "-l left, -r right (ceiling-b: the bottom of a ceiling); a name used in two categories "
    "shows its category in brackets, e.g. food (material)."
)


def with_concept_labels(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with ``concept`` replaced by its disambiguated label ('food (material)' where
    the name is in two categories), as every figure shows it."""
    labels = concept_labels(frame["concept"].to_list(), frame["category"].to_list())
    return frame.with_columns(pl.Series("concept", labels, dtype=pl.String))


# Table columns as readers name them; exports and the SQL page keep the identifiers.
COLUMN_LABELS = {
    "model_a": "model A",
    "model_b": "model B",
    "linear_cka": "linear CKA",
    "debiased_cka": "debiased CKA",
    "mutual_knn": "mutual k-NN",
    "n_pairs": "pairs",
    "n_models": "models",
    "n_units": "units",
    "n_images": "images",
    "n_permutations": "relabellings",
    "rank_gap": "rank gap (geometric - concept)",
    "category_label": "category",
    "higher_is_better": "higher is better",
    "iou": "IoU",
    "mae_mean": "MAE of the mean",
    "skill_knn": "skill (kNN)",
    "skill_ridge": "skill (ridge)",
    "skill_category": "skill (category mean)",
    "p_value": "p",
    "q_value": "q (BH)",
    "cosine_distance": "cosine distance",
}
# Small probabilities read better with significant digits than with three decimals.
SIGNIFICANT_COLUMNS = frozenset({"p_value", "q_value", "p", "q"})


def column_label(column: str) -> str:
    """'n_pairs' -> 'pairs', 'rank_gap' -> 'rank gap (geometric - concept)', any other
    identifier without a count's or flag's prefix and with its underscores as spaces
    ('n_skipped_images' -> 'skipped images', 'is_primary_layer' -> 'primary layer')."""
    if column in COLUMN_LABELS:
        return COLUMN_LABELS[column]
    for prefix in ("n_", "is_"):
        if column.startswith(prefix) and len(column) > len(prefix):
            column = column[len(prefix) :]
    return column.replace("_", " ")


def number_format(column: str) -> str:
    """One format for the decimals of every table: three decimals, p and q values three
    significant digits (a q of 0.00004 is not 0.000)."""
    return "%.3g" if column in SIGNIFICANT_COLUMNS else "%.3f"
