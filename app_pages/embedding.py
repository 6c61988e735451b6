"""Embedding: the models in the Learned Concepts Embedding, their categories and neighbours."""

from __future__ import annotations

import streamlit as st

from lce import ui
from lce.explore.embedding import (
    BOOTSTRAP,
    FOLDS,
    add_intervals,
    build_notes,
    coassignment,
    coassignment_figure,
    embedding,
    embedding_figure,
    embedding_figure_3d,
    explained_variance,
    intervals_caption,
    lce_fold_intervals,
    lce_intervals,
    model_category_stability,
    nearest_models,
    stability_summary,
)
from lce.explore.names import component_label
from lce.explore.safe_text import md
from lce.ui_tables import table

db = ui.require_db()
st.title("Embedding")
st.markdown(
    "Where each model sits in the Learned Concepts Embedding: models close together learned "
    "similar concepts, and the colours are the model categories found by k-means."
)
notes = ui.load(build_notes, db)
if not notes.is_empty():
    # What the build could not compute and why (small or degenerate studies), before any stop.
    st.info("\n".join(f"- {md(message)}" for message in notes["message"].to_list()))
emb = ui.load(embedding, db)
if emb.is_empty():
    if not notes.is_empty():
        ui.stop("There is no component to draw (the notes above say why).")
    ui.stop("No model is in the embedding (the Overview page says why each one is left out). "
            "It needs at least two dissected models with interpretable units.")  # fmt: skip
evr = ui.evr_by_component(db)
components = sorted(evr) or [int(c[2:]) for c in emb.columns if c.startswith("pc")]
if len(components) < 2:
    table(emb, hide_index=True)
    ui.stop("The embedding has a single component, so there is no plane to draw: the table "
            "gives each model's score on it.")  # fmt: skip

st.caption(
    "Each point is a model's concept profile projected on the principal components "
    "(centred PCA); colours are the k-means model categories."
)
models = emb["model"].to_list()
left, middle, right = st.columns(3)
x = left.selectbox(
    "x axis", components, index=0, key="emb_x",
    format_func=lambda c: component_label(c, evr.get(c)),
)  # fmt: skip
# A component against itself is a diagonal line, not a view: y offers the others only.
y_options = [c for c in components if c != x]
if st.session_state.get("emb_y") not in y_options:  # assigned, so the browser follows
    st.session_state["emb_y"] = y_options[0]
y = middle.selectbox(
    "y axis", y_options, index=0, key="emb_y",
    format_func=lambda c: component_label(c, evr.get(c)),
)  # fmt: skip
highlight = right.selectbox(
    "Highlight a model", [None, *models], key="emb_highlight",
    format_func=lambda m: "(none)" if m is None else m,
)  # fmt: skip

# Two resamplings, drawn side by side where the build has both: the unit bootstrap (always) and
# the probe-image folds (only with fold tallies of `lce extract --folds K`).
drawn = {BOOTSTRAP: ui.load(lce_intervals, db), FOLDS: ui.load(lce_fold_intervals, db)}
kinds = [kind for kind, frame in drawn.items() if not frame.is_empty()]
show_intervals = bool(kinds) and st.toggle(
    f"Show 95% intervals ({' and '.join(kinds)})", key="emb_intervals",
    help="Unit bootstrap: each model's units resampled with replacement (on the SQL page: "
    "`fct_lce_intervals`). Probe-image folds: each fold of the probe images left out in turn "
    "(`fct_lce_fold_intervals`). Every refit is rotated onto these scores by orthogonal "
    "Procrustes.",
)  # fmt: skip
figure = embedding_figure(emb, x, y, evr, highlight)
if show_intervals:
    for kind in kinds:
        figure = add_intervals(figure, emb, drawn[kind], x, y, kind)
    st.caption(intervals_caption(kinds))
ui.plotly_chart(figure, width="content")

if highlight is not None:
    st.subheader(f"Nearest models to {md(highlight)}")
    k = st.number_input("How many", min_value=1, max_value=50, value=5, key="emb_k")
    nearest = ui.load(nearest_models, db, highlight, int(k))
    st.caption("Cosine distance between concept profiles (every dissected model, embedded or not).")
    table(
        nearest,
        hide_index=True,
        column_config={"cosine_distance": st.column_config.NumberColumn(format="%.3f")},
    )

stable = ui.load(model_category_stability, db)
verdict = ui.load(stability_summary, db)
if not stable.is_empty() and verdict is not None:
    st.subheader("How stable are the categories?")
    st.caption(
        f"Over {verdict['resamples']} resamples of every model's units (the build's "
        f"stability_resamples setting), k-means reproduced these categories exactly in "
        f"{100 * verdict['share_same']:.0f}% of them (adjusted Rand index: median "
        f"{verdict['median_ari']:.3f}, 5th percentile {verdict['p5_ari']:.3f}). A model's "
        "stability is its mean agreement with the others: how often a resample keeps it with "
        "its category-mates and apart from the rest."
    )
    left, right = st.columns([1, 2])
    table(stable, where=left)
    pairs = ui.load(coassignment, db)
    ui.plotly_chart(coassignment_figure(pairs, stable), right, width="content")

if len(components) >= 3:
    st.subheader("3-D view")
    ui.plotly_chart(embedding_figure_3d(emb, evr, highlight))

with st.expander("Scores and explained variance"):
    table(emb, hide_index=True)
    table(ui.load(explained_variance, db), hide_index=True)
