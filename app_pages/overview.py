"""Overview: the models, why some are not in the embedding, and their concept counts."""

from __future__ import annotations

import streamlit as st

from lce import ui
from lce.explore.info import describe, made_lines, runs_frame
from lce.explore.overview import (
    category_counts,
    concept_count_figure,
    models_overview,
    overview_counts,
    survival_lines,
)
from lce.explore.safe_text import md
from lce.ui_tables import table

db = ui.require_db()
st.title("Overview")
st.markdown(
    "What this warehouse holds: every model, how many of its units detect a concept "
    "(interpretable units), whether it is in the embedding (and why not), and its concepts by "
    "category."
)
st.caption(f"Warehouse {md(ui.shown_path(db))}")

counts = ui.load(overview_counts, db)
for column, (label, key) in zip(
    st.columns(6),
    [
        ("models", "models"),
        ("dissected", "dissected"),
        ("in the embedding", "embedded"),
        ("model categories", "categories"),
        ("concepts", "concepts"),
        ("task results", "task_results"),
    ],
    strict=True,
):
    column.metric(label, counts[key])

with st.expander("How this warehouse was made"):
    made = ui.load(describe, db)
    for line in made_lines(made, probe_names_only=True):
        st.text(line)  # names are data: plain text, never markdown
    table(runs_frame(made), hide_index=True)
    st.caption(
        "Every setting is in the SQL page's `dim_study`, every dissected layer in `dim_runs`; "
        "`lce info --db FILE` "
        "prints the same in a terminal (`--json` for scripts)."
    )

survival = ui.load(survival_lines, db)
if survival:
    st.caption("Correlations: " + survival[0] + ".", help="\n\n".join(survival))

models = ui.load(models_overview, db)
if models.is_empty():
    ui.stop("The warehouse has no models yet: dissect some with `lce extract`, or load the "
            "paper's data with `lce reference load`, then `lce build`.")  # fmt: skip

st.subheader("Models")
table(
    models,
    hide_index=True,
    column_config={
        "interpretable_pct": st.column_config.NumberColumn("interpretable %", format="%.1f"),
        "interpretable_units": "interpretable units",
        "in_embedding": "in embedding",
        "excluded_reason": "why not in the embedding",
        "task_results": "task results",
        "primary_layer": "primary layer",
    },
)

st.subheader("Concepts per model")
st.caption(
    "Interpretable units of each model's primary layer, by concept category (the paper's "
    "concept-count figure): all units, or the distinct concepts they cover."
)
measure = st.radio(
    "Count", ["interpretable units", "unique concepts"], horizontal=True, key="overview_measure"
)
concept_counts = ui.load(category_counts, db)
if concept_counts.is_empty():
    st.info("No model has interpretable units, so there are no concept counts to draw.")
else:
    measure_column = "n_units" if measure == "interpretable units" else "n_unique_concepts"
    ui.plotly_chart(concept_count_figure(concept_counts, measure_column))
