"""Components: what each LCE component is made of, and how it relates to concept counts."""

from __future__ import annotations

import streamlit as st

from lce import ui
from lce.explore.components import (
    category_correlation_figure,
    category_count_correlations,
    loadings,
    loadings_figure,
)
from lce.explore.names import PART_SUFFIXES, component_label
from lce.ui_tables import table

db = ui.require_db()
st.title("Components")
st.markdown(
    "What each principal component of the embedding is made of: a concept's loading is its "
    "weight in the component (its coefficient in the PCA direction), so concepts with large "
    "loadings of the same sign move a model along the component together."
)
st.caption(PART_SUFFIXES)
evr = ui.evr_by_component(db)
if not evr:
    ui.stop("The warehouse has no LCE components: fewer than two embedded models, or profiles "
            "that do not vary (the Embedding page's notes say which).")  # fmt: skip
components = sorted(evr)

left, right = st.columns([1, 2])
component = left.selectbox(
    "Component", components, key="comp_component",
    format_func=lambda c: component_label(c, evr.get(c)),
)  # fmt: skip
total = ui.load(loadings, db, component, None).height
if total == 0:
    ui.stop(f"PC{component} has no loadings.")
top = total
if total > 10:
    top = right.slider(
        "Concepts shown (largest |loading| first)", 10, total, min(40, total), key="comp_top"
    )
frame = ui.load(loadings, db, component, int(top))
ui.plotly_chart(loadings_figure(frame, component, evr.get(component)))

st.subheader("Components and concept counts")
st.caption(
    "Pearson r, over the embedded models, between each component's scores and the number of "
    "interpretable units (all) or distinct concepts (unique) of each concept category "
    "with bootstrap 95% intervals. A star marks a correlation that survives the "
    "Benjamini-Hochberg correction (q below the build's threshold); the table adds each "
    "category's share of the units. On the SQL page: `fct_component_category_correlations`."
)
correlations = ui.load(category_count_correlations, db)
if correlations.is_empty():
    st.info("No concept counts to correlate.")
else:
    ui.plotly_chart(category_correlation_figure(correlations))
    with st.expander("As a table"):
        table(
            correlations,
            hide_index=True,
            column_config=ui.correlation_columns(),
        )
