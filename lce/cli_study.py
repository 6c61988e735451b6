"""`lce study plan|run|sbatch`: a whole study from one study.toml (lce/study/)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from base.errors import LceError
from lce.cli_common import DbOpt, LakeOpt, err, friendly, say, warning_line
from warehouse.paths import db_path, lake_dir

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
    from lce.study.file import load_study, make_importable

    study = load_study(file)
    folder = lake_dir(lake)
    make_importable(study)
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


ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="Run shard I of N (I from 0), e.g. 0/4 \\[default: from SLURM_ARRAY_TASK_ID minus "
        "SLURM_ARRAY_TASK_MIN, of SLURM_ARRAY_TASK_COUNT, inside a SLURM array; else every job, "
        "then the benchmarks, the build and the summary].",
    ),
]


@study_app.command("run")
@friendly
def run(
    file: FileArg,
    shard: ShardOpt = None,
    lake: LakeOpt = None,
    db: DbOpt = None,
    lake_per_shard: Annotated[
        bool,
        typer.Option(
            "--lake-per-shard",
            help="Write the shard's jobs into LAKE.shard-I beside the study's lake, for a later "
            "`lce lake merge` (file systems whose locks cannot be trusted).",
        ),
    ] = False,
) -> None:
    """Run the study's jobs that are not done (resuming partial ones): one shard, or all of
    them followed by the benchmarks, `lce build` and the summary."""
    from lce.cli_report import summarize
    from lce.study.file import load_study, make_importable
    from lce.study.run import finish, run_jobs, shard_from, shard_lake, split, split_line

    study = load_study(file)
    folder = lake_dir(lake)
    make_importable(study)
    chosen = shard_from(shard, os.environ)
    jobs = split(study.jobs(), chosen.count)[chosen.index] if chosen else study.jobs()
    if lake_per_shard and chosen is None:
        raise LceError("--lake-per-shard needs a shard: --shard I/N or a SLURM array task")
    say(split_line(study, chosen, jobs))
    if lake_per_shard and chosen is not None:
        own = shard_lake(folder, chosen)
        say(
            f"writing into {own}; then `lce lake merge {own.parent / (folder.name + '.shard-*')} --into {folder}`"
        )
        report = run_jobs(study, own, jobs, say, progress=err.is_terminal, study_lake=folder)
    else:
        report = run_jobs(study, folder, jobs, say, progress=err.is_terminal)
    if not report.ran:
        say(f"nothing to run: {len(jobs)} of {len(jobs)} jobs already done")
    if chosen is not None or int(os.environ.get("RANK", "0")) != 0:
        return
    finish(study, folder, db_path(db), say, warning_line)
    summarize(db=db_path(db))


@study_app.command("sbatch")
@friendly
def sbatch(
    file: FileArg,
    array: Annotated[int, typer.Option("--array", help="Tasks of the job array (shards).")],
    gpus_per_task: Annotated[
        int, typer.Option(help="GPUs per task (more than one: torchrun inside the task).")
    ] = 1,
    partition: Annotated[str | None, typer.Option(help="SLURM partition.")] = None,
    time: Annotated[str | None, typer.Option(help="Time limit per task, e.g. 4:00:00.")] = None,
    account: Annotated[str | None, typer.Option(help="SLURM account.")] = None,
    extra: Annotated[
        list[str] | None,
        typer.Option(help="Another #SBATCH option, e.g. --extra=--qos=high; repeat for more."),
    ] = None,
    lake_per_shard: Annotated[
        bool,
        typer.Option(
            "--lake-per-shard",
            help="Each task writes LAKE.shard-I; the build job merges them first.",
        ),
    ] = False,
    lake: LakeOpt = None,
    db: DbOpt = None,
) -> None:
    """Write two SLURM scripts beside the study file (the array of `lce study run`, and the
    build after it) and print the two sbatch lines that submit them."""
    from lce.study.file import load_study
    from lce.study.sbatch import SlurmOptions, write_scripts

    study = load_study(file)
    opts = SlurmOptions(
        array=array, gpus_per_task=gpus_per_task, partition=partition, time=time,
        account=account, extra=tuple(extra or ()), lake_per_shard=lake_per_shard,
    )  # fmt: skip
    scripts = write_scripts(file, lake_dir(lake), db_path(db), opts)
    jobs = len(study.jobs())
    say(f"wrote {scripts.array} ({array} tasks for {jobs} jobs) and {scripts.build}; submit with:")
    for line in scripts.submit_lines():
        say(line)
