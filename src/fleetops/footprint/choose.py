"""Choosing among target host types and cloud VM sizes: plan each, keep the cheapest.

Each type is planned on its own (a share of the time limit each) and the plans are ranked
by monthly cost when every type has a price, else by the capacity bought (hosts × cores),
so a bigger box only wins when it really packs better.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from fleetops.footprint.model import Demand, Host, InfeasibleError, Plan, TargetType, Workload
from fleetops.footprint.solver import SolveOptions, solve


@dataclass(frozen=True)
class TypeOutcome:
    target: TargetType
    plan: Plan | None
    infeasible: str = ""  # why no plan exists on this type

    def cost(self, by_price: bool) -> float:
        assert self.plan is not None
        units = self.plan.hosts_used
        return units * (self.target.price_per_month if by_price else self.target.cpu)


def plan_cheapest(
    workloads: list[Workload],
    demand: Demand,
    hosts: list[Host],
    targets: list[TargetType],
    options: SolveOptions,
    progress: Callable[[str, float], None] | None = None,
) -> tuple[TypeOutcome, list[TypeOutcome]]:
    """The best type's outcome and every type's outcome (infeasible ones say why)."""
    if not targets:
        raise InfeasibleError(["no target host type or VM size to plan onto"])
    share = dataclasses.replace(options, time_limit=options.time_limit / len(targets))
    outcomes = []
    for i, target in enumerate(targets):
        if progress is not None:
            progress(f"planning on {target.name}", i / len(targets))
        try:
            outcomes.append(TypeOutcome(target, solve(workloads, demand, hosts, target, share)))
        except InfeasibleError as exc:
            outcomes.append(TypeOutcome(target, None, "; ".join(exc.reasons[:3])))
    feasible = [o for o in outcomes if o.plan is not None]
    if not feasible:
        raise InfeasibleError([f"{o.target.name}: {o.infeasible}" for o in outcomes])
    by_price = all(o.target.price_per_month > 0 for o in feasible)
    best = min(feasible, key=lambda o: (o.cost(by_price), o.target.name))
    return best, outcomes
