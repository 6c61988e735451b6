"""Colours and figure sizes every page shares.

Colours are fixed per model category (C1, C2, ...) and per concept category (object, part, ...),
so a category looks the same on every page; sizes and the legend are fixed so figures line up.
"""

from __future__ import annotations

from typing import Any

# Okabe-Ito (colour-blind safe) for model categories; Tableau 10 for concept categories, so the
# two kinds of category never share a colour on one page.
MODEL_CATEGORY_PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
)
NOT_EMBEDDED_COLOUR = "#9E9E9E"
CONCEPT_CATEGORY_COLOURS = {
    "object": "#4C78A8",
    "part": "#F58518",
    "material": "#54A24B",
    "color": "#E45756",
    "scene": "#72B7B2",
    "texture": "#B279A2",
}
EXTRA_CONCEPT_COLOURS = ("#9D755D", "#FF9DA6", "#EECA3B", "#BAB0AC")
COMPONENT_COLOURS = ("#1B9E77", "#D95F02", "#7570B3", "#E7298A", "#66A61E", "#A6761D")
CONCEPT_CATEGORY_ORDER = tuple(CONCEPT_CATEGORY_COLOURS)
FONT_PX = 12
COLORBAR_PX = 110  # what a heatmap's colour bar takes from the plot's width
SCATTER_WIDTH = 760
SCATTER_HEIGHT = 540
SCATTER_MARGIN = {"l": 70, "r": 30, "t": 70, "b": 60}


# Every legend lies at the foot of its figure, horizontal, in trace order (plotly reverses it for
# stacked bars). Referred to the container's bottom edge, not to the plot area: plotly then widens
# the bottom margin to hold it under the axis titles and tick labels, however long or rotated,
# and it never meets the title (a legend above the plot collided with titles and subtitles).
LEGEND: dict[str, Any] = {
    "orientation": "h",
    "yref": "container",
    "y": 0,
    "yanchor": "bottom",
    "x": 0,
    "xanchor": "left",
    "title": None,
    "traceorder": "normal",
}


def model_category_colour(label: str | None) -> str:
    """C<k> -> the k-th palette colour (ids are stable across builds, so colours are too)."""
    if not label:
        return NOT_EMBEDDED_COLOUR
    digits = "".join(ch for ch in label if ch.isdigit())
    index = int(digits) - 1 if digits else sum(map(ord, label))
    return MODEL_CATEGORY_PALETTE[index % len(MODEL_CATEGORY_PALETTE)]


def concept_category_colour(category: str | None) -> str:
    """Fixed colours for Broden's six categories; other names get a stable extra colour."""
    if category in CONCEPT_CATEGORY_COLOURS:
        return CONCEPT_CATEGORY_COLOURS[category]
    if not category:
        return NOT_EMBEDDED_COLOUR
    return EXTRA_CONCEPT_COLOURS[sum(map(ord, category)) % len(EXTRA_CONCEPT_COLOURS)]


def component_colour(component: int) -> str:
    return COMPONENT_COLOURS[(component - 1) % len(COMPONENT_COLOURS)]


def concept_category_sort_key(category: str | None) -> tuple[int, str]:
    """Broden's order (object, part, material, color, scene, texture), then alphabetical."""
    if category in CONCEPT_CATEGORY_ORDER:
        return (CONCEPT_CATEGORY_ORDER.index(category), "")
    return (len(CONCEPT_CATEGORY_ORDER), category or "")


FIGURE_FORMATS = ("png", "svg")


def figure_config(fmt: str = "png") -> dict[str, Any]:
    """Plotly's config for the camera button of the chart's toolbar: it downloads the figure,
    drawn in the browser, in ``fmt`` (png or svg: no server-side renderer is needed)."""
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"figure format must be png or svg, not {fmt!r}")
    return {
        "displaylogo": False,
        "toImageButtonOptions": {"format": fmt, "filename": "lce-figure", "scale": 2},
    }
