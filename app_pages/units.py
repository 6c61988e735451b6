"""Units: one model and layer, unit by unit, with top images where the lake has them."""

from __future__ import annotations

import streamlit as st

from lce import ui
from lce.explore.images import (
    offered_probe,
    probe_dir_problem,
    resolve_probe_image,
    top_maps_count,
)
from lce.explore.names import PART_SUFFIXES
from lce.explore.netdissect import (
    across_layers_figure,
    concept_histogram,
    concept_histogram_figure,
    layer_category_counts,
    runner_ups,
)
from lce.explore.safe_text import md, plot_text
from lce.explore.units import (
    UNIT_FILTER_DEFAULTS,
    top_image_layers,
    top_image_units,
    top_images,
    unit_caption,
    unit_categories,
    unit_layers,
    unit_link,
    unit_matches,
    unit_threshold,
    units,
    units_for_display,
)
from lce.ui_tables import table
from lce.widget_state import is_new_link, refresh, reset_on_scope, sync_query_params

db = ui.require_db()
st.title("Units")
st.markdown(
    "One model's layer unit by unit: the concept each unit detects best, with its IoU "
    "(overlap of the unit's thresholded activation with the concept's pixels), and its "
    "top-activating probe images."
)
st.caption(PART_SUFFIXES)
layers = ui.load(unit_layers, db)
if layers.is_empty():
    ui.stop("No dissected units in this warehouse: run `lce extract`, then `lce build`.")

models = sorted(set(layers["model"].to_list()))
# A Gallery tile links here with ?model=&layer=&unit=: open that unit with no filter hiding it.
# The address bar then follows the selection (a unit's link can be copied), so parameters this
# page wrote itself are no link.
link = unit_link(st.query_params.to_dict(), layers)
if link is not None and is_new_link("units_url", "units_model"):
    st.session_state.update({**UNIT_FILTER_DEFAULTS, **link, "units_scope": None})
left, right = st.columns(2)
model = left.selectbox("Model", models, key="units_model")
model_layers = layers.filter(layers["model"] == model)["layer"].to_list()
layer = right.selectbox("Layer", model_layers, key="units_layer")
sync_query_params({"model": model, "layer": layer}, "units_url")

categories = ui.load(unit_categories, db, model, layer)
# A category choice belongs to one model and layer: kept across a switch it would silently hide
# units of the next one, so a new model or layer starts with every category (and the probe the
# next model's run names); the unit picker is redrawn, its labels are the new model's.
# Probe folders the server chose, never typed: a free path box would tell any visitor which
# folders exist on the server.
offered = ui.probe_choices(db, model, layer)
if st.session_state.get("units_probe") not in offered:
    st.session_state.pop("units_probe", None)
default_probe = offered[0] if offered else None
if reset_on_scope(
    "units_scope", (model, layer), {"units_categories": categories, "units_probe": default_probe}
):
    refresh("units_unit")
f1, f2, f3, f4 = st.columns([2, 1, 1, 1])
chosen = f1.multiselect("Concept categories", categories, key="units_categories")
min_iou = f2.slider("Minimum IoU", 0.0, 0.5, step=0.01, key="units_min_iou")
search = f3.text_input("Concept contains", key="units_search")
interpretable_only = f4.checkbox("Interpretable only", key="units_interpretable")

# All categories selected means no category filter (units without a concept stay in view).
category_filter = None if set(chosen) == set(categories) else tuple(chosen)
frame = ui.load(
    units, db, model, layer, category_filter, float(min_iou), interpretable_only, search
)
total = layers.filter((layers["model"] == model) & (layers["layer"] == layer)).row(0, named=True)
st.caption(
    f"{frame.height} of {total['units']} units shown; {total['interpretable']} are interpretable "
    "(best IoU above the build's min_iou)."
)
shown_units = units_for_display(frame)
if "label_kept" in shown_units.columns:
    st.caption(
        "Label stability, from the probe images' folds (`lce extract --folds K`): *label kept* is "
        "the share of leave-one-fold-out labels equal to the unit's label, *IoU low / high* the "
        "jackknife 95% interval of its IoU (fct_unit_label_stability)."
    )
table(
    shown_units,
    hide_index=True,
    column_config={
        "iou": st.column_config.ProgressColumn("IoU", format="%.3f", min_value=0, max_value=0.5),
        "is_interpretable": "interpretable",
        **(
            {
                "label_kept": st.column_config.NumberColumn("label kept", format="percent"),
                "iou_low": st.column_config.NumberColumn("IoU low", format="%.3f"),
                "iou_high": st.column_config.NumberColumn("IoU high", format="%.3f"),
            }
            if "label_kept" in shown_units.columns
            else {}
        ),
    },
)

# NetDissect's views of the layer and of the model's layers (every unit counts, not the filters).
st.subheader("Concepts of the layer")
hist_col, layers_col = st.columns(2)
with hist_col:
    histogram = ui.load(concept_histogram, db, model, layer)
    if histogram.is_empty():
        st.info(f"No interpretable unit in {md(model)} / {md(layer)}: the histogram is empty.")
    else:
        ui.plotly_chart(concept_histogram_figure(
            histogram,
            f"Interpretable units per concept: {plot_text(model)} / {plot_text(layer)}"))  # fmt: skip
with layers_col:
    ui.plotly_chart(across_layers_figure(ui.load(layer_category_counts, db, model), model))

st.subheader("Top images")
with_images = ui.load(top_image_layers, db)
if with_images.is_empty():
    ui.stop(
        "This warehouse has no top images. The dissection engine stores each unit's "
        "best-activating probe images (`lce extract ... --top-images K`); precomputed labels "
        "such as the paper's published data carry none."
    )
image_units = set(ui.load(top_image_units, db, model, layer))
if not image_units:
    where = ", ".join(
        f"{md(m)} / {md(lay)}" for m, lay in with_images.select("model", "layer").iter_rows()
    )
    ui.stop(
        f"No top images are stored for {md(model)} / {md(layer)}; the lake has them for: {where}."
    )
choices = [u for u in frame["unit"].to_list() if u in image_units]
if not choices:
    ui.stop("None of the units shown has top images; widen the filters.")
unit = st.selectbox(
    "Unit", choices, key="units_unit",
    format_func=lambda u: f"{u}: {unit_caption(frame, u)}",
)  # fmt: skip
sync_query_params({"model": model, "layer": layer, "unit": str(unit)}, "units_url")
ranked = ui.load(runner_ups, db, model, layer, int(unit))
if ranked.is_empty():
    st.caption("No runner-up labels: this layer's labels were loaded precomputed, without tallies.")
else:
    st.markdown(f"**Unit {unit}'s best concepts** (rank 1 is its label; IoU from the tallies)")
    st.dataframe(
        units_for_display(ranked),
        hide_index=True,
        column_config={
            "iou": st.column_config.ProgressColumn(
                "IoU", format="%.3f", min_value=0, max_value=0.5
            ),
            "activation_in_category": "unit pixels in the category's images",
            "label_pixels": "concept pixels",
        },
    )
choice = st.selectbox(
    "Probe folder", offered, key="units_probe", format_func=ui.shown_path,
    disabled=not offered, placeholder="none on this server",
    help="The probe set the models were dissected on (its images/ folder): the folder the run "
    "recorded (runs.probe), the warehouse's other runs' folders, and those the explorer was "
    "started with (`lce app --probe DIR`, or LCE_PROBE_DIR).",
)  # fmt: skip
probe = offered_probe(choice, offered)
images = ui.load(top_images, db, model, layer, int(unit))
if images.is_empty():
    ui.stop(f"No top images are stored for unit {unit} of {md(model)} / {md(layer)}.")
threshold = ui.load(unit_threshold, db, model, layer, int(unit))
problem = probe_dir_problem(probe)
if problem:
    st.info(problem + " The stored image names:")
    table(images, hide_index=True)
else:
    found = [
        (row, resolve_probe_image(probe, row["image"])) for row in images.iter_rows(named=True)
    ]
    shown = [(row, path) for row, path in found if path is not None]
    missing = [row["image"] for row, path in found if path is None]
    tiles = {t["rank"]: t for t in ui.unit_tiles(db, probe, model, layer, (int(unit),))}
    if shown:
        st.image(
            [
                tiles[row["rank"]]["pixels"] if row["rank"] in tiles else str(path)
                for row, path in shown
            ],
            caption=[
                f"#{row['rank']}  max activation {row['max_activation']:.3g}" for row, _ in shown
            ],
            width=224,
        )
    if missing:
        st.info(
            f"{len(missing)} of the unit's top images are not in {md(ui.shown_path(probe))}: "
            + ", ".join(md(m) for m in missing[:10])
            + (" ..." if len(missing) > 10 else "")
            + ". Is this the probe set the model was dissected on?"
        )
if ui.load(top_maps_count, db, model, layer):
    st.caption(
        "Outlined in magenta (a black or white halo just outside, so it shows on any colour): "
        "where the unit fires, S > T (its activation map upsampled to the label map, above its "
        "threshold"
        + ("" if threshold is None else f" T = {threshold:.4g}")
        + "), the very pixels its IoU counts."
    )
else:
    st.caption(
        "The thresholded mask is not outlined: it needs the unit's activation map on each "
        "image, which this lake does not hold (written before lce kept `unit_top_maps`)"
        + ("" if threshold is None else f"; the unit's threshold is T = {threshold:.4g}")
        + ". Re-run `lce extract` for this model to draw it."
    )

st.subheader("This unit's matches in other models")
matched = ui.load(unit_matches, db, model, layer, int(unit))
if matched.is_empty():
    st.caption(
        "No matches: units are matched across models by their mean activation on each probe "
        "image (lake image_features, on the models' primary layers), and this unit's layer has "
        "none beside another model's, or the unit does not vary over the images."
    )
else:
    st.caption(
        "Each other model's unit whose activations over the shared probe images correlate most "
        "with this one's (Pearson r); mutual when this unit is its best match too. Concept: the "
        "matched unit's label when it is interpretable (fct_unit_matches)."
    )
    table(
        matched.drop("other_layer").rename({"other_model": "model", "other_unit": "unit",
                                            "other_concept": "concept"}),
        hide_index=True,
        column_config={"r": st.column_config.NumberColumn("r", format="%.3f")},
    )  # fmt: skip
    if not problem:
        for row in matched.iter_rows(named=True):
            other = ui.load(top_images, db, row["other_model"], row["other_layer"],
                            int(row["other_unit"]))  # fmt: skip
            located = [resolve_probe_image(probe, name) for name in other["image"].to_list()]
            match_tiles = [str(path) for path in located if path is not None]
            if match_tiles:
                st.markdown(f"**{md(row['other_model'])} unit {row['other_unit']}**'s top images")
                st.image(match_tiles, width=112)
