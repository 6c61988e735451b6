"""Gallery: a layer's units as tiles (label, IoU, top images with the unit's mask outlined)."""

from __future__ import annotations

import math

import streamlit as st

from lce import ui
from lce.explore.gallery import (
    GALLERY_IMAGE_PX,
    GALLERY_PAGE_SIZE,
    gallery_units,
    unit_tile_caption,
)
from lce.explore.images import (
    LOOKS,
    probe_dir_problem,
    top_maps_count,
)
from lce.explore.names import PART_SUFFIXES
from lce.explore.safe_text import md
from lce.explore.units import unit_categories, unit_layers
from lce.widget_state import reset_on_scope

db = ui.require_db()
st.title("Gallery")
st.markdown(
    "Network Dissection's view of a layer: every unit as a tile with the concept it detects "
    "best, its IoU, and the probe images it fires on most, the pixels where it fires "
    "(its activation upsampled to the label map, above its threshold: S > T) outlined in magenta "
    "or, NetDissect's look, with everything else darkened."
)
st.caption(PART_SUFFIXES)
layers = ui.load(unit_layers, db)
if layers.is_empty():
    ui.stop("No dissected units in this warehouse: run `lce extract`, then `lce build`.")

models = sorted(set(layers["model"].to_list()))
left, right = st.columns(2)
model = left.selectbox("Model", models, key="gallery_model")
layer = right.selectbox(
    "Layer", layers.filter(layers["model"] == model)["layer"].to_list(), key="gallery_layer"
)
categories = ui.load(unit_categories, db, model, layer)
# Filters belong to one model and layer, the page number to one filtered list: a switch starts
# with every category and page 1 (assigned, so the browser's widgets follow).
reset_on_scope("gallery_scope", (model, layer), {"gallery_categories": categories})
f1, f2, f3 = st.columns([1, 2, 1])
concept = f1.text_input("Concept contains", key="gallery_concept")
chosen = f2.multiselect("Concept categories", categories, key="gallery_categories")
min_iou = f3.slider("Minimum IoU", 0.0, 0.5, step=0.01, key="gallery_min_iou")
category_filter = None if set(chosen) == set(categories) else tuple(chosen)
units = ui.load(gallery_units, db, model, layer, concept, category_filter, float(min_iou))
if units.is_empty():
    ui.stop("No unit of this layer passes the filters; widen them.")

pages = max(1, math.ceil(units.height / GALLERY_PAGE_SIZE))
reset_on_scope(
    "gallery_page_scope", (model, layer, concept, tuple(chosen), float(min_iou)),
    {"gallery_page": 1},
)  # fmt: skip
page = 1
if pages > 1:
    page = int(st.number_input(f"Page (of {pages})", 1, pages, key="gallery_page"))
shown = units.slice((page - 1) * GALLERY_PAGE_SIZE, GALLERY_PAGE_SIZE)
first = (page - 1) * GALLERY_PAGE_SIZE + 1
st.caption(
    f"Units {first} to {first + shown.height - 1} of {units.height} (strongest IoU first; "
    "units whose best match is the background last)."
)

probe = next(iter(ui.probe_choices(db, model, layer)), "")
n_maps = ui.load(top_maps_count, db, model, layer)
problem = probe_dir_problem(probe)
if int(units["n_images"].sum()) == 0:
    st.info(
        f"The warehouse has no top images for {md(model)} / {md(layer)} (precomputed labels, such as "
        "the paper's published data, carry none): the tiles show labels only."
    )
elif problem:
    st.info(problem)
elif n_maps == 0:
    st.info(
        "No outlines: this lake was written before lce kept each unit's activation maps on its "
        "top images (`unit_top_maps`); re-run `lce extract` for this model to draw them."
    )
look = st.radio(
    "Mask", list(LOOKS), format_func=LOOKS.__getitem__, horizontal=True, key="gallery_look",
    help="How the pixels where the unit fires (S > T) are shown: outlined in magenta, or "
    "NetDissect's look, everything else darkened.",
)  # fmt: skip
tiles = ui.unit_tiles(db, probe or "", model, layer,
                      tuple(int(u) for u in shown["unit"].to_list()), look)  # fmt: skip
by_unit: dict[int, list[dict]] = {}
for tile in tiles:
    by_unit.setdefault(tile["unit"], []).append(tile)

# NetDissect's layout: one unit a row, its top images side by side at a readable size.
for row in shown.iter_rows(named=True):
    with st.container(border=True):
        st.markdown(f"**{md(unit_tile_caption(row))}**")
        images = [t for t in by_unit.get(row["unit"], []) if t["pixels"] is not None]
        if images:
            st.image(
                [t["pixels"] for t in images],
                caption=[f"#{t['rank']}" for t in images],
                width=GALLERY_IMAGE_PX,
            )
        st.page_link(
            "app_pages/units.py", label=f"Unit {row['unit']} in detail",
            query_params={"model": model, "layer": layer, "unit": str(row["unit"])},
        )  # fmt: skip
