"""Predictive maintenance: RUL and failure-horizon models (C-MAPSS), fleet risk from the lake,
explanations and work orders.

Submodules load on first use (PEP 562), so importing the package — as the CLI does —
costs nothing until a name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fleetops.core.lazy import lazy_getattr

if TYPE_CHECKING:
    from fleetops.maintenance.cmapss import (
        RUL_CAP,
        add_rul,
        last_cycles,
        nasa_score,
        read_cmapss,
        read_rul,
        rmse,
    )
    from fleetops.maintenance.features import FeatureBuilder
    from fleetops.maintenance.fleet import FleetRiskModel
    from fleetops.maintenance.model import FailureHorizonClassifier, RulRegressor
    from fleetops.maintenance.normalise import HealthIndex, RegimeNormaliser

_HOME = {
    "FailureHorizonClassifier": "fleetops.maintenance.model",
    "FeatureBuilder": "fleetops.maintenance.features",
    "FleetRiskModel": "fleetops.maintenance.fleet",
    "HealthIndex": "fleetops.maintenance.normalise",
    "RUL_CAP": "fleetops.maintenance.cmapss",
    "RegimeNormaliser": "fleetops.maintenance.normalise",
    "RulRegressor": "fleetops.maintenance.model",
    "add_rul": "fleetops.maintenance.cmapss",
    "last_cycles": "fleetops.maintenance.cmapss",
    "nasa_score": "fleetops.maintenance.cmapss",
    "read_cmapss": "fleetops.maintenance.cmapss",
    "read_rul": "fleetops.maintenance.cmapss",
    "rmse": "fleetops.maintenance.cmapss",
}


__getattr__ = lazy_getattr(__name__, _HOME)


__all__ = [
    "RUL_CAP",
    "FailureHorizonClassifier",
    "FeatureBuilder",
    "FleetRiskModel",
    "HealthIndex",
    "RegimeNormaliser",
    "RulRegressor",
    "add_rul",
    "last_cycles",
    "nasa_score",
    "read_cmapss",
    "read_rul",
    "rmse",
]
