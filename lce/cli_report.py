"""`lce demo` and `lce summary`: the warehouse's findings printed as tables and sentences.

The print_* helpers are shared with `lce build` (print_notes), so every command words a
finding the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from lce import summary
from lce.cli_common import DbOpt, console, friendly, print_frame, printable, say
from warehouse import schema
from warehouse.paths import db_path, demo_dir


@friendly
def demo(
    workdir: Annotated[
        Path | None,
        typer.Option(help="Work folder (default: $LCE_HOME/demo, i.e. ./lce-data/demo)."),
    ] = None,
    probe_images: Annotated[int, typer.Option(help="Probe set images.")] = 400,
    train_steps: Annotated[int, typer.Option(help="Training steps per zoo model.")] = 200,
    task_images: Annotated[int, typer.Option(help="Images for the task benchmarks.")] = 1500,
) -> None:
    """The embedded default, end to end: synthetic world, zoo, dissection, warehouse, summary."""
    import time

    from lce import demo as demo_mod
    from lce import zoo

    tic = time.perf_counter()
    cfg = demo_mod.DemoConfig(
        workdir=workdir or demo_dir(),
        probe_images=probe_images,
        train_steps=train_steps,
        task_images=task_images,
    )
    db = demo_mod.run_demo(cfg, console)
    console.print(f"\n[bold]lce demo[/]: {len(zoo.ZOO)} models of one small CNN, dissected on "
                  f"{probe_images} synthetic images, in {time.perf_counter() - tic:.0f} s")  # fmt: skip
    print_frame(demo_mod.category_counts(db), "Interpretable units per concept category")
    print_frame(summary.models(db), "Models and their categories")
    print_frame(summary.explained_variance(db), "Explained variance")
    print_label_stability(db)
    print_frame(summary.top_loadings(db), "Concepts loading most on each component")
    print_correlations(db)
    print_rules(db)
    print_similarity(db)
    print_unit_matches(db)
    print_notes(db)
    console.print(f"open the explorer: [bold]lce app --db {escape(str(db))}[/]")


@friendly
def summarize(db: DbOpt = None) -> None:
    """Print the models, categories, explained variance, top loadings and task correlations."""
    path = db_path(db)
    schema.require(path)  # a file of another schema: one sentence, exit 1
    print_frame(summary.models(path), "Models")
    print_frame(summary.explained_variance(path), "Explained variance")
    print_stability(path)
    print_label_stability(path)
    print_frame(summary.top_loadings(path), "Concepts loading most on each component")
    print_correlations(path)
    print_rules(path)
    print_similarity(path)
    print_unit_matches(path)
    print_notes(path)


def print_rules(db: Path) -> None:
    """Units each interpretability rule keeps, where the models have a null to compare with."""
    frame = summary.interpretable_by_rule(db)
    if not frame.is_empty():
        print_frame(
            frame, "Interpretable units by rule (fixed: iou > min_iou; null: also above own null)"
        )


def print_stability(db: Path) -> None:
    """The unit bootstrap in two lines: how often the categories come back, least stable first."""
    for line in summary.stability_lines(db):
        say(line)


def print_label_stability(db: Path) -> None:
    """How many interpretable units keep their label when each fold of the probe is left out, and
    how much the profiles and categories move."""
    for line in (summary.label_stability_line(db), summary.fold_embedding_line(db)):
        if line:
            say(line)


def print_correlations(db: Path) -> None:
    """Only the correlations that survive the multiple-testing correction ("k of N survive"),
    with r, its bootstrap interval, p and q, and what each task family requires; with no task
    results, why there are none."""
    reason = summary.no_task_results_reason(db)
    if reason:
        say(f"Task correlations: {reason}.")
    for row in summary.correlation_survival(db).iter_rows(named=True):
        if row["tests"]:
            say(summary.survival_line(row))
    significant = summary.significant_correlations(db)
    if not significant.is_empty():
        print_frame(
            significant,
            "Component / task correlations that survive (r, its bootstrap 95% interval lo-hi, "
            "p, q)",
        )
    requirements = summary.task_requirements(db)
    if not requirements.is_empty():
        print_frame(
            requirements,
            "What each task family requires (concept categories whose correlation survives)",
        )
    elif not reason and requirements.width:  # no columns: a file from before the mart
        say(
            "What each task family requires: no concept category's correlation with a task "
            "result survives the correction (`lce build --var fdr_family=task` corrects within "
            "each task family instead of over the whole table)."
        )


def print_similarity(db: Path) -> None:
    """The geometric measures' agreement with the concept embedding, when the file has them."""
    lines = summary.similarity_lines(db)
    if not lines:
        return
    for line in lines:
        say(line)
    agreement = summary.similarity_agreement(db)
    if not agreement.is_empty():
        print_frame(
            agreement,
            "Geometry vs concepts (Mantel: Spearman r of each measure's distances against the "
            "concept distances, permutation p)",
        )


def print_unit_matches(db: Path) -> None:
    """Units matched across models: per pair, how often mutual matches share a concept."""
    pairs = summary.unit_match_agreement(db)
    if pairs.is_empty():
        return
    print_frame(
        pairs,
        "Units matched across models (mutual best matches by Pearson r over the probe images; "
        "the share of labelled ones with the same concept against a label-shuffling baseline, "
        "permutation p)",
    )


def print_notes(db: Path) -> None:
    """fct_build_notes as plain sentences: what the build could not compute, and why."""
    for message in summary.build_notes(db)["message"].to_list():
        console.print(f"note: {escape(printable(message))}", highlight=False, soft_wrap=True)
