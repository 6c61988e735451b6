"""The `lce` command line. Each command is a thin wrapper over a plain function."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import polars as pl
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from base.errors import LceError
from lce import summary
from warehouse import benchmarks as benchmarks_mod
from warehouse import build as build_mod
from warehouse import reference as reference_mod
from warehouse import study
from warehouse.paths import db_path, demo_dir, lake_dir

app = typer.Typer(
    help="Dissect vision models into concept tables and compare them in a DuckDB warehouse.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
benchmarks_app = typer.Typer(help="Task benchmark results.", no_args_is_help=True)
reference_app = typer.Typer(help="The paper's published data.", no_args_is_help=True)
app.add_typer(benchmarks_app, name="benchmarks")
app.add_typer(reference_app, name="reference")

console = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

LakeOpt = Annotated[
    Path | None, typer.Option("--lake", help="Lake folder \\[default: $LCE_HOME/lake].")
]
DbOpt = Annotated[
    Path | None,
    typer.Option("--db", help="Published DuckDB file \\[default: $LCE_HOME/lce.duckdb]."),
]


def error_line(message: str) -> None:
    """One line on stderr; the message is data (a model named "[/x]" is printed as typed)."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def friendly(func: F) -> F:
    """Turn an LceError into one line on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LceError as exc:
            error_line(str(exc))
            raise typer.Exit(1) from None
        except OSError as exc:  # full disk, read-only folder, name too long, permission ...
            where = exc.filename if exc.filename is not None else ""
            error_line(f"{where}: {exc.strerror or exc}" if where else str(exc.strerror or exc))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            error_line("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@benchmarks_app.command("add")
@friendly
def benchmarks_add(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV or Parquet: model, task, dataset, metric, value, higher_is_better."
        ),
    ],
    source: Annotated[
        str | None, typer.Option(help="Source name \\[default: the file's stem].")
    ] = None,
    lake: LakeOpt = None,
) -> None:
    """Validate long-format task results and add them to the lake (replacing that source)."""
    name, frame = benchmarks_mod.add_benchmarks(file, lake_dir(lake), source)
    say(
        f"added {frame.height} results for {frame['model'].n_unique()} models "
        f"as source {name} in {lake_dir(lake)}"
    )


@reference_app.command("load")
@friendly
def reference_load(
    from_dir: Annotated[
        Path | None,
        typer.Option("--from", help="Folder holding the two published files (else download them)."),
    ] = None,
    lake: LakeOpt = None,
) -> None:
    """Load the paper's published Dissect labels and task results into the lake."""
    if from_dir is None:
        cache = Path(os.environ.get("LCE_CACHE", Path.home() / ".cache" / "lce"))
        folder = cache / "reference" / reference_mod.SOURCE
        say(f"downloading the published files to {folder} (sha256-checked)")
        reference_mod.fetch(folder)
    else:
        folder = from_dir
    loaded = reference_mod.load(folder)
    reference_mod.write(loaded, lake_dir(lake))
    say(
        f"loaded {loaded.unit_labels['model'].n_unique()} models' unit labels, "
        f"{loaded.task_benchmarks.height} task results and "
        f"{loaded.exclusions.height} default exclusions into {lake_dir(lake)}"
    )


def parse_probe(spec: str) -> Path:
    kind, sep, path = spec.partition(":")
    if kind != "broden" or not sep or not path:
        raise LceError(f"--probe {spec!r}: expected broden:PATH")
    return Path(path)


@app.command("extract")
@friendly
def extract(
    model: Annotated[
        str,
        typer.Argument(
            help="A registry name (`lce models`), torchvision:<arch>, timm:<name> or module:function."
        ),
    ],
    layer: Annotated[list[str], typer.Option("--layer", help="Module path; repeat for several.")],
    probe: Annotated[str, typer.Option(help="Probe set: broden:PATH.")],
    lake: LakeOpt = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="Model name in the lake (default: the registry name, else the weights file stem, else the arch)."
        ),
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="Checkpoint file: a state dict (weights_only=True), or for a registry name a "
            "local copy of its published checkpoint."
        ),
    ] = None,
    quantile: Annotated[
        float, typer.Option(help="Top quantile q of the activation threshold.")
    ] = 0.005,
    basis: Annotated[
        str, typer.Option(help="Threshold basis: raw (NetDissect) or upsampled (Dissect).")
    ] = "raw",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 16,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    top_images: Annotated[int, typer.Option(help="Top images kept per unit.")] = 5,
    normalize: Annotated[
        str,
        typer.Option(
            help="auto (the model's own: registry / timm, else imagenet), imagenet, inception or none."
        ),
    ] = "auto",
    non_strict: Annotated[
        bool, typer.Option("--non-strict", help="Allow missing/unexpected checkpoint keys.")
    ] = False,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Skip unreadable images/labels (counted in runs).")
    ] = False,
    no_cache: Annotated[
        bool,
        typer.Option("--no-cache", help="Second forward pass instead of the activation cache."),
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run from its checkpoint.")
    ] = False,
    new_study: Annotated[
        bool,
        typer.Option(
            "--new-study", help="Start a new study in this lake (drops the old dissections)."
        ),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            help="DataLoader worker processes (pass 2 on CPU with the cache reads labels in-process)."
        ),
    ] = min(4, max(0, (os.cpu_count() or 1) // 2)),
    checkpoint_every: Annotated[
        int, typer.Option(help="Batches between checkpoints (for --resume).")
    ] = 20,
    null_permutations: Annotated[
        int,
        typer.Option(
            help="K null permutations: each unit's masks are also tallied against other images' "
            "labels, giving the null IoU that `--var interpretable_rule=null` compares with."
        ),
    ] = 0,
    null_seed: Annotated[
        int, typer.Option(help="Seed of the null permutations (one per study: the same pairs).")
    ] = 0,
    features: Annotated[
        bool,
        typer.Option(
            "--features/--no-features",
            help="Keep each image's spatially averaged activation vector per layer "
            "(lake table image_features, for the similarity marts; C x 4 bytes per image).",
        ),
    ] = True,
) -> None:
    """Dissect model layers on a probe set: exact thresholds and unit x concept tallies -> lake."""
    from extract.engine import ExtractConfig, run_extract

    cfg = ExtractConfig(
        model=model, layers=layer, probe=parse_probe(probe), lake=lake_dir(lake), name=name,
        weights=weights, quantile=quantile, basis=basis, batch_size=batch_size, device=device,
        top_images=top_images, normalize=normalize, strict=not non_strict, skip_bad=skip_bad,
        cache=not no_cache, resume=resume, new_study=new_study, workers=workers,
        checkpoint_every=max(1, checkpoint_every), null_permutations=null_permutations,
        null_seed=null_seed,
        features=features, progress=err.is_terminal,
    )  # fmt: skip
    result = run_extract(cfg)
    if result.written:
        for layer_result in result.layers:
            say(
                f"{result.model} {layer_result.layer}: {layer_result.n_units} units, "
                f"{result.n_images} images"
                + (f" ({len(result.skipped)} skipped)" if result.skipped else "")
                + f", {result.seconds:.1f} s on {result.device} -> {cfg.lake}"
            )


@app.command("models")
@friendly
def models() -> None:
    """List the model registry: the paper's ResNet-50s and where their checkpoints come from."""
    from extract.registry import FORMATS, rows

    table = Table(title="Model registry (lce extract NAME ...)", title_justify="left")
    table.add_column("name", no_wrap=True)
    for column in ("source", "checkpoint", "format", "normalisation", "checksum"):
        table.add_column(column, overflow="fold")
    for row in rows():
        table.add_row(
            row["name"], f"{row['model']}: {row['source']}", row["checkpoint"], row["format"],
            row["normalisation"], row["checksum"],
        )  # fmt: skip
    console.print(table)
    formats = Table(title="Formats and their conversion to torchvision", title_justify="left")
    formats.add_column("format", no_wrap=True)
    formats.add_column("conversion", overflow="fold")
    for name, text in FORMATS.items():
        formats.add_row(name, text)
    console.print(formats)
    console.print(
        "Checkpoints download on first use into $LCE_CACHE/models (default ~/.cache/lce); "
        "offline, pass a local copy with --weights FILE."
    )


@app.command("build")
@friendly
def build(
    lake: LakeOpt = None,
    db: DbOpt = None,
    var: Annotated[
        list[str] | None,
        typer.Option(
            "--var",
            help="dbt var as key=value: " + ", ".join(build_mod.VARS) + " (README: dbt vars).",
        ),
    ] = None,
) -> None:
    """Build the warehouse with dbt into a work file, then publish it atomically."""
    dbt_vars = build_mod.parse_vars(var or [])
    study.check_vars_against_lake(lake_dir(lake), dbt_vars)  # k vs the lake's models
    with console.status("dbt build ..."):
        result = build_mod.build(lake_dir(lake), db_path(db), dbt_vars)
    skipped = summary.similarity_skip_warning(result.db)
    for warning in [*result.warnings, *([skipped] if skipped else [])]:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    say(f"published {result.db} (dbt log: {result.log})")
    print_notes(result.db)


@app.command("sensitivity")
@friendly
def sensitivity(
    lake: LakeOpt = None,
    db: DbOpt = None,
    min_iou: Annotated[
        str, typer.Option("--min-iou", help="min_iou values, comma-separated.")
    ] = "0.02,0.04,0.06",
    n_components: Annotated[
        str, typer.Option("--n-components", help="n_components values, comma-separated.")
    ] = "3",
    n_categories: Annotated[
        str, typer.Option("--n-categories", help="k values (or auto), comma-separated.")
    ] = "2,3,4",
    var: Annotated[
        list[str] | None,
        typer.Option("--var", help="Other dbt vars for every setting, as `lce build --var`."),
    ] = None,
) -> None:
    """Rebuild over a grid of thresholds into scratch files; publish fct_sensitivity atomically."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from lce import sensitivity as sensitivity_mod

    grid = (
        sensitivity_mod.parse_list(min_iou, "min_iou"),
        sensitivity_mod.parse_list(n_components, "n_components"),
        sensitivity_mod.parse_list(n_categories, "n_categories"),
    )
    extra = build_mod.parse_vars(var or [])
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("building", total=None)

        def step(i: int, n: int, setting: sensitivity_mod.Setting) -> None:
            bar.update(task, total=n, completed=i - 1, description=f"building {setting.label()}")

        sensitivity_mod.run(lake_dir(lake), db_path(db), *grid, extra_vars=extra, progress=step)
    from warehouse.query import query

    print_frame(
        query(
            db_path(db),
            "select setting, min_iou, n_components, n_categories, n_models, explained_variance, "
            "k, adjusted_rand_index from fct_sensitivity order by setting",
        ),
        "Threshold sensitivity (setting 1 is the reference; adjusted Rand index vs its categories)",
    )
    say(f"published fct_sensitivity into {db_path(db)}")


probe_app = typer.Typer(help="Probe sets.", no_args_is_help=True)
app.add_typer(probe_app, name="probe")


@probe_app.command("synth")
@friendly
def probe_synth(
    out: Annotated[Path, typer.Argument(help="Folder to write (must not exist or be empty).")],
    n: Annotated[int, typer.Option("--n", help="Images.")] = 400,
    size: Annotated[int, typer.Option(help="Image side in pixels (label maps are half).")] = 64,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same probe set).")] = 7,
) -> None:
    """Write the synthetic probe set (Broden layout) of the embedded demo world."""
    from lce import synth

    if n < 1 or size < 8 or size % 2:
        raise LceError("--n must be >= 1 and --size an even number >= 8")
    try:
        synth.write_probe(out, n=n, size=size, seed=seed)
    except FileExistsError as exc:
        raise LceError(str(exc)) from None
    say(f"wrote {n} images ({size} px, label maps {size // 2} px) to {out}")


@probe_app.command("get")
@friendly
def probe_get(
    name: Annotated[str, typer.Argument(help="broden1_224 or broden1_227.")],
    to: Annotated[
        Path | None, typer.Option(help="Folder to put it in \\[default: $LCE_HOME/probes].")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Download from this address instead (a mirror).")
    ] = None,
    keep_archive: Annotated[
        bool, typer.Option("--keep-archive", help="Keep the zip after unpacking.")
    ] = False,
) -> None:
    """Download an official Broden probe set (resumable, checksummed) and unpack it safely."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from lce import probe_get as probe_get_mod

    with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                  console=err, disable=not err.is_terminal) as bar:  # fmt: skip
        task = bar.add_task(f"downloading {name}", total=None)
        path = probe_get_mod.get_probe(
            name, to, url, progress=lambda done, total: bar.update(task, completed=done, total=total),
            keep_archive=keep_archive,
        )  # fmt: skip
    console.print(f"{name}: {path} (use --probe broden:{path})")


@probe_app.command("info")
@friendly
def probe_info_cmd(
    path: Annotated[Path, typer.Argument(help="Probe set folder (Broden layout).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Images, sizes, categories, concepts, label pixels and coverage, and every problem found."""
    import json

    from extract.probe_info import probe_info

    info = probe_info(path)
    if as_json:
        print(json.dumps(info.to_dict(), indent=2))
    else:
        sizes = ", ".join(f"{k} ({v})" for k, v in info.image_sizes.items())
        labels = ", ".join(f"{k} ({v})" for k, v in info.label_sizes.items())
        console.print(f"{info.path}: {info.images} images ({sizes}); label maps {labels}; "
                      f"{info.labels} labels")  # fmt: skip
        table = Table("category", "concepts", "images annotated", "image coverage",
                      "label pixels", "image-level labels")  # fmt: skip
        for c in info.categories:
            table.add_row(c.name, str(c.concepts), str(c.images_annotated),
                          f"{c.image_coverage:.1%}", str(c.label_pixels), str(c.image_labels))  # fmt: skip
        console.print(table)
        for problem in info.problems:
            console.print(f"[yellow]problem:[/] {escape(problem)}", highlight=False, soft_wrap=True)
        console.print(f"{len(info.problems)} problem(s)" if info.problems else "no problems found")
    if info.problems:
        raise typer.Exit(1)


@probe_app.command("from")
@friendly
def probe_from(
    fmt: Annotated[
        str, typer.Argument(metavar="FORMAT", help="ade20k, voc, coco-panoptic or masks.")
    ],
    src: Annotated[Path, typer.Argument(help="The dataset folder, in its own layout (README).")],
    out: Annotated[Path, typer.Argument(help="Probe set folder to write (must not exist).")],
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 224,
    label_size: Annotated[
        int | None, typer.Option(help="Label map side in pixels \\[default: half of --size].")
    ] = None,
) -> None:
    """Convert a segmentation dataset into a probe set (Broden layout), all or nothing."""
    from extract.probe_convert import convert

    n = convert(fmt, src, out, size=size, label_size=label_size)
    console.print(f"wrote {n} images to {out}")


@probe_app.command("segment")
@friendly
def probe_segment(
    images: Annotated[Path, typer.Argument(help="Folder of images (searched recursively).")],
    out: Annotated[Path, typer.Argument(help="Probe set folder to write (must not exist).")],
    segmenter: Annotated[
        str,
        typer.Option(
            help="A torchvision segmentation architecture (deeplabv3_resnet50, ...) or module:function."
        ),
    ],
    classes: Annotated[
        Path, typer.Option(help="CSV id,name,category: every class id the segmenter outputs.")
    ],
    weights: Annotated[Path | None, typer.Option(help="The segmenter's state dict file.")] = None,
    colour_names: Annotated[
        bool, typer.Option("--colour-names", help="Add a color category (11 basic colour terms).")
    ] = False,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 224,
    label_size: Annotated[
        int | None, typer.Option(help="Label map side in pixels \\[default: half of --size].")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Label a folder of images with a segmentation model into a probe set (Dissect's way)."""
    from rich.progress import MofNCompleteColumn, Progress

    from extract.probe_segment import SegmentConfig, run_segment

    with Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=err,
                  disable=not err.is_terminal) as bar:  # fmt: skip
        task = bar.add_task("segmenting", total=None)
        n = run_segment(
            SegmentConfig(
                images=images, out=out, segmenter=segmenter, classes=classes, weights=weights,
                colour=colour_names, size=size, label_size=label_size, batch_size=batch_size,
                device=device,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        )  # fmt: skip
    console.print(f"wrote {n} images to {out}")


@app.command("demo")
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
    print_frame(summary.top_loadings(db), "Concepts loading most on each component")
    print_correlations(db)
    print_rules(db)
    print_similarity(db)
    print_notes(db)
    console.print(f"open the explorer: [bold]lce app --db {escape(str(db))}[/]")


@app.command("summary")
@friendly
def summarize(db: DbOpt = None) -> None:
    """Print the models, categories, explained variance, top loadings and task correlations."""
    path = db_path(db)
    print_frame(summary.models(path), "Models")
    print_frame(summary.explained_variance(path), "Explained variance")
    print_stability(path)
    print_frame(summary.top_loadings(path), "Concepts loading most on each component")
    print_correlations(path)
    print_rules(path)
    print_similarity(path)
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


def print_notes(db: Path) -> None:
    """fct_build_notes as plain sentences: what the build could not compute, and why."""
    for message in summary.build_notes(db)["message"].to_list():
        console.print(f"note: {escape(message)}", highlight=False, soft_wrap=True)


@app.command("sql")
@friendly
def sql(
    query_text: Annotated[str, typer.Argument(help="One read-only SELECT (or EXPLAIN, PIVOT).")],
    db: DbOpt = None,
    max_rows: Annotated[int, typer.Option(help="Rows shown at most.")] = 1000,
    timeout: Annotated[float, typer.Option(help="Seconds before the query is stopped.")] = 30.0,
    max_mb: Annotated[float, typer.Option(help="Megabytes of result brought back at most.")] = 50.0,
    csv: Annotated[bool, typer.Option("--csv", help="CSV on stdout instead of a table.")] = False,
) -> None:
    """Run one read-only query over the published warehouse (the explorer's SQL page guard)."""
    from warehouse.sql_guard import run_sql

    if max_rows < 1 or timeout <= 0 or max_mb <= 0:
        raise LceError("--max-rows must be >= 1, --timeout and --max-mb positive")
    result = run_sql(
        db_path(db), query_text, max_rows=max_rows, timeout_s=timeout, max_bytes=int(max_mb * 1e6)
    )
    if csv:
        sys.stdout.write(result.frame.write_csv())
    else:
        print_frame(result.frame, None)
    if result.truncated:
        err.print(
            f"[yellow]note:[/] more than {max_rows} rows; showing the first {max_rows} "
            "(--max-rows, or narrow the query)",
            highlight=False,
            soft_wrap=True,
        )


@app.command("app", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@friendly
def open_app(ctx: typer.Context, db: DbOpt = None) -> None:
    """Open the Streamlit explorer on the published warehouse (read-only).

    Extra options go to `streamlit run`, e.g. `lce app -- --server.port 8502`.
    """
    import sys

    from warehouse.paths import project_root

    path = db_path(db).expanduser().resolve()
    script = project_root() / "app.py"
    if not script.is_file():
        raise LceError(f"{script}: the app is not here (install lce from its source folder)")
    if not path.is_file():
        err.print(
            f"[yellow]warning:[/] {escape(str(path))}: no published warehouse yet "
            "(run `lce build`)",
            highlight=False,
            soft_wrap=True,
        )
    # No file watcher (it floods "inotify queue overflowed" while other processes write into
    # the project folder, and the app never needs a reload) and no Deploy button.
    command = [sys.executable, "-m", "streamlit", "run", str(script),
               "--browser.gatherUsageStats=false", "--server.fileWatcherType=none",
               "--client.toolbarMode=minimal", *ctx.args]  # fmt: skip
    console.print(
        f"lce explorer over {escape(str(path))} (Ctrl+C stops it)", highlight=False, soft_wrap=True
    )
    sys.stdout.flush()
    # Become streamlit (exec, not a child), so Ctrl+C and kill reach the server itself.
    os.execve(sys.executable, command, {**os.environ, "LCE_DB": str(path)})


def say(text: str) -> None:
    """A plain line on stdout: what it holds (names, paths) is data, never rich markup."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def print_frame(frame: pl.DataFrame, title: str | None) -> None:
    """A frame as a table; cells and headers are Text, so "[/x]" in a name prints as typed."""
    table = Table(title=title, title_justify="left")
    for name in frame.columns:
        table.add_column(Text(name))
    for row in frame.iter_rows():
        table.add_row(*[Text(_fmt(v)) for v in row])
    console.print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.3f}"
    return "" if value is None else str(value)


if __name__ == "__main__":
    app()
