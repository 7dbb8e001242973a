"""Predictive maintenance: remaining-useful-life models (NASA C-MAPSS turbofan data first)."""

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
from fleetops.maintenance.model import RulRegressor
from fleetops.maintenance.normalise import RegimeNormaliser

__all__ = [
    "RUL_CAP",
    "FeatureBuilder",
    "RegimeNormaliser",
    "RulRegressor",
    "add_rul",
    "last_cycles",
    "nasa_score",
    "read_cmapss",
    "read_rul",
    "rmse",
]
