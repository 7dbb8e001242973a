"""``fleetops footprint``: import an inventory, plan a consolidation, re-render a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fleetops.cli_support import console, errors, out
from fleetops.core.errors import ConfigError
from fleetops.footprint.importers import FORMATS, load
from fleetops.footprint.model import TargetType

footprint_app = typer.Typer(
    help="Infrastructure footprint: pack workloads onto fewer hosts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

FormatOption = Annotated[str, typer.Option("--format", help=f"One of {', '.join(FORMATS)}.")]
InputOption = Annotated[Path, typer.Option("--input", help="Inventory file or folder.")]


@footprint_app.command("import")
def import_(fmt: FormatOption, input_path: InputOption) -> None:
    """Validate an inventory and summarise it."""
    with errors():
        inv = load(fmt, input_path)
        series = sum(1 for w in inv.workloads if w.series is not None)
        out.print(f"workloads: {len(inv.workloads)} ({series} with time series)")
        out.print(f"hosts: {len(inv.hosts)}; target types: {len(inv.targets)}")
        for n in inv.notes:
            out.print(f"note: {n}", highlight=False)


@footprint_app.command()
def plan(
    fmt: FormatOption,
    input_path: InputOption,
    host_cpu: Annotated[
        float | None,
        typer.Option(
            "--host-cpu",
            help="Target host cores (without it and --host-memory-gb: plan each target type "
            "of the inventory and keep the cheapest).",
        ),
    ] = None,
    host_memory_gb: Annotated[
        float | None, typer.Option("--host-memory-gb", help="Target host memory, GB.")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Plan folder to write.")] = Path("plan"),
    headroom: Annotated[
        float, typer.Option(help="Keep demand under this share of capacity.")
    ] = 0.8,
    percentile: Annotated[float, typer.Option(help="Demand percentile of each workload.")] = 95.0,
    time_limit: Annotated[float, typer.Option("--time-limit", help="Solver seconds.")] = 30.0,
    time_aware: Annotated[bool, typer.Option("--time-aware", help="Pack per hour of day.")] = False,
    host_price: Annotated[float, typer.Option(help="Target host price per month.")] = 0.0,
    host_power_w: Annotated[float, typer.Option(help="Target host power, W.")] = 0.0,
    use_existing: Annotated[
        bool, typer.Option("--use-existing", help="Also keep existing hosts.")
    ] = False,
    target_reduction: Annotated[float, typer.Option(help="Reduction goal, e.g. 0.6.")] = 0.6,
) -> None:
    """Plan a consolidation and write the plan folder."""
    # OR-Tools and matplotlib load only when a plan is made, not on every fleetops call
    from fleetops.footprint.choose import plan_cheapest
    from fleetops.footprint.demand import build_demand
    from fleetops.footprint.report import write_plan
    from fleetops.footprint.solver import SolveOptions, solve
    from fleetops.footprint.summary import summarise

    with errors():
        if not 0 < headroom <= 1:
            raise ConfigError(f"--headroom must be in (0, 1], got {headroom:g}")
        if (host_cpu is None) != (host_memory_gb is None):
            raise ConfigError("give --host-cpu and --host-memory-gb together (or neither)")
        if (
            host_cpu is not None
            and host_memory_gb is not None
            and min(host_cpu, host_memory_gb) <= 0
        ):
            raise ConfigError("--host-cpu and --host-memory-gb must be > 0")
        inv = load(fmt, input_path)
        demand = build_demand(inv.workloads, percentile, time_aware)
        options = SolveOptions(headroom=headroom, time_limit=time_limit, use_existing=use_existing)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("planning", total=1.0)

            def step(msg: str, frac: float) -> None:
                bar.update(task, description=msg, completed=frac)

            if host_cpu is not None and host_memory_gb is not None:
                target = TargetType(
                    "target",
                    host_cpu,
                    host_memory_gb,
                    price_per_month=host_price,
                    power_w=host_power_w,
                )
                result = solve(inv.workloads, demand, inv.hosts, target, options, progress=step)
            else:
                if not inv.targets:
                    raise ConfigError(
                        f"{input_path} lists no target types: give --host-cpu and --host-memory-gb"
                    )
                best, outcomes = plan_cheapest(
                    inv.workloads, demand, inv.hosts, inv.targets, options, progress=step
                )
                assert best.plan is not None
                target, result = best.target, best.plan
                for o in outcomes:
                    verdict = (
                        f"{o.plan.hosts_used} hosts, {o.plan.hosts_used * o.target.price_per_month:,.0f}/month"
                        if o.plan is not None
                        else f"infeasible: {o.infeasible}"
                    )
                    mark = " ← chosen" if o is best else ""
                    out.print(f"type {o.target.name}: {verdict}{mark}", highlight=False)
        summary = summarise(inv, result, target, target_reduction)
        write_plan(out_dir, result, demand, summary, inv.notes)
        out.print(f"hosts used: {result.hosts_used}")
        out.print(f"lower bound: {result.lower_bound}")
        out.print(f"gap: {result.gap:.1%}")
        out.print(f"first-fit-decreasing: {result.ffd_hosts}")
        out.print(
            f"footprint reduction: {summary.reduction:.1%} vs baseline {summary.baseline_hosts} ({summary.vs_target:+.1%} vs target {target_reduction:.0%})"
        )
        out.print(f"report: {out_dir / 'report.html'}")


@footprint_app.command()
def report(
    plan_dir: Annotated[Path, typer.Argument(help="Plan folder written by `plan`.")],
) -> None:
    """Re-render report.html from a plan folder."""
    from fleetops.footprint.report import render

    with errors():
        out.print(f"report: {render(plan_dir)}")
