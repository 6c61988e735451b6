"""`lce sensitivity`: how much do the embedding and the categories depend on the thresholds?

Every setting of a grid (min IoU x components x k) is built for real with ``warehouse.build``
into a scratch file of its own (in a temporary folder beside the published file, deleted at
the end), and compared with the reference setting (the dbt project's defaults, built too if the
grid lacks it): explained variance, and the adjusted Rand index of the categories against the
reference's over the models embedded in both.

Publishing: the results go into the published file's ``fct_sensitivity`` table (dbt builds it
empty, so it always exists and keeps its column descriptions). The published file is copied to
a work file beside it, the table is filled there, the copy is CHECKPOINTed and then
``os.replace``d over the published file, so readers see the old file or the new one, never a
half-written one. If `lce build` published a new file meanwhile (its inode, size or mtime
changed), nothing is replaced and the command says so. A later `lce build` starts the table
empty again: its numbers describe the lake and vars of the build they were made for.
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import yaml

from base.errors import LceError
from base.scratch import owned_scratch
from warehouse import build as build_mod
from warehouse import schema, study
from warehouse.build import glob_escape
from warehouse.lake import file_lock
from warehouse.paths import dbt_project_dir
from warehouse.stats.stability import adjusted_rand_index

DEFAULT_MIN_IOU = (0.02, 0.04, 0.06)
DEFAULT_N_COMPONENTS = (3,)
DEFAULT_N_CATEGORIES: tuple[int | str, ...] = (2, 3, 4)
# The scratch builds only need the embedding and the categories: one bootstrap resample keeps
# them fast (the stability marts of the scratch files are thrown away).
SCRATCH_VARS = {"stability_resamples": 1}
# What read_outcome reads, with its ancestors: a scratch file is read for these and deleted, so
# the similarity, matching, null and task marts (two thirds of the models) are not built there
SCRATCH_SELECT = ("+dim_models", "+fct_lce_components", "+dim_model_categories")
COLUMNS = (
    "setting", "min_iou", "n_components", "n_categories", "is_reference", "n_models",
    "components", "explained_variance", "explained_variance_pc1", "k", "n_common_models",
    "adjusted_rand_index",
)  # fmt: skip


@dataclass(frozen=True)
class Setting:
    min_iou: float
    n_components: int
    n_categories: int | str

    def vars(self) -> dict[str, Any]:
        return {
            "min_iou": self.min_iou,
            "n_components": self.n_components,
            "n_categories": self.n_categories,
        }

    def label(self) -> str:
        return f"min_iou={self.min_iou:g} n_components={self.n_components} k={self.n_categories}"


@dataclass(frozen=True)
class Outcome:
    n_models: int
    components: int
    explained_variance: float | None
    explained_variance_pc1: float | None
    k: int
    categories: dict[str, int]


def parse_list(text: str, key: str) -> list[Any]:
    """A comma-separated flag value -> values checked like `lce build --var key=value`."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise LceError(f"--{key.replace('_', '-')}: expected a comma-separated list of values")
    values = [build_mod.parse_vars([f"{key}={item}"])[key] for item in items]
    return list(dict.fromkeys(values))


def reference_setting() -> Setting:
    """The dbt project's default min_iou, n_components and n_categories."""
    defaults = yaml.safe_load((dbt_project_dir() / "dbt_project.yml").read_text())["vars"]
    return Setting(
        float(defaults["min_iou"]), int(defaults["n_components"]), defaults["n_categories"]
    )


def default_n_categories(lake: Path) -> list[int | str]:
    """DEFAULT_N_CATEGORIES without the k above the lake's dissected models: k-means cannot make
    more categories than there are models, so on a two-model study the default grid is k = 2."""
    n = len(study.dissected_models(lake))
    return [k for k in DEFAULT_N_CATEGORIES if not isinstance(k, int) or k <= n]


def grid(
    min_ious: Sequence[float], n_components: Sequence[int], n_categories: Sequence[int | str]
) -> list[Setting]:
    """The reference setting first (always built), then the grid in flag order."""
    reference = reference_setting()
    settings = [
        Setting(*values) for values in itertools.product(min_ious, n_components, n_categories)
    ]
    return [reference, *[s for s in settings if s != reference]]


def read_outcome(db: Path) -> Outcome:
    with duckdb.connect(str(db), read_only=True) as conn:
        n_models = conn.execute("select count(*) from dim_models where in_embedding").fetchone()
        ratios = [r for (r,) in conn.execute(
            "select explained_variance_ratio from fct_lce_components order by component"
        ).fetchall()]  # fmt: skip
        cats = conn.execute("select model, category_id from dim_model_categories").fetchall()
    return Outcome(
        n_models=int(n_models[0]) if n_models else 0,
        components=len(ratios),
        explained_variance=float(sum(ratios)) if ratios else None,
        explained_variance_pc1=float(ratios[0]) if ratios else None,
        k=len({c for _, c in cats}),
        categories={m: int(c) for m, c in cats},
    )


def rows(settings: list[Setting], outcomes: list[Outcome]) -> list[tuple]:
    """fct_sensitivity's rows; setting 1 is the reference."""
    reference = outcomes[0].categories
    result = []
    for i, (setting, outcome) in enumerate(zip(settings, outcomes, strict=True), start=1):
        common = sorted(set(reference) & set(outcome.categories))
        ari = (
            adjusted_rand_index(
                np.array([reference[m] for m in common]),
                np.array([outcome.categories[m] for m in common]),
            )
            if common
            else None
        )
        result.append(
            (
                i, setting.min_iou, setting.n_components, str(setting.n_categories), i == 1,
                outcome.n_models, outcome.components, outcome.explained_variance,
                outcome.explained_variance_pc1, outcome.k, len(common), ari,
            )
        )  # fmt: skip
    return result


def _stamp(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def publish(db: Path, table_rows: list[tuple], stamp: tuple[int, int, int]) -> None:
    """Fill fct_sensitivity in a copy of ``db`` and swap the copy in atomically.

    Under `lce build`'s publishing lock, so a build cannot publish between the copy and the
    swap; one that published earlier, while the grid was built, changed ``stamp``.
    """
    busy = f"an lce build is publishing {db} right now; run `lce sensitivity` again after it"
    with file_lock(db.with_name(f".{db.name}.lock"), exclusive=True, wait=False, busy=busy):
        for stale in db.parent.glob(f".{glob_escape(db.name)}.sensitivity-work-*"):
            stale.unlink(missing_ok=True)  # left by a killed run (we hold the lock)
        _publish_locked(db, table_rows, stamp)


def _publish_locked(db: Path, table_rows: list[tuple], stamp: tuple[int, int, int]) -> None:
    work = db.with_name(f".{db.name}.sensitivity-work-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copyfile(db, work)
        with duckdb.connect(str(work)) as conn:
            conn.execute("delete from fct_sensitivity")
            placeholders = ", ".join("?" for _ in COLUMNS)
            if table_rows:
                conn.executemany(
                    f"insert into fct_sensitivity ({', '.join(COLUMNS)}) values ({placeholders})",
                    table_rows,
                )
            conn.execute("CHECKPOINT")
        if _stamp(db) != stamp:
            raise LceError(
                f"{db} was replaced while the grid was built (another `lce build`?); "
                "it was left as the other command wrote it: run `lce sensitivity` again"
            )
        os.replace(work, db)
    finally:
        work.unlink(missing_ok=True)
        Path(f"{work}.wal").unlink(missing_ok=True)


def run(
    lake: Path,
    db: Path,
    min_ious: Sequence[float] = DEFAULT_MIN_IOU,
    n_components: Sequence[int] = DEFAULT_N_COMPONENTS,
    n_categories: Sequence[int | str] | None = None,
    extra_vars: dict[str, Any] | None = None,
    progress: Callable[[int, int, Setting], None] | None = None,
) -> list[tuple]:
    """Build every setting into scratch files, then publish ``fct_sensitivity`` into ``db``.
    ``n_categories`` None is the default grid, less the k above the lake's models."""
    db = db.resolve()
    schema.require(db)  # a file of another schema has no fct_sensitivity of this shape
    extra = dict(extra_vars or {})
    clash = sorted(set(extra) & {"min_iou", "n_components", "n_categories"})
    if clash:
        raise LceError(f"--var {clash[0]}: set it with the grid's own flag instead")
    if n_categories is None:
        n_categories = default_n_categories(lake)
    settings = grid(min_ious, n_components, n_categories)
    # The reference is the dbt defaults, whose k the build caps on a smaller study (as in
    # `lce build`); a k the user gave is refused when it exceeds the models.
    for setting in settings[1:]:
        study.check_vars_against_lake(lake, setting.vars())
    stamp = _stamp(db)
    outcomes = []
    # the folders that killed runs left beside the file go first
    with owned_scratch(f".{db.name}.sensitivity-scratch-", db.parent) as tmp:
        for i, setting in enumerate(settings, start=1):
            if progress:
                progress(i, len(settings), setting)
            scratch = Path(tmp) / f"setting-{i}.duckdb"
            try:
                build_mod.build(
                    lake,
                    scratch,
                    {**SCRATCH_VARS, **extra, **setting.vars()},
                    select=SCRATCH_SELECT,
                )
            except LceError as exc:
                kept = db.with_name(f".{db.stem}.sensitivity.log")
                scratch_log = scratch.with_name(f".{scratch.stem}.build.log")
                if scratch_log.is_file():
                    shutil.copyfile(scratch_log, kept)
                raise LceError(
                    f"setting {setting.label()}: {exc}; {db} left as it was (log kept: {kept})"
                ) from None
            outcomes.append(read_outcome(scratch))
            scratch.unlink()
    table_rows = rows(settings, outcomes)
    publish(db, table_rows, stamp)
    return table_rows
