"""Options that take several values after one flag (``--input a b``), as issue contracts write."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from fleetops.cli_support import MultiValueOptions

app = typer.Typer()


@app.command(cls=MultiValueOptions)
def evaluate(
    train: Annotated[list[Path], typer.Option("--train", "-t")],
    capture: Annotated[list[Path], typer.Option("--capture")],
    out: Annotated[Path, typer.Option("--out")],
    fmt: Annotated[str, typer.Option("--format")] = "csv",
) -> None:
    typer.echo(f"train={[p.name for p in train]} capture={[p.name for p in capture]}")
    typer.echo(f"out={out.name} format={fmt}")


@app.command("with-argument", cls=MultiValueOptions)
def with_argument(
    path: Annotated[Path, typer.Argument()],
    train: Annotated[list[Path], typer.Option("--train")],
) -> None:
    typer.echo(f"path={path.name} train={[p.name for p in train]}")


runner = CliRunner()


@pytest.mark.parametrize(
    "args",
    [
        ["--train", "a", "b", "--capture", "c", "--out", "o", "--format", "daga"],
        ["--train", "a", "--train", "b", "--capture", "c", "--out", "o", "--format", "daga"],
        ["-t", "a", "-t", "b", "--format", "daga", "--capture", "c", "--out", "o"],
        ["--format", "daga", "--out", "o", "--capture", "c", "--train", "a", "b"],
    ],
)
def test_one_flag_many_values_reads_like_the_repeated_flag(args: list[str]) -> None:
    result = runner.invoke(app, ["evaluate", *args])
    assert result.exit_code == 0, result.output
    assert "train=['a', 'b'] capture=['c']" in result.output
    assert "out=o format=daga" in result.output


def test_single_valued_options_still_take_one_value() -> None:
    result = runner.invoke(app, ["evaluate", "--train", "a", "--capture", "c", "--out", "o", "x"])
    assert result.exit_code == 2
    assert "unexpected extra argument" in result.output


def test_commands_with_positional_arguments_are_left_alone() -> None:
    # Here a bare value after --train may be the positional argument, so nothing is spread.
    result = runner.invoke(app, ["with-argument", "--train", "a", "p"])
    assert result.exit_code == 0, result.output
    assert "path=p train=['a']" in result.output
