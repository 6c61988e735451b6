"""Tasks: how the LCE components relate to downstream task performance."""

from __future__ import annotations

import math

import streamlit as st

from lce import ui
from lce.explore.names import component_label, task_title
from lce.explore.performance_map import performance_map, performance_map_figure
from lce.explore.safe_text import md
from lce.explore.tasks import (
    CATEGORY_MEASURES,
    category_task_heatmap,
    category_task_matrix,
    scatter_correlation,
    task_correlation_figure,
    task_correlations,
    task_families,
    task_points,
    task_prediction,
    task_prediction_figure,
    task_results,
    task_scatter_figure,
)
from lce.ui_tables import table

db = ui.require_db()
st.title("Tasks")
st.markdown(
    "Do a model's coordinates in the embedding go with how well it transfers? Each downstream "
    "result (a task family's datasets and metrics) against the components, the concept "
    "categories and the models' positions."
)
families = ui.load(task_families, db)
if not families:
    ui.stop(
        "No task results in this warehouse. Add long-format results with "
        "`lce benchmarks add FILE` (or `lce reference load` for the paper's), then `lce build`."
    )
evr = ui.evr_by_component(db)
if not evr:
    ui.stop("The embedding has no component to relate the tasks to: fewer than two embedded "
            "models, or profiles that do not vary (the Embedding page's notes say which).")  # fmt: skip
components = sorted(evr)

task = st.selectbox("Task family", families, key="task_family", format_func=task_title)
correlations = ui.load(task_correlations, db, task)
st.subheader("Component / task correlations")
st.caption(
    "Pearson r between each component's scores and each result, over the embedded models that "
    "have it, with its bootstrap 95% interval (models resampled). A star marks a correlation "
    "that survives the Benjamini-Hochberg correction (q below the build's q_threshold); p, q "
    "and n on hover. r is on the raw metric: for a lower-is-better metric a negative r goes "
    "with better results."
)
if correlations.is_empty():
    st.info(f"No correlations for {md(task_title(task))}: no embedded model has these results.")
else:
    ui.plotly_chart(task_correlation_figure(correlations, task))
    with st.expander("As a table"):
        table(
            correlations.drop("result"),
            hide_index=True,
            column_config={
                **ui.correlation_columns(),
                "spearman_rho": st.column_config.NumberColumn("Spearman rho", format="%.3f"),
            },
        )

st.subheader("What the task family requires: concept categories")
st.caption(
    "Pearson r between each concept category's count in a model and each result of the family "
    "over the embedded models that have it. A star marks a cell that survives the "
    "Benjamini-Hochberg correction; interval, p and q on hover. On the SQL page: "
    "`fct_category_task_correlations`."
)
measure = st.radio("Category measure", list(CATEGORY_MEASURES), horizontal=True, key="task_measure")
matrix = ui.load(category_task_matrix, db, task, CATEGORY_MEASURES[measure])
if matrix.is_empty():
    st.info(f"No concept category correlations for {md(task_title(task))}.")
else:
    ui.plotly_chart(category_task_heatmap(matrix, task, measure))

# Does the embedding predict transfer? (fct_task_prediction)
skill = ui.load(task_prediction, db, task)
if skill.height:
    st.subheader("Does the embedding predict the results?")
    st.caption(
        "Each model is held out in turn; the PCA and k-means are refitted without it and its "
        "result is predicted from the others: knn (3 nearest on the components), ridge (on the "
        "components), category (mean of its k-means category). Skill = 1 - MAE / MAE of the "
        "others' plain mean: above 0 the embedding helps, 1 is perfect."
    )
    ui.plotly_chart(task_prediction_figure(skill, task), width="content")
    with st.expander("Skill as a table"):
        table(
            skill.drop("dataset", "metric"),
            hide_index=True,
            column_config={
                c: st.column_config.NumberColumn(format="%.3f")
                for c in skill.columns
                if c.startswith("skill_") or c == "mae_mean"
            },
        )

st.subheader("One result against one component")
results = ui.load(task_results, db, task)
labels = results["result"].to_list()
left, right = st.columns(2)
result = left.selectbox("Result", labels, key="task_result")
component = right.selectbox(
    "Component", components, key="task_component",
    format_func=lambda c: component_label(c, evr.get(c)),
)  # fmt: skip
row = results.row(labels.index(result), named=True)
points = ui.load(task_points, db, task, row["dataset"], row["metric"])
if points.height < 2:
    ui.stop(f"Fewer than two embedded models have {md(result)}; nothing to draw.")
r, p = scatter_correlation(points, component)  # as the scatter's title says
mart = correlations.filter(
    (correlations["dataset"] == row["dataset"])
    & (correlations["metric"] == row["metric"])
    & (correlations["component"] == component)
)
q = mart["q_value"][0] if mart.height else None
a, b, c, d = st.columns(4)
a.metric("Pearson r", "n/a" if math.isnan(r) else f"{r:.3f}")
b.metric("p-value", "n/a" if math.isnan(p) else f"{p:.3g}")
c.metric("q (BH)", "n/a" if q is None else f"{q:.3g}")
d.metric("models", points.height)
if mart.height and mart["r_lo"][0] is not None:
    st.caption(
        f"Bootstrap 95% interval of r: [{mart['r_lo'][0]:.3f}, {mart['r_hi'][0]:.3f}]; "
        + ("survives" if mart["significant"][0] else "does not survive")
        + " the Benjamini-Hochberg correction."
    )
ui.plotly_chart(
    task_scatter_figure(points, component, evr.get(component), result, row["metric"]),
    width="content",
)

st.subheader("Performance map")
st.caption(
    "The result interpolated over two components by distance-weighted k-nearest neighbours "
    "(as the paper draws it); brighter is better whatever the metric's direction."
)
mx, my, mk = st.columns(3)
map_x = mx.selectbox(
    "x axis", components, index=0, key="task_map_x",
    format_func=lambda c: component_label(c, evr.get(c)),
)  # fmt: skip
# as on the Embedding page, y never repeats x (a component against itself is a diagonal)
map_y_options = [c for c in components if c != map_x] or components  # one component: itself
if st.session_state.get("task_map_y") not in map_y_options:  # assigned: the browser follows
    st.session_state["task_map_y"] = map_y_options[0]
map_y = my.selectbox(
    "y axis", map_y_options, index=0, key="task_map_y",
    format_func=lambda c: component_label(c, evr.get(c)),
)  # fmt: skip
k = mk.slider("k (neighbours)", 1, points.height, min(3, points.height), key="task_map_k")
pmap = performance_map(points, map_x, map_y, int(k))
ui.plotly_chart(
    performance_map_figure(
        points, pmap, map_x, map_y, evr, result, row["metric"], bool(row["higher_is_better"]),
        int(k),
    ),
    width="content",
)  # fmt: skip
