"""Figure parts several pages share: one bar per concept, and correlations with their intervals.

The Components and Tasks pages both draw Pearson r with its bootstrap interval and a star for
what survives the Benjamini-Hochberg correction; one hover text and one error-bar builder keep
them alike.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl

from lce.explore.names import concept_labels
from lce.explore.palette import LEGEND, concept_category_colour, concept_category_sort_key
from lce.explore.safe_text import plot_text


def concept_bar_figure(
    frame: pl.DataFrame,
    value: str,
    hovertemplate: str,
    customdata: list[str] | None = None,
) -> go.Figure:
    """One horizontal bar per concept (names stay readable), in the frame's order, coloured and
    legend-grouped by concept category. ``hovertemplate`` gets the category appended."""
    labels = concept_labels(frame["concept"].to_list(), frame["category"].to_list())
    frame = frame.with_columns(pl.Series("label", labels))
    fig = go.Figure()
    for category in sorted(set(frame["category"].to_list()), key=concept_category_sort_key):
        part = frame.filter(pl.col("category") == category)
        fig.add_bar(
            name=plot_text(category),
            y=part["label"].to_list(),
            x=part[value].to_list(),
            orientation="h",
            marker_color=concept_category_colour(category),
            customdata=np.column_stack([part[c].to_numpy() for c in customdata])
            if customdata
            else None,
            hovertemplate=hovertemplate + "<extra>" + plot_text(category) + "</extra>",
        )
    fig.update_layout(
        barmode="relative",  # one bar per concept: full width, not a slot per category
        margin={"l": 10, "r": 10, "t": 60, "b": 50},
        legend=LEGEND,
        yaxis={
            "automargin": True,
            "categoryorder": "array",
            "categoryarray": list(reversed(labels)),
            "tickfont": {"size": 11},
        },
    )
    return fig


def survives(significant: bool | None) -> str:
    """The mark of a correlation that survives the Benjamini-Hochberg correction."""
    return "*" if significant else ""


# Correlation bars share the y range [-R_LIMIT, R_LIMIT]: r and its interval lie in [-1, 1], and
# what lies beyond is room for a star past an interval that ends at +-1.
R_LIMIT = 1.25
# How far past the end of its error bar a star sits, in units of r (the axis spans 2.5).
STAR_MARGIN = 0.04


def star_positions(
    r: list[float | None], lo: list[float | None], hi: list[float | None], margin: float
) -> list[float | None]:
    """Where each bar's star goes: past the cap of its error bar, in the bar's direction (above
    the upper bound for r >= 0, below the lower bound for r < 0), ``margin`` further on, so the
    star never sits on the cap. A missing bound counts as r itself; None where r is None."""
    out: list[float | None] = []
    for value, low, high in zip(r, lo, hi, strict=True):
        if value is None or math.isnan(value):
            out.append(None)
        elif value >= 0:
            out.append(max(value, value if high is None or math.isnan(high) else high) + margin)
        else:
            out.append(min(value, value if low is None or math.isnan(low) else low) - margin)
    return out


def add_star_bars(
    fig: go.Figure, x: list[str], frame: pl.DataFrame, offsetgroup: str, **where: Any
) -> None:
    """The stars of one bar trace (``x`` and the frame's pearson_r, r_lo, r_hi, significant;
    the bars drawn with ``offsetgroup``), as a transparent bar in the same slot that reaches past
    each significant bar's error bar (``star_positions``) and carries the star outside its end.
    Plotly puts a bar's own outside text at the bar's end, where the error bar's cap is drawn;
    a scatter of text cannot be placed in a bar group's slot, a bar of the same offsetgroup can.
    ``where``: row and col of a subplot."""
    significant = frame["significant"].to_list()
    tops = star_positions(
        frame["pearson_r"].to_list(), frame["r_lo"].to_list(), frame["r_hi"].to_list(),
        STAR_MARGIN,
    )  # fmt: skip
    fig.add_bar(
        x=x,
        y=[top if s else None for top, s in zip(tops, significant, strict=True)],
        text=[survives(s) for s in significant],
        textposition="outside",
        textfont={"size": 16},
        cliponaxis=False,
        offsetgroup=offsetgroup,
        name=STAR_TRACE,
        marker={"color": "rgba(0,0,0,0)"},
        showlegend=False,
        hoverinfo="skip",
        **where,
    )


STAR_TRACE = "survives the correction"


# r with its interval, p and q on hover; customdata columns are interval_data's.
INTERVAL_HOVER = (
    "r=%{y:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}]<br>"
    "p=%{customdata[2]:.3g}, q=%{customdata[3]:.3g}, n=%{customdata[4]}"
)


def interval_data(frame: pl.DataFrame) -> list[list[float | None]]:
    """Per bar: r_lo, r_hi, p, q, n (None where null), for INTERVAL_HOVER; plain lists, so
    the figure's JSON carries numbers rather than a binary array."""
    columns = [
        frame[c].cast(pl.Float64).to_list() for c in ("r_lo", "r_hi", "p_value", "q_value", "n")
    ]
    return [list(row) for row in zip(*columns, strict=True)]


def interval_bars(frame: pl.DataFrame) -> dict[str, Any]:
    """Asymmetric error bars from r to its bootstrap interval (none where r is null)."""
    r = frame["pearson_r"].fill_null(float("nan")).to_numpy()
    lo = frame["r_lo"].fill_null(float("nan")).to_numpy()
    hi = frame["r_hi"].fill_null(float("nan")).to_numpy()
    return {
        "type": "data",
        "symmetric": False,
        "array": np.nan_to_num(hi - r).tolist(),
        "arrayminus": np.nan_to_num(r - lo).tolist(),
        "color": "#444444",
        "thickness": 1,
        "width": 3,
    }
