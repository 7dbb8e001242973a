"""Fleet simulator: a digital twin of the fleet that produces telemetry, DTCs and failures.

>>> from fleetops.sim import load_scenario, simulate_fleet   # doctest: +SKIP
>>> sim = simulate_fleet(load_scenario("demo"))               # doctest: +SKIP
>>> sim.summary()["signal_values"]                            # doctest: +SKIP
"""

from fleetops.sim.can import simulate_can
from fleetops.sim.fleet import FleetSimulation, Progress, simulate_fleet
from fleetops.sim.scenario import (
    COMPONENTS,
    Climate,
    FaultSpec,
    FleetSpec,
    ModelSpec,
    RegionSpec,
    Scenario,
    load_scenario,
    resolve_scenario,
    shipped_scenarios,
)
from fleetops.sim.vehicles import build_fleet

__all__ = [
    "COMPONENTS",
    "Climate",
    "FaultSpec",
    "FleetSimulation",
    "FleetSpec",
    "ModelSpec",
    "Progress",
    "RegionSpec",
    "Scenario",
    "build_fleet",
    "load_scenario",
    "resolve_scenario",
    "shipped_scenarios",
    "simulate_can",
    "simulate_fleet",
]
