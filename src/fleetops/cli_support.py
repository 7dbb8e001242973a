"""What every ``fleetops`` command shares: consoles, error handling, progress, tables.

The main CLI and each capability's sub-app import this (never each other), so that all
commands report errors and progress the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from typer.core import TyperArgument, TyperCommand, TyperOption

from fleetops.core.errors import FleetopsError

console = Console(stderr=True)  # messages, progress
out = Console()  # results


@contextmanager
def errors() -> Iterator[None]:
    """Turn our errors into a one-line message and a meaningful exit code."""
    try:
        yield
    except FleetopsError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


def progress_bar(transient: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )


def print_table(table: pa.Table, *, limit: int = 50, title: str | None = None) -> None:
    view = Table(title=title, show_lines=False)
    for name in table.column_names:
        view.add_column(name, overflow="fold")
    for row in table.slice(0, limit).to_pylist():
        view.add_row(*("" if v is None else _fmt(v) for v in row.values()))
    out.print(view)
    if table.num_rows > limit:
        console.print(f"… {table.num_rows - limit} more rows (use --limit or --format)")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, bytes):
        return value[:32].hex() + ("…" if len(value) > 32 else "")
    return str(value)


class MultiValueOptions(TyperCommand):
    """A command whose repeatable options also take several values after one flag.

    ``--train a.csv b.csv`` reads as ``--train a.csv --train b.csv``, the form the issue
    contracts and shell globs (``--input logs/*``) produce. Only for commands without
    positional arguments: there, a bare value after an option's values can belong to
    nothing else, so the reading is unambiguous.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not any(isinstance(param, TyperArgument) for param in self.params):
            args = spread_option_values(args, self.params)
        return super().parse_args(ctx, args)


def spread_option_values(args: Sequence[str], params: Sequence[object]) -> list[str]:
    """Repeat a multiple option's flag before each of the bare values that follow it."""
    multiple = {
        name
        for param in params
        if isinstance(param, TyperOption) and param.multiple
        for name in param.opts
    }
    spread: list[str] = []
    current: str | None = None  # the multiple option whose values are being read
    taken = 0
    for arg in args:
        if arg == "--":
            current = None
        elif arg.startswith("-") and arg != "-":
            current, taken = (arg, 0) if arg in multiple else (None, 0)
        elif current is not None:
            if taken:
                spread.append(current)
            taken += 1
        spread.append(arg)
    return spread
