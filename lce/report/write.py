"""Write the static report: ``DIR/index.html`` and ``DIR/images/`` (the units' top images as
PNG thumbnails with the S > T outline), from the marts only, through the explorer's queries.

Bounded: per (model, layer) at most ``max_units`` units get images (the strongest IoU first;
the others count in the histogram only), each unit's top images as thumbnails of
``THUMB_PX`` px. A 1,280-unit layer at the default cap of 64 units and 5 top images writes 320
thumbnails (a few MB)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from base.errors import LceError
from lce.explore import embedding as emb_mod
from lce.explore import info, netdissect, overview, units
from lce.explore.images import (
    NO_CONCEPT,
    png_bytes,
    probe_dir_problem,
    run_probe_dir,
    unit_tiles,
)
from lce.explore.palette import concept_category_colour, model_category_colour
from lce.report import svg
from lce.summary import significant_correlations
from warehouse import schema

THUMB_PX = 112
MAX_UNITS = 64
STYLE = """body{font-family:sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}
.unit{display:inline-block;margin:6px;vertical-align:top;border:1px solid #ddd;padding:4px}
.unit img{width:112px;height:112px;margin:1px;image-rendering:pixelated}"""


def table(rows: Sequence[dict[str, Any]], css: str = "") -> str:
    """An HTML table of dicts, every header and cell escaped."""
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(v))}</td>" for v in row.values()) + "</tr>"
        for row in rows
    )
    return f'<table class="{css}"><tr>{head}</tr>{body}</table>'


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def provenance(db: Path) -> str:
    """dim_study's settings and dim_runs' models and layers: how the file was made."""
    described = info.describe(db)
    study = [{"setting": k, "value": v} for k, v in (described["study"] or {}).items()]
    return (
        '<section id="provenance"><h2>How this warehouse was made</h2>'
        f"<p>File {escape(Path(described['file']).name)}, schema "
        f"{escape(str(described['schema']['file']))}.</p>"
        f"{table(study, 'study')}<h3>Runs</h3>{table(described['runs'] or [], 'runs')}</section>"
    )


def embedding_section(db: Path) -> str:
    """The models in the first two components with 95% crosses, and their categories."""
    frame = emb_mod.embedding(db)
    parts = ['<section id="embedding"><h2>Learned Concepts Embedding</h2>']
    if frame.is_empty() or "pc1" not in frame.columns:
        return parts[0] + "<p>This warehouse has no embedding.</p></section>"
    y_col = "pc2" if "pc2" in frame.columns else "pc1"
    bounds = {(m, c): (lo, hi) for m, c, lo, hi in emb_mod.lce_intervals(db).iter_rows()}
    points, crosses = [], []
    for row in frame.iter_rows(named=True):
        x, y = row["pc1"], row[y_col]
        points.append((row["model"], x, y, model_category_colour(row["category_label"])))
        yc = 2 if y_col == "pc2" else 1
        if (row["model"], 1) in bounds and (row["model"], yc) in bounds:
            crosses.append((x, y, *bounds[(row["model"], 1)], *bounds[(row["model"], yc)]))
    parts.append(svg.scatter(points, crosses, "component 1", f"component {y_col[2:]}"))
    parts.append("<p>Crosses: 95% intervals of each coordinate (unit bootstrap).</p>")
    parts.append("<h3>Categories</h3>")
    parts.append(table(emb_mod.model_category_stability(db).to_dicts(), "categories"))
    parts.append("<h3>Explained variance</h3>")
    parts.append(table(emb_mod.explained_variance(db).to_dicts(), "variance"))
    return "".join(parts) + "</section>"


def correlations_section(db: Path) -> str:
    """How many correlations survive the correction, and those that do with their intervals."""
    lines = "".join(f"<li>{escape(line)}</li>" for line in overview.survival_lines(db))
    kept = significant_correlations(db).to_dicts()
    return (
        '<section id="correlations"><h2>Correlations that survive</h2>'
        f"<ul>{lines}</ul>{table(kept, 'correlations')}</section>"
    )


def histogram_bars(db: Path, model: str, layer: str) -> list[tuple[str, int, str]]:
    """The explorer's concept histogram of one layer as (concept, units, category colour) bars."""
    frame = netdissect.concept_histogram(db, model, layer)
    return [
        (r["concept"], r["units"], concept_category_colour(r["category"]))
        for r in frame.iter_rows(named=True)
    ]


def write_tile(images: Path, index: int, pixels: np.ndarray) -> str:
    """One top image as a thumbnail PNG (nearest-neighbour, so the outline keeps its colour);
    returns its path relative to the report."""
    from PIL import Image

    thumb = Image.fromarray(pixels).resize((THUMB_PX, THUMB_PX), Image.Resampling.NEAREST)
    name = f"{index:06d}.png"
    (images / name).write_bytes(png_bytes(np.asarray(thumb)))
    return f"images/{name}"


def layer_section(
    db: Path, model: str, layer: str, probe: str | None, out: Path, max_units: int, count: list[int]
) -> str:
    """One (model, layer): its concept histogram and a grid of its strongest units' top images."""
    title = f"{model} / {layer}"
    head = f'<section class="layer"><h3>{escape(title)}</h3>'
    hist = svg.bars(histogram_bars(db, model, layer), f"Units per concept: {title}")
    frame = units.units(db, model, layer)
    shown = frame.head(max_units)
    probe_dir = probe or run_probe_dir(db, model, layer) or ""
    problem = probe_dir_problem(probe_dir)
    note = f"<p>{len(frame)} units; the {len(shown)} with the highest IoU are shown.</p>"
    if problem:  # the images come from the probe folder: say why there are none
        note += f"<p>No top images: {escape(problem.replace('`', ''))}</p>"
    tiles: dict[int, list[dict[str, Any]]] = {}
    if not problem:
        wanted = tuple(int(u) for u in shown["unit"].to_list())
        for tile in unit_tiles(db, probe_dir, model, layer, wanted):
            tiles.setdefault(tile["unit"], []).append(tile)
    cells = []
    for row in shown.iter_rows(named=True):
        label = NO_CONCEPT if row["concept"] is None else f"{row['concept']} ({row['category']})"
        iou = "" if row["iou"] is None else f"{row['iou']:.3f}"
        imgs = []
        for tile in tiles.get(int(row["unit"]), []):
            if tile["pixels"] is None:
                continue
            count[0] += 1
            src = write_tile(out / "images", count[0], tile["pixels"])
            imgs.append(
                f'<img src="{src}" alt="{escape(tile["image"])}" '
                f'data-outlined="{str(tile["outlined"]).lower()}">'
            )
        cells.append(
            f'<div class="unit" data-unit="{row["unit"]}" data-iou="{iou}">'
            f"<div>unit {row['unit']}: {escape(label)} IoU {iou}</div>{''.join(imgs)}</div>"
        )
    return head + hist + note + "".join(cells) + "</section>"


def write_report(
    db: Path,
    out: Path,
    models: Sequence[str] = (),
    layers: Sequence[str] = (),
    probe: str | None = None,
    max_units: int = MAX_UNITS,
) -> Path:
    """Write the report into ``out`` (made whole in a sibling folder, then renamed in, so a
    failed run leaves no half report); returns ``out/index.html``."""
    schema.require(db)
    chosen = [
        (m, layer)
        for m, layer in units.unit_layers(db).select("model", "layer").iter_rows()
        if (not models or m in models) and (not layers or layer in layers)
    ]
    missing = sorted(set(models) - {m for m, _ in chosen} | set(layers) - {la for _, la in chosen})
    if missing:
        raise LceError(f"{db}: no dissected model or layer named {', '.join(map(repr, missing))}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write(db, work, chosen, probe, max_units)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)  # no half report left behind
        raise
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        os.replace(out, old)
        os.replace(work, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, out)
    return out / "index.html"


def _write(
    db: Path, work: Path, chosen: list[tuple[str, str]], probe: str | None, max_units: int
) -> None:
    """index.html and images/ into the (new, empty) folder ``work``."""
    (work / "images").mkdir()
    count = [0]
    sections = [layer_section(db, m, la, probe, work, max_units, count) for m, la in chosen]
    page = (
        '<!doctype html><html><head><meta charset="utf-8"><title>lce report</title>'
        f"<style>{STYLE}</style></head><body><h1>lce report</h1>"
        + provenance(db)
        + embedding_section(db)
        + correlations_section(db)
        + '<section id="layers"><h2>Layers and units</h2>'
        + "".join(sections)
        + "</section></body></html>"
    )
    (work / "index.html").write_text(page, encoding="utf-8")
