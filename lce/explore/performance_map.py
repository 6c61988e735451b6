"""The performance map of the Tasks page: a result interpolated over two components by
distance-weighted k-nearest neighbours (as the paper draws it), the models on top, each label in
the colour that reads on the map where it sits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import polars as pl

from lce.explore.names import component_label
from lce.explore.palette import COLORBAR_PX, FONT_PX, SCATTER_WIDTH
from lce.explore.safe_text import plot_text
from lce.explore.scatter_text import add_labelled_points, padded_range, scatter_layout


def knn_interpolate(
    points: np.ndarray, values: np.ndarray, queries: np.ndarray, k: int
) -> np.ndarray:
    """Distance-weighted k-nearest-neighbour regression (weights 1/d; a query on a point takes
    that point's value), as scikit-learn's KNeighborsRegressor(weights='distance') computes it:
    the paper's performance maps. Plain numpy so the Tasks page need not import scikit-learn."""
    points = np.asarray(points, dtype=float)
    values = np.asarray(values, dtype=float)
    queries = np.asarray(queries, dtype=float)
    k = max(1, min(k, len(points)))
    dist = np.sqrt(((queries[:, None, :] - points[None, :, :]) ** 2).sum(axis=2))
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    d = np.take_along_axis(dist, nearest, axis=1)
    v = values[nearest]
    exact = d == 0
    with np.errstate(divide="ignore"):
        weights = np.where(exact.any(axis=1, keepdims=True), exact.astype(float), 1.0 / d)
    return (weights * v).sum(axis=1) / weights.sum(axis=1)


@dataclass(frozen=True)
class PerformanceMap:
    """A grid of interpolated performance over two components."""

    x: np.ndarray  # grid x coordinates (component x)
    y: np.ndarray  # grid y coordinates (component y)
    z: np.ndarray  # len(y) x len(x)


def performance_map(
    points: pl.DataFrame, x: int, y: int, k: int = 3, resolution: int = 100
) -> PerformanceMap:
    xs, ys = points[f"pc{x}"].to_numpy(), points[f"pc{y}"].to_numpy()
    gx = np.linspace(*padded_range(xs.tolist()), resolution)
    gy = np.linspace(*padded_range(ys.tolist()), resolution)
    grid = np.array([(a, b) for b in gy for a in gx])
    z = knn_interpolate(np.column_stack([xs, ys]), points["value"].to_numpy(), grid, k)
    return PerformanceMap(gx, gy, z.reshape(len(gy), len(gx)))


DARK_LABEL, LIGHT_LABEL = "#111111", "#FFFFFF"


def relative_luminance(rgb: str) -> float:
    """WCAG relative luminance of 'rgb(r, g, b)' or '#rrggbb' (0 black, 1 white)."""
    from plotly.colors import hex_to_rgb, unlabel_rgb

    r, g, b = hex_to_rgb(rgb) if rgb.startswith("#") else unlabel_rgb(rgb)

    def linear(c: float) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)


def map_value_near_label(pmap: PerformanceMap, x: float, y: float, position: str) -> float:
    """The map's value where a label sits: the grid cell one label-offset from the point in the
    direction of its textposition (about 4% of each axis)."""
    dx = 0.04 * (pmap.x[-1] - pmap.x[0])
    dy = 0.04 * (pmap.y[-1] - pmap.y[0])
    sx = 1 if "right" in position else -1 if "left" in position else 0
    sy = 1 if "top" in position else -1 if "bottom" in position else 0
    i = int(np.abs(pmap.y - (y + sy * dy)).argmin())
    j = int(np.abs(pmap.x - (x + sx * dx)).argmin())
    return float(pmap.z[i, j])


def label_colour_on_map(value: float, zmin: float, zmax: float, higher_is_better: bool) -> str:
    """White text where the heatmap is dark, near-black where it is light (WCAG contrast)."""
    from plotly.colors import sample_colorscale

    t = 0.5 if zmax <= zmin else (value - zmin) / (zmax - zmin)
    t = min(1.0, max(0.0, t if higher_is_better else 1 - t))
    background = relative_luminance(sample_colorscale("Viridis", [t])[0])
    # contrast with white vs with black: pick the larger
    return (
        LIGHT_LABEL if (1.05 / (background + 0.05)) > ((background + 0.05) / 0.05) else DARK_LABEL
    )


def performance_map_figure(
    points: pl.DataFrame,
    pmap: PerformanceMap,
    x: int,
    y: int,
    evr: dict[int, float],
    result: str,
    metric: str,
    higher_is_better: bool,
    k: int,
) -> go.Figure:
    """The interpolated map as a heatmap (brighter = better, whatever the metric's direction),
    with the models on top."""
    fig = go.Figure()
    # The colour scale spans the observed values as well as the grid: the grid (weighted means)
    # need not reach the extreme models, whose value would then fall off the scale.
    observed = [float(v) for v in points["value"].to_list() if v is not None]
    zmin = min([float(np.nanmin(pmap.z)), *observed])
    zmax = max([float(np.nanmax(pmap.z)), *observed])
    fig.add_heatmap(
        x=pmap.x.tolist(),
        y=pmap.y.tolist(),
        z=pmap.z.tolist(),
        zmin=zmin,
        zmax=zmax,
        colorscale="Viridis",
        reversescale=not higher_is_better,
        colorbar={"title": {"text": plot_text(metric) + ("" if higher_is_better else " (lower is better)")}},
        hovertemplate="PC" + str(x) + "=%{x:.3f}<br>PC" + str(y) + "=%{y:.3f}<br>"
        + plot_text(metric) + "≈%{z:.3f}<extra></extra>",
        name="interpolated",
        showlegend=False,
    )  # fmt: skip
    x_range = (float(pmap.x[0]), float(pmap.x[-1]))
    y_range = (float(pmap.y[0]), float(pmap.y[-1]))
    add_labelled_points(
        fig,
        points,
        f"pc{x}",
        f"pc{y}",
        x_range,
        y_range,
        hover_extra="<br>value=%{customdata:.3f}",
        width=SCATTER_WIDTH - COLORBAR_PX,
    )
    for trace in fig.data[1:]:
        names = list(trace.text)
        value_of = dict(zip(points["model"].to_list(), points["value"].to_list(), strict=True))
        trace.customdata = [value_of[n] for n in names]
        # Each label in the colour that reads on the map where it sits: white on the dark end
        # of Viridis, near-black on the bright end (a halo alone did not carry on dark regions).
        colours = []
        for px, py, pos in zip(trace.x, trace.y, trace.textposition, strict=True):
            under = map_value_near_label(pmap, float(px), float(py), pos)
            colours.append(label_colour_on_map(under, zmin, zmax, higher_is_better))
        trace.textfont = {"size": FONT_PX, "color": colours}
    scatter_layout(
        fig,
        f"{plot_text(result)}: distance-weighted {k}-NN map",
        component_label(x, evr.get(x)),
        component_label(y, evr.get(y)),
    )
    fig.update_xaxes(range=list(x_range))
    fig.update_yaxes(range=list(y_range))
    return fig
