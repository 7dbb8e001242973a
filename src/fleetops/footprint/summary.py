"""What a plan saves: hosts, racks, power and cost, and the migration waves."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fleetops.footprint.model import Demand, Host, Inventory, Plan, TargetType, Workload
from fleetops.footprint.solver import SolveOptions, solve


@dataclass
class Summary:
    baseline_hosts: int
    baseline_definition: str
    hosts_used: int
    hosts_freed: int
    reduction: float  # 1 - used / baseline
    target_reduction: float
    racks_before: int
    racks_after: int
    power_before_w: float
    power_after_w: float
    cost_after_per_month: float
    waves: list[list[str]] = field(default_factory=list)  # app groups per wave

    @property
    def vs_target(self) -> float:
        """Reduction achieved minus the target reduction (positive: target beaten)."""
        return self.reduction - self.target_reduction


def allocation_baseline(inv: Inventory, target: TargetType, time_limit: float = 5.0) -> int:
    """Hosts needed when every VM gets its provisioned size (no headroom, no overcommit)."""
    ws = [
        Workload(
            name=w.name,
            cpu_pct={0.0: w.cpu_alloc},
            memory_pct={0.0: w.memory_alloc_gb},
            storage_gb=w.storage_gb,
        )
        for w in inv.workloads
    ]
    import numpy as np

    vals = np.array([[[w.cpu_alloc], [w.memory_alloc_gb], [w.storage_gb]] for w in inv.workloads])
    demand = Demand([w.name for w in ws], vals, "provisioned size", False, 100.0)
    plan = solve(
        ws, demand, [], target, SolveOptions(headroom=1.0, time_limit=time_limit, improve=False)
    )
    return plan.hosts_used


def waves(workloads: list[Workload], per_wave: int = 50) -> list[list[str]]:
    """Application groups (and affinity groups within them) move together; small groups first
    as pilots, each wave up to ``per_wave`` workloads unless one group alone is larger."""
    size: dict[str, int] = {}
    for w in workloads:
        g = w.app_group or w.affinity or w.name
        size[g] = size.get(g, 0) + 1
    out: list[list[str]] = []
    current: list[str] = []
    count = 0
    for g in sorted(size, key=lambda g: (size[g], g)):
        if current and count + size[g] > per_wave:
            out.append(current)
            current, count = [], 0
        current.append(g)
        count += size[g]
    if current:
        out.append(current)
    return out


def summarise(
    inv: Inventory,
    plan: Plan,
    target: TargetType | None,
    target_reduction: float = 0.6,
    per_wave: int = 50,
) -> Summary:
    if inv.hosts:
        baseline, definition = len(inv.hosts), "hosts in the inventory"
        racks_before = len({h.rack for h in inv.hosts if h.rack}) or math.ceil(len(inv.hosts) / 20)
        power_before = sum(h.power_w for h in inv.hosts)
    elif target is not None:
        baseline = allocation_baseline(inv, target)
        definition = (
            f"hosts of type {target.name} needed for every VM's provisioned size (no overcommit)"
        )
        per_rack = target.hosts_per_rack
        racks_before = math.ceil(baseline / per_rack)
        power_before = baseline * target.power_w
    else:
        baseline, definition, racks_before, power_before = plan.hosts_used, "plan itself", 0, 0.0
    used = list(plan.hosts.values())
    new = [h for h in used if not h.rack]
    kept_racks = {h.rack for h in used if h.rack}
    per_rack = target.hosts_per_rack if target else 20
    racks_after = len(kept_racks) + math.ceil(len(new) / per_rack)
    existing = {h.name for h in inv.hosts}
    freed = len(existing - set(plan.hosts)) if inv.hosts else max(baseline - plan.hosts_used, 0)
    return Summary(
        baseline_hosts=baseline,
        baseline_definition=definition,
        hosts_used=plan.hosts_used,
        hosts_freed=freed,
        reduction=1 - plan.hosts_used / max(baseline, 1),
        target_reduction=target_reduction,
        racks_before=racks_before,
        racks_after=racks_after,
        power_before_w=power_before,
        power_after_w=sum(h.power_w for h in used),
        cost_after_per_month=sum(h.cost_per_month for h in used),
        waves=waves(inv.workloads, per_wave),
    )


def host_of(plan: Plan, name: str) -> Host:
    return plan.hosts[plan.assignment[name]]
