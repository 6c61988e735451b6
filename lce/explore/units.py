"""The Units page: a dissected layer's units with their best concept and IoU, filtered, and one
unit's top images (fct_unit_top_images) with the probe folder they come from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from lce.explore.images import NO_CATEGORY, NO_CONCEPT, TOP_IMAGES
from lce.explore.palette import concept_category_sort_key
from warehouse.query import query


def unit_layers(db: Path) -> pl.DataFrame:
    """Every dissected (model, layer), primary layers first."""
    return query(
        db,
        """
        select model, layer, bool_or(is_primary_layer) as is_primary_layer,
               count(*) as units, count(*) filter (where is_interpretable) as interpretable
        from fct_unit_labels group by model, layer
        order by model, not bool_or(is_primary_layer), layer
        """,
    )


def unit_categories(db: Path, model: str, layer: str) -> list[str]:
    frame = query(
        db,
        """
        select distinct category from fct_unit_labels
        where model = ? and layer = ? and category is not null
        """,
        [model, layer],
    )
    return sorted(frame["category"].to_list(), key=concept_category_sort_key)


def units(
    db: Path,
    model: str,
    layer: str,
    categories: Sequence[str] | None = None,
    min_iou: float = 0.0,
    interpretable_only: bool = False,
    search: str = "",
) -> pl.DataFrame:
    """A layer's units with label, category and IoU, filtered; strongest IoU first. With fold
    tallies (``lce extract --folds K``) each unit also has its label stability: the share of the
    leave-one-fold-out labels that agree with its label, and the jackknife 95% interval of its
    IoU (fct_unit_label_stability); null where its run kept no folds."""
    sql = """
        select l.unit, l.concept, l.category, l.iou, l.is_interpretable,
               s.agreement as label_kept, s.iou_low, s.iou_high
        from fct_unit_labels l
        left join fct_unit_label_stability s
            on s.model = l.model and s.layer = l.layer and s.unit = l.unit
        where l.model = ? and l.layer = ? and coalesce(l.iou, 0) >= ?
    """
    params: list[Any] = [model, layer, float(min_iou)]
    if interpretable_only:
        sql += " and l.is_interpretable"
    if categories is not None:
        sql += " and list_contains(?, l.category)"
        params.append(list(categories))
    if search.strip():
        sql += " and contains(lower(l.concept), lower(?))"
        params.append(search.strip())
    # Units whose best match is the background (null concept, often IoU 1.0 on a random
    # network) go after the units with a concept, not first.
    sql += " order by l.concept is null, l.iou desc nulls last, l.unit"
    return query(db, sql, params)


def units_for_display(frame: pl.DataFrame) -> pl.DataFrame:
    """The units table as users read it: a unit whose best match is the background (label
    ``-``, a null concept in the warehouse) says so instead of "None"; the label stability
    columns are left out where no unit has them (a run without fold tallies)."""
    out = frame
    # Label stability columns only where the layer's run kept fold tallies.
    stability = [c for c in ("label_kept", "iou_low", "iou_high") if c in out.columns]
    if stability and out.select(pl.col(stability[0]).is_null().all()).item():
        out = out.drop(stability)
    if "concept" in out.columns:
        out = out.with_columns(pl.col("concept").fill_null(NO_CONCEPT))
    if "category" in out.columns:
        out = out.with_columns(pl.col("category").fill_null(NO_CATEGORY))
    return out


def unit_link(params: dict[str, str], layers: pl.DataFrame) -> dict[str, Any] | None:
    """The Units page's widget state for a link ``?model=&layer=&unit=`` (from a Gallery or
    Concept tile); None when the link names no dissected (model, layer) or no unit number."""
    model, layer, unit = params.get("model"), params.get("layer"), params.get("unit")
    if model is None or layer is None or unit is None or not unit.strip().isdigit():
        return None
    known = set(zip(layers["model"].to_list(), layers["layer"].to_list(), strict=True))
    if (model, layer) not in known:
        return None
    return {"units_model": model, "units_layer": layer, "units_unit": int(unit)}


# The Units page's filters a link sets back to their defaults so the linked unit is in view (the
# categories too: they are reset with the model and layer).
UNIT_FILTER_DEFAULTS: dict[str, Any] = {
    "units_min_iou": 0.0,
    "units_search": "",
    "units_interpretable": False,
}


def unit_caption(frame: pl.DataFrame, unit: int) -> str:
    """'car (object), IoU 0.206' for a unit picker."""
    row = frame.filter(pl.col("unit") == unit).row(0, named=True)
    if row["concept"] is None:
        return NO_CONCEPT
    iou = "" if row["iou"] is None else f", IoU {row['iou']:.3f}"
    return f"{row['concept']} ({row['category']}){iou}"


def top_images(db: Path, model: str, layer: str, unit: int) -> pl.DataFrame:
    """The unit's top images (empty when the engine stored none)."""
    return query(
        db,
        f"""
        select rank, image, max_activation from {TOP_IMAGES}
        where model = ? and layer = ? and unit = ? order by rank
        """,
        [model, layer, unit],
    )


def top_image_layers(db: Path) -> pl.DataFrame:
    """The (model, layer)s the lake stored top images for, and how many of their units."""
    return query(
        db,
        f"""
        select model, layer, count(distinct unit) as units from {TOP_IMAGES}
        group by model, layer order by model, layer
        """,
    )


def top_image_units(db: Path, model: str, layer: str) -> list[int]:
    """Units of one layer that have top images."""
    frame = query(
        db,
        f"select distinct unit from {TOP_IMAGES} where model = ? and layer = ? order by unit",
        [model, layer],
    )
    return [int(u) for u in frame["unit"].to_list()]


def unit_threshold(db: Path, model: str, layer: str, unit: int) -> float | None:
    """The unit's threshold T (for a unit with top images: the mart carries it)."""
    frame = query(
        db,
        f"select threshold from {TOP_IMAGES} where model = ? and layer = ? and unit = ? limit 1",
        [model, layer, unit],
    )
    if frame.is_empty() or frame["threshold"][0] is None:
        return None
    return float(frame["threshold"][0])


def unit_matches(db: Path, model: str, layer: str, unit: int) -> pl.DataFrame:
    """The unit's best match in each other model (fct_unit_matches), strongest r first, with
    the matched unit's concept (null when it is not interpretable) and layer."""
    return query(
        db,
        """
        select other_model, other_unit, r, mutual, other_concept, other_layer
        from fct_unit_matches where model = ? and layer = ? and unit = ?
        order by r desc, other_model
        """,
        [model, layer, unit],
    )
