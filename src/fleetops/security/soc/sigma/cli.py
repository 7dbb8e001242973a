"""``fleetops soc rules``: load Sigma rules and replay their regression events."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from fleetops.cli_support import console, errors, out
from fleetops.security.soc.sigma.regression import run_regression

rules_app = typer.Typer(
    help="Sigma rules: load, check, replay regression events.", no_args_is_help=True
)


@rules_app.callback()
def rules_main() -> None:
    """Sigma rules: load, check, replay regression events."""


@rules_app.command("test")
def test_cmd(
    paths: Annotated[
        list[Path], typer.Argument(help="Rule files or folders (searched recursively).")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object.")
    ] = False,
) -> None:
    """Load every rule under PATHS, report refusals, and evaluate rules that ship regression events.

    Exit code 0 when every regression test matched as expected, 1 otherwise.
    """
    with errors():
        result = run_regression(paths)
    failed = [
        r
        for r in result["regression"]
        if r.get("matched") is None
        or (r["expected"] is not None and r["matched"] != r["expected"])
        or (r["expected"] is None and not r["matched"])
    ]
    if as_json:
        out.print_json(orjson.dumps(result).decode())
    else:
        total = result["loaded"] + len(result["refused"])
        console.print(f"loaded {result['loaded']} of {total} rules")
        for refusal in result["refused"]:
            console.print(
                f"[yellow]refused[/] {refusal['path']}: {refusal['reason']}", highlight=False
            )
        table = Table(title="regression events")
        for name in ("rule_id", "expected", "matched"):
            table.add_column(name)
        for row in result["regression"]:
            ok = row in failed
            table.add_row(
                row["rule_id"], str(row["expected"]), ("[red]" if ok else "") + str(row["matched"])
            )
        out.print(table)
        console.print(
            f"{len(result['regression']) - len(failed)} of {len(result['regression'])} regression tests pass"
        )
    if failed:
        raise typer.Exit(1)
