"""The `lce` command line. Each command is a thin wrapper over a plain function.

This module holds the Typer app and the order of its commands (the order `lce --help` lists);
the commands live beside what they drive: cli_extract (extract, models), cli_warehouse (build,
sensitivity, sql, app, benchmarks, reference), cli_report (demo, summary), cli_info (info),
cli_share (report), cli_probe (probe), cli_study (study),
and cli_common what they share (consoles, --lake/--db, one-line errors, tables).
"""

from __future__ import annotations

import typer

from lce import cli_extract, cli_info, cli_report, cli_share, cli_warehouse
from lce.cli_probe import probe_app
from lce.cli_study import study_app

app = typer.Typer(
    help="Dissect vision models into concept tables and compare them in a DuckDB warehouse.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(cli_warehouse.benchmarks_app, name="benchmarks")
app.add_typer(cli_warehouse.reference_app, name="reference")
app.add_typer(cli_warehouse.lake_app, name="lake")
app.command("extract")(cli_extract.extract)
app.command("models")(cli_extract.models)
app.add_typer(study_app, name="study")
app.command("build")(cli_warehouse.build)
app.command("sensitivity")(cli_warehouse.sensitivity)
app.add_typer(probe_app, name="probe")
app.command("demo")(cli_report.demo)
app.command("summary")(cli_report.summarize)
app.command("info")(cli_info.info)
app.command("report")(cli_share.report)
app.command("sql")(cli_warehouse.sql)
# `lce app -- --server.port 8502`: what follows goes to `streamlit run` untouched.
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
app.command("app", context_settings=PASS_THROUGH)(cli_warehouse.open_app)


if __name__ == "__main__":
    app()
