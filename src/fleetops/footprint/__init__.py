"""Infrastructure footprint planner: pack workloads onto fewer hosts, with proof of quality.

Submodules load on first use (PEP 562), so importing the package — as the CLI does —
costs nothing until a name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleetops.core.lazy import lazy_getattr

if TYPE_CHECKING:
    from fleetops.footprint.checker import Violation, check_plan
    from fleetops.footprint.demand import build_demand
    from fleetops.footprint.importers import FORMATS, load, load_inventory
    from fleetops.footprint.model import (
        Demand,
        Host,
        InfeasibleError,
        Inventory,
        Plan,
        TargetType,
        Workload,
    )
    from fleetops.footprint.solver import SolveOptions, solve
    from fleetops.footprint.summary import Summary, summarise

_HOME = {
    "Demand": "fleetops.footprint.model",
    "FORMATS": "fleetops.footprint.importers",
    "Host": "fleetops.footprint.model",
    "InfeasibleError": "fleetops.footprint.model",
    "Inventory": "fleetops.footprint.model",
    "Plan": "fleetops.footprint.model",
    "SolveOptions": "fleetops.footprint.solver",
    "Summary": "fleetops.footprint.summary",
    "TargetType": "fleetops.footprint.model",
    "Violation": "fleetops.footprint.checker",
    "Workload": "fleetops.footprint.model",
    "build_demand": "fleetops.footprint.demand",
    "check_plan": "fleetops.footprint.checker",
    "load": "fleetops.footprint.importers",
    "load_inventory": "fleetops.footprint.importers",
    "solve": "fleetops.footprint.solver",
    "summarise": "fleetops.footprint.summary",
}


__getattr__ = lazy_getattr(__name__, _HOME)


__all__ = [
    "FORMATS",
    "Demand",
    "Host",
    "InfeasibleError",
    "Inventory",
    "Plan",
    "SolveOptions",
    "Summary",
    "TargetType",
    "Violation",
    "Workload",
    "build_demand",
    "check_plan",
    "load",
    "load_inventory",
    "solve",
    "summarise",
]
