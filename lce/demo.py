"""`lce demo`: the whole toolkit on its own small world, with no downloads.

probe set -> zoo -> dissect every model (through the demo's own study file, work/study.toml, as
`lce study run` does) -> task benchmarks -> dbt build
-> publish -> summary. Every stage caches what it made in the work folder, so a rerun only
rebuilds what changed.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from extract.broden import open_probe
from lce import synth, taskbench, zoo
from lce.study.file import load_study
from lce.study.plan import lake_conflict
from lce.study.run import run_jobs
from warehouse.benchmarks import add_benchmarks
from warehouse.build import build
from warehouse.query import query


@dataclass(frozen=True)
class DemoConfig:
    workdir: Path
    probe_images: int = 400
    image_size: int = zoo.IMAGE_SIZE
    train_steps: int = 200
    train_pool: int = 1500
    task_images: int = 1500
    probe_seed: int = 7  # the probe set, the training set and the task set use three seeds
    train_seed: int = 1
    task_seed: int = 2025
    # Null permutations per extraction (lce extract --null-permutations): enough for each unit's
    # null to be the best of several chance matches, cheap on 400 small images.
    null_permutations: int = 5


def ensure_probe(cfg: DemoConfig) -> Path:
    """The synthetic probe set, regenerated only when its parameters change."""
    probe = cfg.workdir / "probe"
    marker = probe / "params.json"
    params = {"n": cfg.probe_images, "size": cfg.image_size, "seed": cfg.probe_seed}
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return probe
    if probe.exists():
        shutil.rmtree(probe)
    synth.write_probe(probe, n=cfg.probe_images, size=cfg.image_size, seed=cfg.probe_seed)
    marker.write_text(json.dumps(params))
    return probe


def write_study(cfg: DemoConfig, weights: dict[str, Path]) -> Path:
    """The demo's study file (work/study.toml): its probe set, its zoo with each model's
    trained weights, one layer each; the dissection runs through it as `lce study run` does."""
    lines = [
        "# lce demo's study: written by `lce demo`, run with its dissection settings",
        '[probe]\npath = "broden:probe"\n',
        f"[dissection]\nbatch_size = 64\nworkers = 0\nnull_permutations = {cfg.null_permutations}\n",
    ]
    for entry in zoo.ZOO:
        rel = weights[entry.name].resolve().relative_to(cfg.workdir.resolve())
        lines.append(
            f'[[models]]\nname = "{entry.name}"\nspec = "{entry.factory}"\nweights = "{rel}"\n'
            f'layers = ["{zoo.DISSECT_LAYER}"]\n'
        )
    path = cfg.workdir / "study.toml"
    pending = path.with_name(path.name + ".pending")
    pending.write_text("\n".join(lines))
    os.replace(pending, path)
    return path


def dissect(cfg: DemoConfig, weights: dict[str, Path], advance: Callable[[int], None]) -> None:
    """Every zoo model through the demo's study file; a lake holding another study (an earlier
    demo on another probe set) is replaced by the first job that runs."""
    study = load_study(write_study(cfg, weights))
    lake = cfg.workdir / "lake"
    fresh = lake_conflict(study, lake, open_probe(study.probe)) is not None
    for job in study.jobs():
        report = run_jobs(study, lake, [job], say=lambda _: None, new_study=fresh)
        fresh = fresh and not report.ran
        advance(1)


def run_demo(cfg: DemoConfig, console: Console | None = None) -> Path:
    """Run every stage; returns the published database."""
    console = console or Console()
    work = cfg.workdir
    lake, db = work / "lake", work / "lce.duckdb"
    progress = Progress(
        TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=not console.is_terminal,
    )  # fmt: skip
    with progress:
        stage = progress.add_task("1/5 probe set", total=1)
        ensure_probe(cfg)
        progress.update(stage, completed=1)

        stage = progress.add_task("2/5 train the zoo", total=len(zoo.ZOO) * cfg.train_steps)
        data = None
        weights = {}
        for entry in zoo.ZOO:
            key = zoo.weights_key(entry, cfg.train_steps, cfg.train_pool, cfg.train_seed)
            if (
                data is None
                and entry.objective != "random"
                and not (work / "zoo" / f"{entry.name}-{key}.pt").is_file()
            ):
                data = zoo.training_pool(cfg.train_pool, cfg.train_seed)
            weights[entry.name] = zoo.train(
                entry, work / "zoo", steps=cfg.train_steps, pool=cfg.train_pool,
                seed=cfg.train_seed, data=data, progress=lambda k: progress.advance(stage, k),
            )  # fmt: skip

        stage = progress.add_task("3/5 dissect (lce study)", total=len(zoo.ZOO))
        dissect(cfg, weights, lambda k: progress.advance(stage, k))

        stage = progress.add_task("4/5 task benchmarks", total=len(zoo.ZOO))
        bench_file = work / "benchmarks.csv"
        bench_key = json.dumps(
            [cfg.task_images, cfg.task_seed, sorted(str(p) for p in weights.values())]
        )
        key_file = work / "benchmarks.key"
        if not (bench_file.is_file() and key_file.is_file() and key_file.read_text() == bench_key):
            n_train = cfg.task_images * 2 // 3
            task_set = taskbench.task_data(n_train, cfg.task_images - n_train, cfg.task_seed)
            rows = []
            for entry in zoo.ZOO:
                rows += taskbench.benchmark(
                    zoo.load(entry, weights[entry.name]), entry.name, task_set, n_train
                )
                progress.advance(stage)
            with bench_file.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
            key_file.write_text(bench_key)
        progress.update(stage, completed=len(zoo.ZOO))
        add_benchmarks(bench_file, lake, source="demo")

        stage = progress.add_task("5/5 dbt build + publish", total=1)
        build(lake, db, {})
        progress.update(stage, completed=1)
    return db


def category_counts(db: Path) -> pl.DataFrame:
    """Interpretable units per concept category, one row per model; the category columns in
    name order (a pivot takes them in row order, which DuckDB does not fix without ORDER BY)."""
    frame = query(
        db,
        """
        select m.model, c.category, coalesce(c.n_units, 0) as n_units
        from dim_models m join fct_category_profiles c using (model)
        order by c.category, m.model
        """,
    )
    if frame.is_empty():
        return frame
    return frame.pivot(on="category", index="model", values="n_units").fill_null(0).sort("model")
