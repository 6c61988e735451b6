"""Concept: which models have units for one concept, how many, and what those units see."""

from __future__ import annotations

import streamlit as st

from lce import ui
from lce.explore.compare import profiled_models
from lce.explore.concept import concept_models, concept_share_figure, interpretable_concepts
from lce.explore.images import TILE_IMAGE_PX, probe_dir_problem
from lce.explore.names import PART_SUFFIXES
from lce.explore.safe_text import md
from lce.ui_tables import table

db = ui.require_db()
st.title("Concept")
st.markdown(
    "Which models learned a concept: every model with interpretable units for it (primary "
    "layer), how many and their best IoU, the share of each model's units it takes, and the "
    "best unit's top images side by side."
)
st.caption(PART_SUFFIXES)
concepts = ui.load(interpretable_concepts, db)
if concepts.is_empty():
    ui.stop("No model has interpretable units, so there is no concept to show.")

labels = concepts["label"].to_list()
label = st.selectbox(
    "Concept (most widespread first)", labels, key="concept_label",
    help="Concepts some interpretable unit detects; a name used in two categories shows its "
    "category in brackets.",
)  # fmt: skip
row = concepts.row(labels.index(label), named=True)
frame = ui.load(concept_models, db, row["concept"], row["category"])
total = ui.load(profiled_models, db)
a, b, c = st.columns(3)
a.metric("models with such units", f"{frame.height} of {len(total)}")
b.metric("units", int(frame["n_units"].sum()))
c.metric("best IoU", f"{max(frame['best_iou'].to_list()):.3f}")

ui.plotly_chart(concept_share_figure(frame, label))
table(
    frame.drop("model_category"),
    hide_index=True,
    column_config={
        "n_units": "units",
        "unit_share": st.column_config.NumberColumn("share of units", format="percent"),
        "best_iou": st.column_config.NumberColumn("best IoU", format="%.3f"),
        "best_unit": "best unit",
    },
)

st.subheader("The best unit of each model")
shown = frame.head(12)
if frame.height > 12:
    st.caption(f"The 12 models with the most such units of {frame.height}.")
columns = st.columns(min(4, shown.height), border=True)
notes: set[str] = set()
for i, model_row in enumerate(shown.iter_rows(named=True)):
    model, layer, unit = model_row["model"], model_row["layer"], int(model_row["best_unit"])
    probe = next(iter(ui.probe_choices(db, model, layer)), "")
    tiles = ui.unit_tiles(db, probe, model, layer, (unit,))
    with columns[i % len(columns)]:
        st.markdown(f"**{md(model)}**, unit {unit}: IoU {model_row['best_iou']:.3f}")
        images = [t for t in tiles if t["pixels"] is not None]
        if images:
            st.image(
                [t["pixels"] for t in images],
                caption=[f"#{t['rank']}" for t in images],
                width=TILE_IMAGE_PX,
            )
            if not all(t["outlined"] for t in images):
                notes.add("Some images have no outline: their lake predates `unit_top_maps`.")
        elif not tiles:
            notes.add("Models without images have no top images in the warehouse "
                      "(precomputed labels, such as the paper's data, carry none).")  # fmt: skip
        else:
            notes.add(probe_dir_problem(probe) or "Top images not in the probe folder.")
        st.page_link(
            "app_pages/units.py", label="Unit in detail",
            query_params={"model": model, "layer": layer, "unit": str(unit)},
        )  # fmt: skip
for note in sorted(notes):
    st.caption(note)
