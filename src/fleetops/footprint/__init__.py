"""Infrastructure footprint planner: pack workloads onto fewer hosts, with proof of quality."""

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
