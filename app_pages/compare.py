"""Compare: two models side by side, by concepts and by task results."""

from __future__ import annotations

import streamlit as st

from lce import ui
from lce.explore.compare import (
    WEIGHT_DEFINITION,
    compare_profiles,
    compare_tasks,
    interpretable_units,
    model_distance,
    profile_difference_figure,
    profiled_models,
)
from lce.explore.names import PART_SUFFIXES, task_title, with_concept_labels
from lce.explore.safe_text import md
from lce.ui_tables import table

db = ui.require_db()
st.title("Compare two models")
st.markdown(
    "Two models side by side: which concepts their units detect (shared or only in one) and "
    "which of them does better on each downstream task."
)
models = ui.load(profiled_models, db)
if len(models) < 2:
    ui.stop("Comparing needs at least two dissected models.")

left, right = st.columns(2)
a = left.selectbox("Model A", models, index=0, key="cmp_a")
b = right.selectbox("Model B", models, index=1, key="cmp_b")
if a == b:
    ui.stop("Choose two different models.")

# 'food (material)' in the chart and the tables alike, wherever a name has two categories
profiles = with_concept_labels(ui.load(compare_profiles, db, a, b))
distance = ui.load(model_distance, db, a, b)
status = profiles["status"].to_list()
m1, m2, m3, m4 = st.columns(4)
m1.metric("cosine distance", "n/a" if distance is None else f"{distance:.3f}")
m2.metric("shared concepts", status.count("shared"))
m3.metric(f"only in {md(a)}", status.count("only A"))
m4.metric(f"only in {md(b)}", status.count("only B"))
units_a, units_b = ui.load(interpretable_units, db, a), ui.load(interpretable_units, db, b)
st.metric(
    f"interpretable units, {md(a)} minus {md(b)}", f"{units_a - units_b:+,}",
    help=f"{md(a)}: {units_a:,}; {md(b)}: {units_b:,}",
)  # fmt: skip
st.caption(
    "Cosine distance compares the directions of the two concept profiles only (which concepts, "
    "in what proportions), not their sizes: a model with twice the interpretable units in the "
    "same proportions is at distance 0. The unit-count difference above shows the size."
)
if distance is None:
    st.caption("No distance: a model without interpretable units has no concept profile.")

if profiles.is_empty():
    st.info("Neither model has interpretable units, so there are no concepts to compare.")
else:
    top = profiles.height
    if profiles.height > 5:
        top = st.slider(
            "Concepts shown (largest difference first)", 5, profiles.height,
            min(30, profiles.height), key="cmp_top",
        )  # fmt: skip
    st.caption(WEIGHT_DEFINITION + " " + PART_SUFFIXES)
    ui.plotly_chart(profile_difference_figure(profiles, a, b, int(top)))
    names = {"shared": "shared", "only A": f"only in {md(a)}", "only B": f"only in {md(b)}"}
    for tab, key in zip(st.tabs(list(names.values())), names, strict=True):
        with tab:
            part = profiles.filter(profiles["status"] == key).drop("status")
            table(
                part.rename(
                    {
                        "units_a": f"units {a}",
                        "units_b": f"units {b}",
                        "weight_a": f"weight {a}",
                        "weight_b": f"weight {b}",
                    }
                ),
                hide_index=True,
            )

st.subheader("Task results")
tasks = ui.load(compare_tasks, db, a, b)
if tasks.is_empty():
    st.info(
        f"No task results for {md(a)} or {md(b)}. Add results with `lce benchmarks add FILE`, then "
        "`lce build`."
    )
else:
    both = tasks.filter(tasks["better"] != "")
    wins_a = both.filter(both["better"] == "A").height
    wins_b = both.filter(both["better"] == "B").height
    st.caption(
        f"Of the {both.height} results both have, {md(a)} is better on {wins_a} and {md(b)} on "
        f"{wins_b} (each metric's direction respected: higher accuracy, lower error)."
    )
    table(
        tasks.rename({"value_a": a, "value_b": b}).with_columns(
            tasks["better"].replace({"A": a, "B": b}),
            tasks["task"].map_elements(task_title, return_dtype=tasks["task"].dtype),
        ),
        hide_index=True,
    )
