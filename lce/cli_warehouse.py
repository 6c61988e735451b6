"""The warehouse commands: `lce build`, `lce sensitivity`, `lce sql`, `lce app`, and the lake
loaders `lce benchmarks add` and `lce reference load`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from base.download import cache_dir
from base.errors import LceError
from lce import summary
from lce.cli_common import (
    DbOpt,
    LakeOpt,
    console,
    err,
    friendly,
    print_frame,
    say,
    warning_line,
)
from lce.cli_report import print_notes
from warehouse import benchmarks as benchmarks_mod
from warehouse import build as build_mod
from warehouse import reference as reference_mod
from warehouse import study
from warehouse.paths import db_path, lake_dir

benchmarks_app = typer.Typer(help="Task benchmark results.", no_args_is_help=True)
reference_app = typer.Typer(help="The paper's published data.", no_args_is_help=True)
lake_app = typer.Typer(help="The lake's contents.", no_args_is_help=True)


@benchmarks_app.command("rm")
@friendly
def benchmarks_rm(
    source: Annotated[str, typer.Argument(help="The benchmark source to remove.")],
    lake: LakeOpt = None,
) -> None:
    """Remove one benchmark source from the lake (one all-or-nothing commit)."""
    from warehouse.lake_rm import remove_benchmarks

    rows = remove_benchmarks(lake_dir(lake), source)
    say(f"removed benchmark source {source} ({rows} results) from {lake_dir(lake)}")


@lake_app.command("rm")
@friendly
def lake_rm(
    model: Annotated[str, typer.Option("--model", help="The model to remove.")],
    layer: Annotated[
        str | None, typer.Option("--layer", help="Only this layer of the model.")
    ] = None,
    lake: LakeOpt = None,
) -> None:
    """Remove a model (every layer, or one) from the lake: its dissections and its unit labels,
    in one all-or-nothing commit. Benchmarks naming it stay (`lce benchmarks rm` a source)."""
    from warehouse.lake_rm import remove_model

    removed = remove_model(lake_dir(lake), model, layer)
    labels = sum(removed.label_rows.values())
    what = f"{model}" + (f" layer {layer}" if layer else "")
    say(
        f"removed {what} from {lake_dir(lake)}: {len(removed.partitions)} partition(s)"
        + (f", {labels} unit-label row(s)" if labels else "")
    )


@lake_app.command("merge")
@friendly
def lake_merge(
    sources: Annotated[list[Path], typer.Argument(help="Lakes of the same study to merge.")],
    into: Annotated[
        Path | None, typer.Option("--into", help="The target lake \\[default: $LCE_HOME/lake].")
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="A (model, layer) or partition held with other weights or settings: take the "
            "last source's instead of refusing.",
        ),
    ] = False,
) -> None:
    """Merge lakes of one study (shards, other machines) into one, in one all-or-nothing commit;
    a second merge of the same sources changes nothing."""
    from warehouse.lake_merge import merge_lakes

    target = lake_dir(into)
    merged = merge_lakes(target, sources, replace=replace)
    say(
        f"merged {len(merged.layers)} (model, layer) pair(s) and {len(merged.partitions)} other "
        f"partition(s) into {target}; {merged.unchanged} already there"
    )


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
    for warning in benchmarks_mod.unknown_models(lake_dir(lake), frame["model"].to_list()):
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
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
        folder = cache_dir() / "reference" / reference_mod.SOURCE
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


@friendly
def build(
    lake: LakeOpt = None,
    db: DbOpt = None,
    var: Annotated[
        list[str] | None,
        typer.Option(
            "--var",
            help="dbt var as key=value: " + ", ".join(build_mod.VARS) + " (guide: dbt vars).",
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
        warning_line(warning)
    say(f"published {result.db} (dbt log: {result.log})")
    print_notes(result.db)


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
        str | None,
        typer.Option(
            "--n-categories",
            help="k values (or auto), comma-separated \\[default: 2,3,4, less those above the "
            "lake's models].",
        ),
    ] = None,
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
        None if n_categories is None else sensitivity_mod.parse_list(n_categories, "n_categories"),
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


@friendly
def sql(
    query_text: Annotated[str, typer.Argument(help="One read-only SELECT (or EXPLAIN, PIVOT).")],
    db: DbOpt = None,
    max_rows: Annotated[
        int | None, typer.Option(help="Rows shown at most (default 1000; not with --csv).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds before the query is stopped.")] = 30.0,
    max_mb: Annotated[float, typer.Option(help="Megabytes of result brought back at most.")] = 50.0,
    csv: Annotated[
        bool, typer.Option("--csv", help="Every row as CSV on stdout (within --max-mb).")
    ] = False,
) -> None:
    """Run one read-only query over the published warehouse (the explorer's SQL page guard)."""
    from warehouse.sql_guard import MAX_ROWS, run_sql
    from warehouse.sql_watchdog import exit_with

    if csv and max_rows is not None:
        # A CSV is an export: complete or refused, never silently cut at a row cap.
        raise LceError("--csv writes every row: drop --max-rows (or put a LIMIT in the query)")
    limit = MAX_ROWS if max_rows is None else max_rows
    if limit < 1 or timeout <= 0 or max_mb <= 0:
        raise LceError("--max-rows must be >= 1, --timeout and --max-mb positive")
    result = run_sql(
        db_path(db),
        query_text,
        max_rows=2**62 if csv else limit,
        timeout_s=timeout,
        max_bytes=int(max_mb * 1e6),
        die=exit_with,
    )
    if csv:
        sys.stdout.write(result.frame.write_csv())
        return
    print_frame(result.frame, None)
    if result.truncated:
        err.print(
            f"[yellow]note:[/] more than {limit} rows; showing the first {limit} "
            "(--max-rows, or narrow the query)",
            highlight=False,
            soft_wrap=True,
        )


def app_script() -> Path:
    """The explorer's main script: installed as package data (lce/app/app.py, with its pages in
    lce/app/app_pages/), else the checkout's top-level app.py."""
    import lce
    from warehouse.paths import project_root

    for script in (Path(lce.__file__).parent / "app" / "app.py", project_root() / "app.py"):
        if script.is_file():
            return script
    raise LceError(
        f"the explorer's app.py is neither in {Path(lce.__file__).parent / 'app'} nor in "
        f"{project_root()}: reinstall lce (pip install .)"
    )


def served_probe_folders(folders: list[Path], environment: str | None) -> str:
    """LCE_PROBE_DIR for the explorer: the --probe folders (absolute, each one checked) then
    the folders LCE_PROBE_DIR already named, separated by os.pathsep as in PATH."""
    chosen = []
    for folder in folders:
        resolved = folder.expanduser().resolve()
        if not resolved.is_dir():
            raise LceError(f"--probe {folder}: not a folder")
        if os.pathsep in str(resolved):
            raise LceError(f"--probe {folder}: a folder name with {os.pathsep!r} cannot be served")
        chosen.append(str(resolved))
    return os.pathsep.join([*chosen, *([environment] if environment else [])])


@friendly
def open_app(
    ctx: typer.Context,
    db: DbOpt = None,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on: 127.0.0.1 (this machine only) unless you choose to "
            "serve a network, e.g. --host 0.0.0.0 (every visitor can then read the warehouse)."
        ),
    ] = "127.0.0.1",
    probe: Annotated[
        list[Path] | None,
        typer.Option(
            "--probe",
            metavar="DIR",
            help="A probe folder the pages may show top images from, besides the ones the "
            "warehouse's runs recorded (repeat for several). Visitors pick from these; they "
            "cannot type a path.",
        ),
    ] = None,
) -> None:
    """Open the Streamlit explorer on the published warehouse (read-only).

    It listens on 127.0.0.1 only unless --host says otherwise. Extra options go to
    `streamlit run`, e.g. `lce app -- --server.port 8502`.
    """
    path = db_path(db).expanduser().resolve()
    script = app_script()
    folders = served_probe_folders(probe or [], os.environ.get("LCE_PROBE_DIR"))  # checked first
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
               "--client.toolbarMode=minimal", f"--server.address={host}",
               *ctx.args]  # fmt: skip
    console.print(
        f"lce explorer over {escape(str(path))} (Ctrl+C stops it)", highlight=False, soft_wrap=True
    )
    sys.stdout.flush()
    # Become streamlit (exec, not a child), so Ctrl+C and kill reach the server itself.
    env = {**os.environ, "LCE_DB": str(path)}
    if folders:
        env["LCE_PROBE_DIR"] = folders
    os.execve(sys.executable, command, env)
