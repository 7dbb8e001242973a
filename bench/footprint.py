"""Footprint planner: hosts used against first-fit-decreasing and a proven lower bound.

    .venv/bin/python -m bench.footprint [--quick]

Rows are the real VM traces under ``<shared data>/vm_traces`` (each with a target host
size that fits its era and VM sizes) and seeded synthetic instances of 100, 1 k and 10 k
workloads whose distributions are fitted to the Bitbrains trace with ``fit_profile`` (the
only trace with measured CPU *and* memory series and provisioned sizes). Every plan is
solved twice: time-aware demand (p95 per hour of day, the "ours" columns) and
percentile-only demand (p95 over the whole trace). FFD is the first-fit-decreasing plan of
the same run (``Plan.ffd_hosts``); violations are counted by ``check_plan`` over both plans.
Goals: ours / lower bound ≤ 1.05, 10 k workloads solved in < 60 s, 0 violations.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from fleetops.config import shared_data_dir
from fleetops.footprint import (
    Inventory,
    Plan,
    SolveOptions,
    TargetType,
    build_demand,
    check_plan,
    load,
    solve,
)
from fleetops.footprint.synth import Profile, fit_profile, generate

HEADROOM = 0.8
PERCENTILE = 95.0
RATIO_GOAL = 1.05
SECONDS_GOAL_10K = 60.0


@dataclass(frozen=True)
class Case:
    label: str
    fmt: str
    sub: str  # below vm_traces/
    target: TargetType
    time_limit: float
    why: str  # the host size, in a few words


# Host sizes: big enough for each trace's largest VM under 80 % headroom, typical of its era.
REAL = (
    Case(
        "Bitbrains Rnd 2013-7",
        "bitbrains",
        "bitbrains_rnd/2013-7",
        TargetType("2s-32c-256g", 32, 256),
        10.0,
        "32c/256G",
    ),
    Case(
        "PlanetLab 2011-03-03",
        "planetlab",
        "planetlab/20110303.tar.gz",
        TargetType("16c-32g", 16, 32),
        10.0,
        "16c/32G",
    ),
    Case(
        "Azure 2017 (100 VMs)",
        "azure",
        "azure2017_cpu",
        TargetType("40c-256g", 40, 256),
        10.0,
        "40c/256G",
    ),
    Case(
        "Alibaba GPU 2023 (pods)",
        "alibaba",
        "alibaba_gpu2023",
        TargetType("128c-512g", 128, 512),
        20.0,
        "128c/512G",
    ),
)
SYNTH_TARGET = TargetType("64c-512g", 64, 512)  # fitted sizes reach 32 cores at full use
SYNTH = ((100, 5.0), (1_000, 15.0), (10_000, 55.0))


@dataclass
class Result:
    instance: str
    workloads: int
    timed: Plan
    flat: Plan
    violations: int


def run(inv: Inventory, label: str, target: TargetType, time_limit: float, seed: int) -> Result:
    ws = inv.workloads
    opts = SolveOptions(headroom=HEADROOM, time_limit=time_limit, seed=seed)
    timed_d = build_demand(ws, PERCENTILE, time_aware=True)
    timed = solve(ws, timed_d, [], target, opts)
    flat_d = build_demand(ws, PERCENTILE, time_aware=False)
    flat = solve(ws, flat_d, [], target, opts)
    bad = len(check_plan(timed, ws, timed_d)) + len(check_plan(flat, ws, flat_d))
    return Result(label, len(ws), timed, flat, bad)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1/5 of the time limits")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    console = Console(width=140)
    notes: list[str] = []
    results: list[Result] = []
    root = shared_data_dir() / "vm_traces"
    profile: Profile | None = None
    for case in REAL:
        path = root / case.sub
        if not path.exists():
            notes.append(f"skipped {case.label}: {path} not found")
            continue
        inv = load(case.fmt, path)
        if case.fmt == "bitbrains":
            profile = fit_profile(inv)
        label = f"{case.label} @ {case.why}"
        results.append(run(inv, label, case.target, case.time_limit * scale, seed=0))
    if profile is None:
        bitbrains = root / "bitbrains_rnd" / "2013-7"
        if bitbrains.exists():
            profile = fit_profile(load("bitbrains", bitbrains))
        else:
            notes.append(
                f"{bitbrains} not found: synthetic rows use the module's default Profile "
                "(fitted to Bitbrains offline), not a fit made in this run"
            )
    fitted = "Bitbrains-fitted" if profile is not None else "default profile"
    for n, limit in SYNTH:
        inv = generate(n, seed=n, profile=profile)
        label = f"synthetic {n:,}, {fitted}, seed {n} @ 64c/512G"
        results.append(run(inv, label, SYNTH_TARGET, limit * scale, seed=0))

    table = Table(
        title=(
            f"Footprint planner: hosts at p{PERCENTILE:g}, headroom {HEADROOM:g} "
            "(ours = time-aware demand, improved; FFD from the same run)"
        )
    )
    for col, just in (
        ("instance", "left"),
        ("workloads", "right"),
        ("FFD hosts", "right"),
        ("our hosts", "right"),
        ("lower bound", "right"),
        (f"ours / LB (≤ {RATIO_GOAL:g})", "right"),
        ("solve s", "right"),
        ("violations", "right"),
        ("time-aware / p95-only hosts", "right"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in results:
        p = r.timed
        ratio = p.hosts_used / max(p.lower_bound, 1)
        secs = f"{p.solve_seconds:.1f}"
        if r.workloads >= 10_000:
            secs += " ✓" if p.solve_seconds < SECONDS_GOAL_10K else " ✗"
        table.add_row(
            r.instance,
            f"{r.workloads:,}",
            f"{p.ffd_hosts:,}",
            f"{p.hosts_used:,}",
            f"{p.lower_bound:,}",
            f"{ratio:.3f} {'✓' if ratio <= RATIO_GOAL else '✗'}",
            secs,
            f"{r.violations}",
            f"{r.timed.hosts_used:,} / {r.flat.hosts_used:,}",
        )
    console.print(table)
    for note in notes:
        console.print(f"note: {note}", highlight=False)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    Console(width=140).print(f"total {time.perf_counter() - started:.0f} s", highlight=False)
