"""Similarity: geometry beside concepts (do models that learn the same concepts also represent
images alike, and which pairs disagree?)."""

from __future__ import annotations

import streamlit as st

from lce import ui
from lce.explore.similarity import (
    SIMILARITY_MEASURES,
    agreement_caption,
    disagreeing_pairs,
    similarity_agreement,
    similarity_matrix_figure,
    similarity_models,
    similarity_pairs,
    similarity_scatter_figure,
    similarity_status,
)
from lce.ui_tables import table

db = ui.require_db()
st.title("Similarity")
st.markdown(
    "Models compared two ways on the same probe images: by the **concepts** their units detect "
    "(cosine distance of the concept profiles) and by the **geometry** of their "
    "representations (each image's mean activation vector on the model's primary layer: linear "
    "and debiased CKA, mutual k-nearest-neighbour alignment, Procrustes shape distance). The "
    "agreement of the two is a Mantel test. On the SQL page: `fct_model_similarity`, "
    "`fct_similarity_agreement`."
)
problem = ui.load(similarity_status, db)
if problem:
    ui.stop(problem)

agreement = ui.load(similarity_agreement, db)
st.subheader("Agreement of each measure with the concept embedding")
table(
    agreement.with_columns(agreement["measure"].replace(SIMILARITY_MEASURES)),
    hide_index=True,
    column_config={
        "mantel_r": st.column_config.NumberColumn("Mantel r (Spearman)", format="%.3f"),
        "p_value": st.column_config.NumberColumn("permutation p", format="%.3f"),
    },
)
measure = st.selectbox(
    "Geometric measure", list(SIMILARITY_MEASURES), key="sim_measure",
    format_func=lambda m: SIMILARITY_MEASURES[m],
)  # fmt: skip
pairs = ui.load(similarity_pairs, db)
models = ui.load(similarity_models, db)
left, right = st.columns(2)
ui.plotly_chart(similarity_matrix_figure(pairs, models, None), left)
ui.plotly_chart(similarity_matrix_figure(pairs, models, measure), right)
st.caption(
    "Both heatmaps list the models in one order (by concept category, then name). A blank cell "
    "is a pair without a value: a model without interpretable units has no concept profile, "
    "and a pair sharing fewer images than var similarity_min_images has no geometry."
)
caption = agreement_caption(agreement, measure)
ui.plotly_chart(similarity_scatter_figure(pairs, measure, caption))
st.subheader("Pairs that disagree most")
st.caption(
    "Each distance's percentile rank among the pairs; the rank gap is the geometric rank minus "
    "the concept rank (positive: the two models are closer in concepts than in geometry)."
)
table(disagreeing_pairs(pairs, measure), hide_index=True)
