"""`lce study sbatch`: a study as two SLURM scripts, the job array and the build after it.

The array's tasks run `lce study run FILE` with no --shard: each task's shard comes from
SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_COUNT, which SLURM sets. With
more than one GPU per task, torchrun runs each job data-parallel inside the task. The build job
(after every task succeeded: ``--dependency=afterok``) merges the shards' lakes when they have
their own, then runs `lce study run FILE` again: nothing left to dissect, so it adds the
benchmarks, builds and prints the summary. Every path in the scripts is absolute, and lce is
started by the Python that wrote them, so a compute node runs this very installation.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from base.errors import LceError


@dataclass(frozen=True)
class SlurmOptions:
    array: int
    gpus_per_task: int = 1
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    extra: tuple[str, ...] = ()  # more #SBATCH options, as given
    lake_per_shard: bool = False


@dataclass(frozen=True)
class Scripts:
    array: Path
    build: Path

    def submit_lines(self) -> list[str]:
        """The two sbatch lines: the array, then the build once every task succeeded."""
        return [
            f"ARRAY=$(sbatch --parsable {shlex.quote(str(self.array))})",
            f"sbatch --dependency=afterok:${{ARRAY%%;*}} {shlex.quote(str(self.build))}",
        ]


def _header(name: str, opts: SlurmOptions, log: str, gpus: int) -> list[str]:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", "#SBATCH --ntasks=1"]
    if gpus:
        lines.append(f"#SBATCH --gpus-per-task={gpus}")
    for key in ("partition", "time", "account"):
        value = getattr(opts, key)
        if value:
            lines.append(f"#SBATCH --{key}={value}")
    lines.append(f"#SBATCH --output={log}")
    lines += [f"#SBATCH {extra}" for extra in opts.extra]
    return lines


def check_options(opts: SlurmOptions) -> None:
    if opts.array < 1:
        raise LceError(f"--array {opts.array}: expected at least 1 task")
    if opts.gpus_per_task < 0:
        raise LceError(f"--gpus-per-task {opts.gpus_per_task}: expected 0 or more")
    for extra in opts.extra:
        if "\n" in extra or not extra.startswith("--"):
            raise LceError(f"--extra {extra!r}: expected one sbatch option, e.g. --qos=high")


def write_scripts(study_file: Path, lake: Path, db: Path, opts: SlurmOptions) -> Scripts:
    """Write ``<study>-array.sbatch`` and ``<study>-build.sbatch`` beside the study file."""
    check_options(opts)
    study_file, lake, db = study_file.resolve(), lake.resolve(), db.resolve()
    folder, stem = study_file.parent, study_file.stem
    logs = folder / "slurm-logs"
    q = shlex.quote
    lce = f"{q(sys.executable)} -m lce.cli"
    if opts.gpus_per_task > 1:
        lce = (f"{q(sys.executable)} -m torch.distributed.run --standalone "
               f"--nproc_per_node {opts.gpus_per_task} -m lce.cli")  # fmt: skip
    per_shard = " --lake-per-shard" if opts.lake_per_shard else ""
    array = _header(f"lce-{stem}", opts, f"{logs}/%x-%A_%a.out", opts.gpus_per_task)
    array.insert(2, f"#SBATCH --array=0-{opts.array - 1}")
    array += [
        "set -euo pipefail",
        f"mkdir -p {q(str(logs))}",
        f"cd {q(str(folder))}",
        "# the shard is SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT",
        f"{lce} study run {q(str(study_file))} --lake {q(str(lake))}{per_shard}",
    ]
    build = _header(f"lce-{stem}-build", opts, f"{logs}/%x-%j.out", 0)
    build += ["set -euo pipefail", f"cd {q(str(folder))}"]
    if opts.lake_per_shard:
        shards = " ".join(q(f"{lake}.shard-{i}") for i in range(opts.array))
        build.append(f"{q(sys.executable)} -m lce.cli lake merge {shards} --into {q(str(lake))}")
    build.append(
        f"{q(sys.executable)} -m lce.cli study run {q(str(study_file))} --lake {q(str(lake))} "
        f"--db {q(str(db))}"
    )
    logs.mkdir(parents=True, exist_ok=True)  # SLURM opens the log files before a script runs
    scripts = Scripts(folder / f"{stem}-array.sbatch", folder / f"{stem}-build.sbatch")
    for path, lines in ((scripts.array, array), (scripts.build, build)):
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o755)
    return scripts
