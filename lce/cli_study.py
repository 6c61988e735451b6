"""`lce study plan|run|sbatch`: a whole study from one study.toml (lce/study/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lce.cli_common import LakeOpt, friendly, say, warning_line
from warehouse.paths import lake_dir

study_app = typer.Typer(
    help="Studies: many models and layers from one study.toml, planned, run (whole or as "
    "shards of a job array) and merged.",
    no_args_is_help=True,
)
FileArg = Annotated[Path, typer.Argument(help="The study file (study.toml).")]


@study_app.command("plan")
@friendly
def plan(
    file: FileArg,
    lake: LakeOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="A list of {model, layer, status, ...} objects.")
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Also load each model once (CPU) and check that its layers exist and run on "
            "the probe's images.",
        ),
    ] = False,
) -> None:
    """Each job (model, layer): done, running, partial or todo; then the progress so far."""
    from extract.broden import open_probe
    from lce.study import plan as plan_mod
    from lce.study.file import load_study

    study = load_study(file)
    folder = lake_dir(lake)
    if check:
        plan_mod.check_models(study)
    conflict = plan_mod.lake_conflict(study, folder, open_probe(study.probe))
    statuses = plan_mod.plan(study, folder)
    if as_json:
        typer.echo(json.dumps([s.as_dict() for s in statuses], indent=2))
    else:
        width = max(len(s.job.label) for s in statuses)
        for s in statuses:
            say(f"{s.job.label:<{width}}  {s.status}")
        say(plan_mod.progress_line(statuses))
    if conflict:
        warning_line(
            f"lake {folder} holds a study made with other settings: {conflict}; "
            "`lce study run` will refuse it"
        )
    if check:
        say(f"checked {len(study.models)} models: every layer exists and runs on the probe")
