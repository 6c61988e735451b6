"""The `lce` command line. Each command is a thin wrapper over a plain function."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import polars as pl
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lce import summary
from lce.errors import LceError
from warehouse import benchmarks as benchmarks_mod
from warehouse import build as build_mod
from warehouse import reference as reference_mod
from warehouse.paths import db_path, lake_dir

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
    Path | None, typer.Option("--lake", help="Lake folder [default: $LCE_HOME/lake].")
]
DbOpt = Annotated[
    Path | None, typer.Option("--db", help="Published DuckDB file [default: $LCE_HOME/lce.duckdb].")
]


def friendly(func: F) -> F:
    """Turn an LceError into one line on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LceError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

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
        str | None, typer.Option(help="Source name [default: the file's stem].")
    ] = None,
    lake: LakeOpt = None,
) -> None:
    """Validate long-format task results and add them to the lake (replacing that source)."""
    name, frame = benchmarks_mod.add_benchmarks(file, lake_dir(lake), source)
    console.print(
        f"added {frame.height} results for {frame['model'].n_unique()} models "
        f"as source [bold]{name}[/] in {lake_dir(lake)}"
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
        console.print(f"downloading the published files to {folder} (sha256-checked)")
        reference_mod.fetch(folder)
    else:
        folder = from_dir
    loaded = reference_mod.load(folder)
    reference_mod.write(loaded, lake_dir(lake))
    console.print(
        f"loaded {loaded.unit_labels['model'].n_unique()} models' unit labels, "
        f"{loaded.task_benchmarks.height} task results and "
        f"{loaded.exclusions.height} default exclusions into {lake_dir(lake)}"
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
            help="dbt var as key=value: min_iou, exclude_models, n_components, n_categories.",
        ),
    ] = None,
) -> None:
    """Build the warehouse with dbt into a work file, then publish it atomically."""
    dbt_vars = build_mod.parse_vars(var or [])
    with console.status("dbt build ..."):
        result = build_mod.build(lake_dir(lake), db_path(db), dbt_vars)
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    console.print(f"published {result.db} (dbt log: {result.log})")


@app.command("summary")
@friendly
def summarize(db: DbOpt = None) -> None:
    """Print the models, categories, explained variance, top loadings and task correlations."""
    path = db_path(db)
    print_frame(summary.models(path), "Models")
    print_frame(summary.explained_variance(path), "Explained variance")
    print_frame(summary.top_loadings(path), "Concepts loading most on each component")
    print_frame(summary.strongest_correlations(path), "Strongest component / task correlations")


@app.command("sql")
@friendly
def sql(
    query_text: Annotated[str, typer.Argument(help="A read-only SQL query.")], db: DbOpt = None
) -> None:
    """Run a read-only query over the published warehouse."""
    from warehouse.query import query

    try:
        frame = query(db_path(db), query_text)
    except Exception as exc:  # duckdb's own errors are already one clear line
        if isinstance(exc, LceError):
            raise
        raise LceError(str(exc).splitlines()[0]) from exc
    print_frame(frame, None)


def print_frame(frame: pl.DataFrame, title: str | None) -> None:
    table = Table(title=title, title_justify="left")
    for name in frame.columns:
        table.add_column(name)
    for row in frame.iter_rows():
        table.add_row(*[_fmt(v) for v in row])
    console.print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.3f}"
    return "" if value is None else str(value)


if __name__ == "__main__":
    app()
