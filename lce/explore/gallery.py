"""The Gallery page: a layer's units as tiles, strongest IoU first, with their top images
(the tiles themselves come from ``lce.explore.images.unit_tiles``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from lce.explore.images import NO_CONCEPT, TOP_IMAGES
from warehouse.query import query

GALLERY_PAGE_SIZE = 24
# One unit a row with its (usually five) top images side by side: 5 x 180 px fit the main column
# of a 1400 px wide window beside the sidebar.
GALLERY_IMAGE_PX = 180


def gallery_units(
    db: Path,
    model: str,
    layer: str,
    concept: str = "",
    categories: Sequence[str] | None = None,
    min_iou: float = 0.0,
) -> pl.DataFrame:
    """A layer's units for the gallery, strongest IoU first (background units last), with how
    many top images each has: filtered by concept (substring), categories and minimum IoU."""
    counts = (
        f"select unit, count(*) as n_images from {TOP_IMAGES} "
        "where model = ? and layer = ? group by unit"
    )
    sql = f"""
        select l.unit, l.concept, l.category, l.iou, l.is_interpretable,
               coalesce(t.n_images, 0) as n_images
        from fct_unit_labels l left join ({counts}) t using (unit)
        where l.model = ? and l.layer = ? and coalesce(l.iou, 0) >= ?
    """
    params: list[Any] = [model, layer, model, layer, float(min_iou)]
    if categories is not None:
        sql += " and list_contains(?, l.category)"
        params.append(list(categories))
    if concept.strip():
        sql += " and contains(lower(l.concept), lower(?))"
        params.append(concept.strip())
    sql += " order by l.concept is null, l.iou desc nulls last, l.unit"
    return query(db, sql, params)


def unit_tile_caption(row: dict[str, Any]) -> str:
    """'12: car (object), IoU 0.206' for a gallery tile (no 'None' anywhere)."""
    concept = NO_CONCEPT if row["concept"] is None else row["concept"]
    category = "" if row["category"] is None else f" ({row['category']})"
    iou = "" if row["iou"] is None else f", IoU {row['iou']:.3f}"
    return f"unit {row['unit']}: {concept}{category}{iou}"
