"""Text on scatter plots: every point named, each name placed where it overlaps least.

Scatter labels are what people read; 13-20 model names around a cluster overlap with one fixed
position, so ``label_positions`` picks a plotly textposition per point (crowded points choose
first, then a few passes until nothing moves). ``label_overlaps`` counts what it minimises, so
the tests can check the placement against the fixed position.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go
import polars as pl

from lce.explore.palette import (
    FONT_PX,
    LEGEND,
    SCATTER_HEIGHT,
    SCATTER_MARGIN,
    SCATTER_WIDTH,
    model_category_colour,
)
from lce.explore.safe_text import plot_text


def padded_range(values: Sequence[float], pad: float = 0.12) -> tuple[float, float]:
    """An axis range with room for the labels around the outermost points."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return (-1.0, 1.0)
    low, high = min(finite), max(finite)
    span = high - low if high > low else max(abs(high), 1.0)
    return (low - pad * span, high + pad * span)


# The scatter's plot area, width over height, in pixels (the figure less its margins).
PLOT_ASPECT = (SCATTER_WIDTH - SCATTER_MARGIN["l"] - SCATTER_MARGIN["r"]) / (
    SCATTER_HEIGHT - SCATTER_MARGIN["t"] - SCATTER_MARGIN["b"]
)


def equal_ranges(
    xs: Sequence[float], ys: Sequence[float], pad: float = 0.12, aspect: float = 1.0
) -> tuple[tuple[float, float], tuple[float, float]]:
    """x and y ranges on which one unit is as long on both axes, for a plot area ``aspect``
    times as wide as it is high: each range is centred on its data, and the spans (x span =
    ``aspect`` x y span) are the smallest that hold both axes' data padded by ``pad`` of its
    span on each side. With aspect 1 both spans are equal. Distances in an embedding are what
    it shows, so a unit on PC2 must not look longer than a unit on PC1."""
    x_low, x_high = padded_range(xs, pad)
    y_low, y_high = padded_range(ys, pad)
    y_span = max(y_high - y_low, (x_high - x_low) / aspect)
    x_span = aspect * y_span
    x_mid, y_mid = (x_low + x_high) / 2, (y_low + y_high) / 2
    return (x_mid - x_span / 2, x_mid + x_span / 2), (y_mid - y_span / 2, y_mid + y_span / 2)


_POSITIONS = (
    ("top center", 0, 1),
    ("bottom center", 0, -1),
    ("middle right", 1, 0),
    ("middle left", -1, 0),
    ("top right", 1, 1),
    ("top left", -1, 1),
    ("bottom right", 1, -1),
    ("bottom left", -1, -1),
)


_MARKER_PX = 6.0


def _label_box(
    px: float, py: float, text: str, position: str, font_px: int = FONT_PX
) -> tuple[float, float, float, float]:
    """The label's pixel box (x0, y0, x1, y1; y up) for a plotly textposition."""
    width = 0.62 * font_px * max(len(text), 1)
    height = 1.25 * font_px
    dx, dy = next((dx, dy) for name, dx, dy in _POSITIONS if name == position)
    gap = _MARKER_PX + 2
    if dx > 0:
        x0 = px + gap
    elif dx < 0:
        x0 = px - gap - width
    else:
        x0 = px - width / 2
    if dy > 0:
        y0 = py + gap
    elif dy < 0:
        y0 = py - gap - height
    else:
        y0 = py - height / 2
    return (x0, y0, x0 + width, y0 + height)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _to_pixels(
    xs: Sequence[float],
    ys: Sequence[float],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int,
    height: int,
) -> list[tuple[float, float]]:
    plot_w = width - SCATTER_MARGIN["l"] - SCATTER_MARGIN["r"]
    plot_h = height - SCATTER_MARGIN["t"] - SCATTER_MARGIN["b"]
    return [
        (
            (x - x_range[0]) / (x_range[1] - x_range[0]) * plot_w,
            (y - y_range[0]) / (y_range[1] - y_range[0]) * plot_h,
        )
        for x, y in zip(xs, ys, strict=True)
    ]


def label_positions(
    xs: Sequence[float],
    ys: Sequence[float],
    labels: Sequence[str],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int = SCATTER_WIDTH,
    height: int = SCATTER_HEIGHT,
) -> list[str]:
    """A plotly textposition per point, chosen greedily so labels overlap neither each other
    nor the markers (crowded points choose first). Scatter labels are what people read; 13-20
    model names around a cluster overlap with one fixed position."""
    pixels = _to_pixels(xs, ys, x_range, y_range, width, height)
    plot_w = width - SCATTER_MARGIN["l"] - SCATTER_MARGIN["r"]
    plot_h = height - SCATTER_MARGIN["t"] - SCATTER_MARGIN["b"]
    markers = [(x - _MARKER_PX, y - _MARKER_PX, x + _MARKER_PX, y + _MARKER_PX) for x, y in pixels]

    def crowding(i: int) -> int:
        return sum(
            1 for j, (x, y) in enumerate(pixels) if j != i and math.dist(pixels[i], (x, y)) < 80
        )

    def cost(i: int, name: str, others: list[tuple[float, float, float, float]]) -> float:
        box = _label_box(*pixels[i], labels[i], name)
        total = sum(_overlap(box, other) for other in others)
        total += sum(_overlap(box, m) for j, m in enumerate(markers) if j != i)
        outside = (
            max(0.0, -box[0]) + max(0.0, box[2] - plot_w) + max(0.0, -box[1])
            + max(0.0, box[3] - plot_h)
        )  # fmt: skip
        return total + outside * 20

    names = [name for name, _, _ in _POSITIONS]
    # Greedy first pass (crowded points choose first), then a few passes where each label
    # moves to its best position given all the others, until nothing moves.
    order = sorted(range(len(pixels)), key=lambda i: (-crowding(i), i))
    positions = ["top center"] * len(pixels)
    boxes: dict[int, tuple[float, float, float, float]] = {}
    for i in order:
        positions[i] = min(names, key=lambda n: (cost(i, n, list(boxes.values())), names.index(n)))
        boxes[i] = _label_box(*pixels[i], labels[i], positions[i])
    for _ in range(10):
        moved = False
        for i in order:
            others = [box for j, box in boxes.items() if j != i]
            best = min(names, key=lambda n: (cost(i, n, others), names.index(n)))
            if cost(i, best, others) < cost(i, positions[i], others):
                positions[i] = best
                boxes[i] = _label_box(*pixels[i], labels[i], best)
                moved = True
        if not moved:
            break
    return positions


def label_overlaps(
    xs: Sequence[float],
    ys: Sequence[float],
    labels: Sequence[str],
    positions: Sequence[str],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int = SCATTER_WIDTH,
    height: int = SCATTER_HEIGHT,
) -> int:
    """How many pairs of labels overlap (the measure ``label_positions`` minimises)."""
    pixels = _to_pixels(xs, ys, x_range, y_range, width, height)
    boxes = [
        _label_box(px, py, text, pos)
        for (px, py), text, pos in zip(pixels, labels, positions, strict=True)
    ]
    return sum(
        1
        for i in range(len(boxes))
        for j in range(i + 1, len(boxes))
        if _overlap(boxes[i], boxes[j])
    )


def scatter_layout(fig: go.Figure, title: str, x_title: str, y_title: str) -> None:
    fig.update_layout(
        title=title,
        width=SCATTER_WIDTH,
        height=SCATTER_HEIGHT,
        margin=SCATTER_MARGIN,
        xaxis_title=x_title,
        yaxis_title=y_title,
        legend=LEGEND,
        font={"size": FONT_PX},
    )


def legend_name(label: str, models: Sequence[str], per_line: int = 3) -> str:
    """A model category's legend entry names its models (the legend alone says which models
    each category holds), a few per line so the legend stays narrow."""
    names = [plot_text(m) for m in sorted(models)]
    lines = [", ".join(names[i : i + per_line]) for i in range(0, len(names), per_line)]
    return f"<b>{plot_text(label)}</b>: " + ",<br>".join(lines)


def add_labelled_points(
    fig: go.Figure,
    frame: pl.DataFrame,
    x: str,
    y: str,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    hover_extra: str = "",
    width: int = SCATTER_WIDTH,
) -> None:
    """One trace per model category (the legend), each point labelled with its model name.
    ``width`` is the figure width the labels are placed for (less where a colour bar takes
    room)."""
    positions = label_positions(
        frame[x].to_list(), frame[y].to_list(), frame["model"].to_list(), x_range, y_range, width
    )
    frame = frame.with_columns(pl.Series("_pos", positions))
    labels = frame["category_label"].fill_null("not embedded")
    for label in sorted(set(labels.to_list()), key=lambda s: (s == "not embedded", s)):
        part = frame.filter(labels == label)
        fig.add_scatter(
            x=part[x].to_list(),
            y=part[y].to_list(),
            mode="markers+text",
            name=legend_name(label, part["model"].to_list()),
            legendgroup=label,
            text=part["model"].to_list(),
            textposition=part["_pos"].to_list(),
            textfont={"size": FONT_PX},
            marker={
                "size": 2 * _MARKER_PX,
                "color": model_category_colour(None if label == "not embedded" else label),
                "line": {"width": 1, "color": "white"},
            },
            hovertemplate="<b>%{text}</b><br>" + x + "=%{x:.3f}<br>" + y + "=%{y:.3f}"
            + hover_extra + "<extra>" + plot_text(label) + "</extra>",
        )  # fmt: skip
