from __future__ import annotations

import pytest

from fleetops.core.errors import ConfigError
from fleetops.core.vss import DataType, SignalCatalog, default_catalog


def test_shipped_catalog_is_vss_shaped() -> None:
    catalog = default_catalog()
    assert len(catalog) >= 30
    speed = catalog["Vehicle.Speed"]
    assert (speed.datatype, speed.unit) == (DataType.FLOAT, "km/h")
    assert all(path.startswith("Vehicle.") for path in catalog)
    for spec in catalog.values():
        if spec.min is not None and spec.max is not None:
            assert spec.min < spec.max, spec.path


def test_overlay_adds_signals() -> None:
    overlay = SignalCatalog.from_yaml(
        "signals: [{path: Vehicle.Private.Fleet.DoorOpenCount, datatype: uint32}]"
    )
    merged = default_catalog().with_overlay(overlay)
    assert "Vehicle.Private.Fleet.DoorOpenCount" in merged
    assert len(merged) == len(default_catalog()) + 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("signals: [{path: Vehicle.X, datatype: string}]", "datatype 'string' is not one of"),
        ("signals: [{datatype: float}]", "needs at least 'path'"),
        ("nothing: here", "'signals' list"),
        ("signals: [", "not valid YAML"),
    ],
)
def test_bad_catalog_files_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SignalCatalog.from_yaml(text)
