"""Verify every constraint of a plan, independently of how the plan was found."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fleetops.footprint.model import Demand, Plan, Workload
from fleetops.footprint.solver import EPS, usable_capacity

KINDS = (
    "unplaced",
    "unknown_host",
    "capacity",
    "residency",
    "licence",
    "pin",
    "affinity",
    "anti_affinity",
)


@dataclass(frozen=True)
class Violation:
    kind: str
    detail: str


def check_plan(plan: Plan, workloads: list[Workload], demand: Demand) -> list[Violation]:
    """Every violated constraint of ``plan`` (empty when the plan is valid)."""
    out: list[Violation] = []
    index = {n: i for i, n in enumerate(demand.names)}
    load: dict[str, np.ndarray] = {}
    for w in workloads:
        host_name = plan.assignment.get(w.name)
        if host_name is None:
            out.append(Violation("unplaced", f"{w.name} has no host"))
            continue
        host = plan.hosts.get(host_name)
        if host is None:
            out.append(
                Violation(
                    "unknown_host", f"{w.name} is on {host_name!r} which the plan does not list"
                )
            )
            continue
        load[host_name] = load.get(host_name, 0) + demand.values[index[w.name]]
        if w.site and host.site != w.site:
            out.append(
                Violation(
                    "residency",
                    f"{w.name} must stay in {w.site!r}, is on {host_name} in {host.site!r}",
                )
            )
        if not w.licences <= host.licences:
            out.append(
                Violation(
                    "licence",
                    f"{w.name} needs {sorted(w.licences - host.licences)} not on {host_name}",
                )
            )
        if w.pin_host and host_name != w.pin_host:
            out.append(
                Violation("pin", f"{w.name} is pinned to {w.pin_host}, placed on {host_name}")
            )
    for name, used in load.items():
        cap = usable_capacity(plan.hosts[name], plan.headroom)
        over = used > cap[:, None] * (1 + EPS) + EPS
        if over.any():
            d, t = np.argwhere(over)[0]
            what = ("CPU", "memory", "storage")[d]
            out.append(
                Violation(
                    "capacity",
                    f"{name}: {what} {used[d, t]:.4g} > usable {cap[d]:.4g} (bucket {t})",
                )
            )
    groups: dict[str, set[str]] = {}
    anti: dict[tuple[str, str], list[str]] = {}
    for w in workloads:
        h = plan.assignment.get(w.name)
        if h is None:
            continue
        if w.affinity:
            groups.setdefault(w.affinity, set()).add(h)
        for g in w.anti_affinity:
            anti.setdefault((g, h), []).append(w.name)
    for g, hs in groups.items():
        if len(hs) > 1:
            out.append(Violation("affinity", f"affinity group {g!r} is split over {sorted(hs)}"))
    for (g, h), names in anti.items():
        if len(names) > 1:
            out.append(
                Violation(
                    "anti_affinity",
                    f"anti-affinity group {g!r} has {sorted(names)} together on {h}",
                )
            )
    return out
