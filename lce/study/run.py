"""`lce study run`: a study's jobs, all of them or one shard of N, through `lce extract`'s engine.

The split is a function of the study file alone (never of the lake's state, which the shards
see at different moments): jobs sorted by (model, layer), then dealt out longest first (each
model's ``cost`` per layer) to the shard with the least cost so far, ties to the lower index.
So every shard of an array computes the same split and the shards are disjoint.

Each job runs under its job lock (lce/study/plan.py ``job_lock``), taken without waiting: a
second process given the same shard finds its first unfinished job held and stops in one line.
Under the lock the job is looked up again (another process may have finished it meanwhile), so
a job is never computed twice into the lake. A job resumes from its checkpoint if an earlier
run was killed (``resume=True``), and commits its tables in one all-or-nothing step.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from base.errors import LceError
from extract import distributed
from extract.broden import Probe, open_probe
from extract.engine import resolve_device, run_extract
from lce.study.file import Job, Study
from lce.study.plan import is_done, job_lock, lake_conflict, lake_runs

# How long a job lock is retried before it counts as held: `lce study plan` tests the locks
# by taking them for an instant, and must not make a starting shard give up.
LOCK_TRIES, LOCK_PAUSE_S = 10, 0.2


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass
class RunReport:
    jobs: list[Job]  # the shard's jobs (every job without a shard)
    ran: list[Job] = field(default_factory=list)
    already_done: list[Job] = field(default_factory=list)


def shard_from(option: str | None, env: Mapping[str, str]) -> Shard | None:
    """The shard to run: ``--shard I/N``, else a SLURM array task's (SLURM_ARRAY_TASK_ID minus
    SLURM_ARRAY_TASK_MIN, of SLURM_ARRAY_TASK_COUNT), else None (the whole study)."""
    if option is not None:
        index, sep, count = option.partition("/")
        what = f"--shard {option}"
    elif env.get("SLURM_ARRAY_TASK_ID"):
        if not env.get("SLURM_ARRAY_TASK_COUNT"):
            raise LceError("SLURM_ARRAY_TASK_ID is set without SLURM_ARRAY_TASK_COUNT")
        task, low = env["SLURM_ARRAY_TASK_ID"], env.get("SLURM_ARRAY_TASK_MIN", "0")
        index, sep, count = str(_int(task, "SLURM_ARRAY_TASK_ID") - _int(low, "SLURM_ARRAY_TASK_MIN")), "/", env["SLURM_ARRAY_TASK_COUNT"]  # fmt: skip
        what = f"SLURM array task {task} (min {low}) of {count}"
    else:
        return None
    if not sep or not index.lstrip("-").isdigit() or not count.isdigit():
        raise LceError(f"{what}: expected I/N, e.g. 0/4 (shards are numbered from 0)")
    shard = Shard(int(index), int(count))
    if shard.count < 1 or not 0 <= shard.index < shard.count:
        raise LceError(
            f"{what}: shard index {shard.index} out of range (0 to {shard.count - 1} for "
            f"{shard.count} shards)"
        )
    return shard


def _int(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise LceError(f"{name}={text!r}: expected an integer") from None


def split(jobs: list[Job], count: int) -> list[list[Job]]:
    """The jobs of each of ``count`` shards (see the module docstring); each in job order."""
    ordered = sorted(jobs, key=lambda j: (j.model.name, j.layer))
    heaviest_first = sorted(ordered, key=lambda j: -j.model.cost)  # stable: ties keep job order
    shards: list[list[Job]] = [[] for _ in range(count)]
    load = [0.0] * count
    for job in heaviest_first:
        i = min(range(count), key=lambda k: (load[k], k))
        shards[i].append(job)
        load[i] += job.model.cost
    return [sorted(s, key=lambda j: (j.model.name, j.layer)) for s in shards]


def split_line(study: Study, shard: Shard | None, mine: list[Job]) -> str:
    """The split stated at the start of a run."""
    total = len(study.jobs())
    names = ", ".join(j.label for j in mine) or "none"
    if shard is None:
        return f"study {study.path}: all {total} jobs: {names}"
    cost = sum(j.model.cost for j in mine)
    return (
        f"study {study.path}: shard {shard} runs {len(mine)} of {total} jobs (cost {cost:g} of "
        f"{sum(j.model.cost for j in study.jobs()):g}): {names}"
    )


@contextmanager
def holding(lock: Path, busy: str) -> Iterator[None]:
    """The job's lock, held for the block (released by the OS if the process dies)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for attempt in range(LOCK_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if attempt == LOCK_TRIES - 1:
                    raise LceError(busy) from None
                time.sleep(LOCK_PAUSE_S)
        yield
    finally:
        os.close(fd)


def run_jobs(
    study: Study,
    lake: Path,
    jobs: list[Job],
    say: Callable[[str], None],
    progress: bool = False,
    study_lake: Path | None = None,
    new_study: bool = False,
) -> RunReport:
    """Run each job not done yet (resuming partial ones) into ``lake``. ``study_lake``: the
    study's own lake when ``lake`` is a shard's (--lake-per-shard), checked too, so a job
    already merged there is not run again. ``new_study``: the first job that runs replaces the
    study the lake holds (`lce extract --new-study`), instead of refusing it (`lce demo`)."""
    probe = open_probe(study.probe)
    lakes = [lake] if study_lake is None else [lake, study_lake]
    for folder in lakes if not new_study else lakes[1:]:
        check_lake(study, folder, probe)
    dist = distributed.setup(resolve_device(study.dissection.device))
    report = RunReport(jobs)
    for job in jobs:
        lock = job_lock(lake, job, dist.rank)
        busy = (
            f"job {job.label} is running in another process (it holds {lock}): the same shard "
            "started twice? wait for it or stop it"
        )
        with holding(lock, busy):
            done = any(is_done(study, job, probe, lake_runs(f).get(_key(job)), f) for f in lakes)
            # under torchrun every rank must take rank 0's decision
            if distributed.sum_int(int(done) if dist.rank == 0 else 0, dist):
                report.already_done.append(job)
                continue
            cfg = study.extract_config(job, lake, progress)
            result = run_extract(replace(cfg, new_study=new_study and not report.ran))
            report.ran.append(job)
            if result.written:
                say(
                    f"{job.label}: {result.layers[0].n_units} units, {result.n_images} images, "
                    f"{result.seconds:.1f} s on {result.device} -> {lake}"
                )
    return report


def shard_lake(lake: Path, shard: Shard) -> Path:
    """The lake of one shard beside the study's (--lake-per-shard), for `lce lake merge`."""
    return lake.with_name(f"{lake.name}.shard-{shard.index}")


def _key(job: Job) -> tuple[str, str]:
    return job.model.name, job.layer


def check_lake(study: Study, lake: Path, probe: Probe) -> None:
    """Refuse, before any work, a lake that holds another study (another study file with other
    settings pointing at it)."""
    conflict = lake_conflict(study, lake, probe)
    if conflict:
        raise LceError(
            f"lake {lake} holds a study made with other settings than {study.path}: {conflict}; "
            "point this study at another --lake / LCE_HOME"
        )


def finish(
    study: Study, lake: Path, db: Path, say: Callable[[str], None], warn: Callable[[str], None]
) -> bool:
    """The study's task results into the lake, then `lce build` into ``db``; False when the
    warehouse was already built from this very lake state with these vars (nothing to do)."""
    from base import __version__
    from warehouse.benchmarks import add_benchmarks, unknown_models
    from warehouse.build import build
    from warehouse.lake import last_commit
    from warehouse.study import check_vars_against_lake

    for bench in study.benchmarks:
        name, frame = add_benchmarks(bench.file, lake, bench.source, unless_same=True)
        for warning in unknown_models(lake, frame["model"].to_list()):
            warn(warning)
    stamp = db.with_name(db.name + ".study.json")
    state = {"lake_commit": last_commit(lake), "vars": study.build_vars, "lce": __version__}
    if db.is_file() and stamp.is_file() and _read_json(stamp) == state:
        say(f"{db} is up to date with {lake}: nothing to build")
        return False
    check_vars_against_lake(lake, study.build_vars)
    result = build(lake, db, study.build_vars)
    for warning in result.warnings:
        warn(warning)
    pending = stamp.with_name(stamp.name + ".pending")
    pending.write_text(json.dumps(state))
    os.replace(pending, stamp)
    say(f"published {result.db} (dbt log: {result.log})")
    return True


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
