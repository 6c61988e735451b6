"""`lce info`: what a shared warehouse file is, before anyone opens it in the explorer."""

from __future__ import annotations

import sys
from typing import Annotated

import polars as pl
import typer
from rich.markup import escape

from lce.cli_common import DbOpt, console, err, friendly, print_frame, say
from lce.explore import info as info_mod
from warehouse.paths import db_path


@friendly
def info(
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """How a warehouse file was made (dim_study), its models and layers (dim_runs), its schema
    against this lce's, and which DuckDB versions can open it."""
    facts = info_mod.describe(db_path(db))
    if as_json:
        sys.stdout.write(info_mod.to_json(facts) + "\n")
        return
    schema, header = facts["schema"], facts["duckdb"]
    say(f"{facts['file']} ({facts['size_bytes'] / 1e6:.1f} MB)")
    if schema["problem"]:
        err.print(f"[yellow]note:[/] {escape(schema['problem'])}", highlight=False, soft_wrap=True)
    else:
        say(f"schema {schema['file']}, built by lce {schema['built_by']}: this lce reads it")
    say(f"opens with {header['opened_by']}; written by DuckDB {header['written_by']}")
    study = facts["study"]
    if study:
        settings = pl.DataFrame(
            {"setting": list(study), "value": [_text(v) for v in study.values()]}
        )
        print_frame(settings, "How this warehouse was made (dim_study)")
    if facts["runs"] is not None:
        say(f"Models and layers (dim_runs): {len(facts['runs'])}")
        for run in facts["runs"]:
            say("  " + info_mod.run_line(run))
    if schema["readable"]:
        console.print(
            f"open it: [bold]lce app --db {escape(facts['file'])}[/]",
            highlight=False,
            soft_wrap=True,
        )


def _text(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "(none)"
    return "" if value is None else str(value)
