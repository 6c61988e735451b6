"""`lce report`: the warehouse as a static HTML folder (open DIR/index.html from disk)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lce.cli_common import DbOpt, friendly, say
from warehouse.paths import db_path


@friendly
def report(
    out: Annotated[Path, typer.Option("--out", help="Folder to write (replaced whole).")],
    db: DbOpt = None,
    models: Annotated[
        list[str] | None, typer.Option("--models", help="Only these models (repeatable).")
    ] = None,
    layers: Annotated[
        list[str] | None, typer.Option("--layers", help="Only these layers (repeatable).")
    ] = None,
    probe: Annotated[
        str | None,
        typer.Option("--probe", help="Probe folder for the top images [default: the run's]."),
    ] = None,
    max_units: Annotated[
        int, typer.Option("--max-units", min=0, help="Units with images per layer, best IoU first.")
    ] = 64,
) -> None:
    """Write a self-contained static HTML report of the warehouse into --out."""
    from lce.report.write import write_report

    index = write_report(db_path(db), out, models or (), layers or (), probe, max_units)
    size = sum(p.stat().st_size for p in index.parent.rglob("*") if p.is_file())
    say(f"wrote {index} ({size / 1e6:.1f} MB); open it in a browser")
