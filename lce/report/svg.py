"""Inline SVG figures for the static report: a labelled scatter with interval crosses (the
embedding) and sorted bars coloured by category (a layer's concept histogram). Plain strings,
every label escaped, so the report needs no JavaScript and no plotting service."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT, PAD = 640, 440, 48


def _scale(lo: float, hi: float, a: float, b: float) -> tuple[float, float]:
    """Slope and offset mapping [lo, hi] onto [a, b] (a flat range maps to the middle)."""
    if hi - lo <= 0:
        return 0.0, (a + b) / 2
    slope = (b - a) / (hi - lo)
    return slope, a - lo * slope


def scatter(
    points: Sequence[tuple[str, float, float, str]],
    crosses: Sequence[tuple[float, float, float, float, float, float]],
    x_title: str,
    y_title: str,
) -> str:
    """Points (label, x, y, colour) with 95% crosses (x, y, x_lo, x_hi, y_lo, y_hi), equal-scaled
    axes (one unit is as long on both), each point labelled with its (escaped) name."""
    xs = [p[1] for p in points] + [v for c in crosses for v in (c[2], c[3])]
    ys = [p[2] for p in points] + [v for c in crosses for v in (c[4], c[5])]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1e-9) * 1.1
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    side = min(WIDTH, HEIGHT) - 2 * PAD
    sx, ox = _scale(cx - span / 2, cx + span / 2, (WIDTH - side) / 2, (WIDTH + side) / 2)
    sy, oy = _scale(cy - span / 2, cy + span / 2, (HEIGHT + side) / 2, (HEIGHT - side) / 2)
    out = [
        f'<svg class="embedding" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img">',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" text-anchor="middle">{escape(x_title)}</text>',
        f'<text x="14" y="{HEIGHT / 2}" transform="rotate(-90 14 {HEIGHT / 2})" '
        f'text-anchor="middle">{escape(y_title)}</text>',
    ]
    for x, y, x_lo, x_hi, y_lo, y_hi in crosses:
        out.append(
            f'<path class="interval" stroke="#888" stroke-width="1.5" fill="none" '
            f'd="M{x_lo * sx + ox:.1f},{y * sy + oy:.1f}H{x_hi * sx + ox:.1f}'
            f'M{x * sx + ox:.1f},{y_lo * sy + oy:.1f}V{y_hi * sy + oy:.1f}"/>'
        )
    for label, x, y, colour in points:
        px, py = x * sx + ox, y * sy + oy
        out.append(
            f'<g class="point" data-model="{escape(label)}" data-x="{x!r}" data-y="{y!r}">'
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="6" fill="{escape(colour)}"/>'
            f'<text x="{px + 8:.1f}" y="{py - 8:.1f}" font-size="12">{escape(label)}</text></g>'
        )
    out.append("</svg>")
    return "".join(out)


def bars(rows: Sequence[tuple[str, int, str]], title: str) -> str:
    """Horizontal bars (concept, units, colour), in the order given (the caller sorts): the
    layer's concept histogram as NetDissect draws it."""
    bar_h, left, right = 16, 160, 60
    height = 30 + bar_h * max(1, len(rows))
    top = max((n for _, n, _ in rows), default=1) or 1
    scale = (WIDTH - left - right) / top
    out = [
        f'<svg class="histogram" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img">',
        f'<text x="4" y="16" font-weight="bold">{escape(title)}</text>',
    ]
    for i, (concept, n, colour) in enumerate(rows):
        y = 26 + i * bar_h
        out.append(
            f'<g class="bar" data-concept="{escape(concept)}" data-units="{n}">'
            f'<text x="{left - 6}" y="{y + 12}" text-anchor="end" font-size="12">'
            f"{escape(concept)}</text>"
            f'<rect x="{left}" y="{y + 2}" width="{n * scale:.1f}" height="{bar_h - 4}" '
            f'fill="{escape(colour)}"/>'
            f'<text x="{left + n * scale + 4:.1f}" y="{y + 12}" font-size="12">{n}</text></g>'
        )
    out.append("</svg>")
    return "".join(out)
