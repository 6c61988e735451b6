"""What every `lce` command shares: the consoles, the --lake/--db options, one-line errors and
printing that treats names and cells as data (never rich markup)."""

from __future__ import annotations

import functools
import unicodedata
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


def printable(text: str) -> str:
    """``text`` with every control character written as an escape (``\\x1b``, ``\\n``): names
    come from data, and an escape sequence in one must not drive the terminal (clear it, retitle
    it) nor a newline split a one-line message."""
    if not any(unicodedata.category(c) == "Cc" for c in text):
        return text
    return "".join(
        c.encode("unicode_escape").decode() if unicodedata.category(c) == "Cc" else c for c in text
    )


def error_line(message: str) -> None:
    """One line on stderr; the message is data (a model named "[/x]" is printed as typed)."""
    err.print(f"[bold red]error:[/] {escape(printable(message))}", highlight=False, soft_wrap=True)


def warning_line(message: str) -> None:
    """One warning line on stderr, its text data as in ``error_line``."""
    err.print(f"[yellow]warning:[/] {escape(printable(message))}", highlight=False, soft_wrap=True)


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


def say(text: str) -> None:
    """A plain line on stdout: what it holds (names, paths) is data, never rich markup."""
    console.print(printable(text), markup=False, highlight=False, soft_wrap=True)


# Columns whose cells are names a reader copies or greps: never cut or wrapped.
IDENTIFIER_COLUMNS = {"model", "model_a", "model_b", "layer", "concept", "source"}
# The narrowest a wrapped column is allowed to become, and rich's border/padding per column.
_MIN_WRAPPED = 6
_PER_COLUMN = 3


def print_frame(frame: pl.DataFrame, title: str | None) -> None:
    """A frame as a table; cells and headers are Text, so "[/x]" in a name prints as typed.

    Identifier columns (model names, layers, concepts) keep every character on one line; the
    other columns wrap (folding a long word rather than cutting it). When the identifiers alone
    do not fit the terminal, the table is drawn wider than it and the terminal wraps the lines:
    a name is never shortened to "…"."""
    table = Table(title=title, title_justify="left")
    needed = 1
    for name in frame.columns:
        cells = [printable(_fmt(v)) for v in frame[name].to_list()]
        if name in IDENTIFIER_COLUMNS:
            width = max([len(name), *(len(c) for c in cells)])
            table.add_column(Text(printable(name)), no_wrap=True, min_width=width)
        else:
            width = min(_MIN_WRAPPED, max([len(name), *(len(c) for c in cells)]))
            table.add_column(Text(printable(name)), overflow="fold")
        needed += width + _PER_COLUMN
    for row in frame.iter_rows():
        table.add_row(*[Text(printable(_fmt(v))) for v in row])
    wide = needed > console.width
    # rich never draws wider than its console, so a wider table needs a console of that width
    (Console(file=console.file, width=needed) if wide else console).print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.3f}"
    return "" if value is None else str(value)
