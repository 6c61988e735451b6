"""Where a study stands against its lake: each job done, running, partial or todo.

- done: the lake holds the (model, layer) with the study's identity (warehouse/run_identity.py:
  same probe fingerprint and settings, same weights sha256), and its image features when the
  study keeps them;
- running: a process holds the job's lock (``job_lock``: `lce study run` holds it for the
  whole job, one lock file per torchrun rank);
- partial: the job's extraction checkpoint exists (an interrupted run: the next `lce study run`
  resumes it);
- todo: none of these.

``--check`` loads each model once and runs one blank forward pass at the probe's image sizes,
so a missing layer or a model that cannot take the probe is found before any GPU time is spent.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from base.download import weights_sha256
from base.errors import LceError
from extract import registry
from extract.broden import Probe, open_probe
from extract.lake_write import study_conflict
from extract.models import resolve_normalize
from lce.study.file import Job, Study
from warehouse.lake import partition_dir, read_table
from warehouse.run_identity import differences, run_identity, study_identity

STATUSES = ("done", "running", "partial", "todo")


@dataclass(frozen=True)
class JobStatus:
    job: Job
    status: str
    n_images: int = 0  # of the lake's run, when done
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        rate = self.n_images / self.seconds if self.status == "done" and self.seconds else None
        return {"model": self.job.model.name, "layer": self.job.layer, "status": self.status,
                "images_per_second": rate}  # fmt: skip


def job_lock(lake: Path, job: Job, rank: int = 0) -> Path:
    """The lock a process holds while it runs a job (one per torchrun rank), named by the
    (model, layer), so two shards given the same index cannot both run it."""
    digest = hashlib.sha256(json.dumps([job.model.name, job.layer]).encode()).hexdigest()[:16]
    return lake / ".locks" / f"study-job-{digest}-rank{rank}.lock"


def is_held(lock: Path) -> bool:
    """Whether another process holds ``lock`` now (a flock tried and released at once; a lock
    file that does not exist is not held)."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EAGAIN, errno.EACCES)
    finally:
        os.close(fd)  # releases it if it was taken
    return False


def expected_identity(study: Study, job: Job, probe: Probe) -> dict[str, Any]:
    """The run_identity a finished run of this job has in the lake."""
    d, m = study.dissection, job.model
    random_init = m.weights is None and registry.lookup(m.spec) is None
    return {
        "probe_fingerprint": probe.fingerprint, "quantile": d.quantile, "basis": d.basis,
        "null_seed": d.null_seed, "normalize": resolve_normalize(m.spec, m.normalize),
        "weights_sha256": weights_sha256(m.weights), "model": m.spec,
        "null_permutations": d.null_permutations, "top_images": d.top_images,
        "strict": not m.non_strict, "skip_bad": d.skip_bad,
        "init_seed": m.seed if random_init else None,
        "folds": d.folds, "fold_seed": d.fold_seed if d.folds > 1 else None,
    }  # fmt: skip


def lake_runs(lake: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The lake's runs rows by (model, layer)."""
    return {(r["model"], r["layer"]): r for r in read_table(lake, "runs").to_pylist()}


def is_done(study: Study, job: Job, probe: Probe, run: dict[str, Any] | None, lake: Path) -> bool:
    if run is None or run_identity(run) != expected_identity(study, job, probe):
        return False
    if not study.dissection.features:
        return True
    folder = partition_dir(lake, "image_features", {"model": job.model.name, "layer": job.layer})
    return folder.is_dir() and any(folder.glob("*.parquet"))


def checkpoint_path(study: Study, job: Job, probe: Probe, lake: Path, world: int = 1) -> Path:
    """Where `lce extract` keeps this job's checkpoint (its work folder under lake/.tmp)."""
    from extract.engine import settings_key

    cfg = study.extract_config(job, lake)
    cfg = replace(cfg, normalize=resolve_normalize(cfg.model, cfg.normalize))
    key = settings_key(cfg, probe, job.model.name, world)
    return lake / ".tmp" / f"extract-{key}" / "rank0" / "checkpoint.pt"


def job_status(study: Study, job: Job, probe: Probe, lake: Path, runs: dict) -> JobStatus:
    run = runs.get((job.model.name, job.layer))
    if any(is_held(p) for p in _rank_locks(lake, job)):
        return JobStatus(job, "running")
    if is_done(study, job, probe, run, lake):
        assert run is not None
        return JobStatus(job, "done", int(run["n_images"] or 0), float(run["seconds"] or 0))
    if checkpoint_path(study, job, probe, lake).is_file():
        return JobStatus(job, "partial")
    return JobStatus(job, "todo")


def _rank_locks(lake: Path, job: Job) -> list[Path]:
    first = job_lock(lake, job, 0)
    return sorted(first.parent.glob(first.name.replace("-rank0.lock", "-rank*.lock")))


def plan(study: Study, lake: Path) -> list[JobStatus]:
    """Every job's status, in the study's job order."""
    probe = open_probe(study.probe)
    runs = lake_runs(lake)
    return [job_status(study, job, probe, lake, runs) for job in study.jobs()]


def lake_conflict(study: Study, lake: Path, probe: Probe) -> str | None:
    """What differs between the study and the one the lake already holds (probe set, quantile,
    basis, null seed), if anything: another study file pointing at this lake."""
    cfg = study.extract_config(study.jobs()[0], lake)
    found = study_conflict(lake, probe, cfg)
    if found:
        return found
    runs = read_table(lake, "runs").to_pylist()
    if runs:
        ours = {"null_seed": study.dissection.null_seed}
        theirs = {"null_seed": study_identity(runs[0])["null_seed"]}
        return ", ".join(differences(ours, theirs)).replace(" (", " (lake has ") or None
    return None


def progress_line(statuses: list[JobStatus]) -> str:
    """How many jobs are done, running and left, and the speed of the finished ones."""
    count = {s: sum(1 for x in statuses if x.status == s) for s in STATUSES}
    done = [x for x in statuses if x.status == "done" and x.seconds > 0]
    line = (
        f"{count['done']} of {len(statuses)} jobs done, {count['running']} running, "
        f"{count['partial'] + count['todo']} left ({count['partial']} partial)"
    )
    if done:
        rate = sum(x.n_images for x in done) / sum(x.seconds for x in done)
        line += f"; finished jobs ran at {rate:.1f} images/s"
    return line


def check_models(study: Study) -> None:
    """Load each model once (on the CPU) and check that its layers exist and that it runs on
    the probe's image sizes; the first problem is one LceError naming the model."""
    import torch

    from extract.engine import layer_shapes
    from extract.models import find_layers, infer_patch_size, load_model

    probe = open_probe(study.probe)
    for m in study.models:
        try:
            loaded = load_model(m.spec, m.weights, strict=not m.non_strict, name=m.name,
                                seed=m.seed)  # fmt: skip
            layers = find_layers(loaded.module, list(m.layers))
            patch = infer_patch_size(loaded.module)
            layer_shapes(loaded.module, layers, probe, torch.device("cpu"), patch)
        except LceError as exc:
            raise LceError(f"{study.path}: [[models]] {m.name!r}: {exc}") from None
