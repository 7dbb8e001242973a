"""Scenario files: defaults, shipped scenarios, and clear errors on bad input."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fleetops.core.errors import ConfigError
from fleetops.sim import (
    COMPONENTS,
    FaultSpec,
    Scenario,
    load_scenario,
    resolve_scenario,
    shipped_scenarios,
)


def _minimal() -> dict[str, Any]:
    return {
        "name": "t",
        "seed": 3,
        "days": 2,
        "fleet": {
            "vehicles": 5,
            "models": [
                {"name": "A", "model_years": [2022], "share": 0.5, "battery_kwh": 60},
                {"name": "B", "model_years": [2024, 2025], "share": 0.5, "battery_kwh": 80},
            ],
            "regions": [{"name": "r", "share": 1.0, "center": {"lat": 50.0, "lon": 8.0}}],
        },
        "faults": [{"component": "tyre_leak", "probability": 0.2}],
    }


def test_defaults_make_a_valid_scenario() -> None:
    scenario = Scenario()
    assert scenario.start == datetime(2026, 1, 5, tzinfo=UTC)
    assert scenario.sample_interval_s == 30
    assert scenario.heartbeat_interval_s > scenario.sample_interval_s
    assert scenario.vehicle_days == scenario.fleet.vehicles * scenario.days
    assert Scenario.from_dict({}) == scenario


def test_shipped_scenarios_resolve_by_name_and_path(tmp_path: Path) -> None:
    assert {"demo", "smoke"} <= set(shipped_scenarios())
    demo = load_scenario("demo")
    assert demo.name == "demo"
    assert 80 <= demo.fleet.vehicles <= 120 and demo.days == 7
    assert {f.component for f in demo.faults} == set(COMPONENTS)
    path = resolve_scenario("smoke")
    assert path.is_file() and path.suffix == ".yaml"
    assert load_scenario(str(path)) == load_scenario("smoke.yaml")
    copy_path = tmp_path / "mine.yaml"
    copy_path.write_text(path.read_text())
    assert load_scenario(copy_path) == load_scenario("smoke")
    with pytest.raises(ConfigError, match="demo"):  # lists what is shipped
        resolve_scenario("no-such-scenario")


def test_parses_every_section() -> None:
    data = _minimal()
    data["start"] = "2026-03-02T06:00:00Z"
    data["can"] = {"buses": [{"name": "can0", "bitrate": 500000}], "attacks": {"dos": 0.1}}
    data["faults"].append({"component": "lv_battery", "probability": 0.0, "onset_day": 1.5})
    scenario = Scenario.from_dict(data)
    assert scenario.start == datetime(2026, 3, 2, 6, tzinfo=UTC)
    assert [m.name for m in scenario.fleet.models] == ["A", "B"]
    assert scenario.fleet.models[1].model_years == (2024, 2025)
    assert scenario.fleet.regions[0].lat == 50.0
    assert scenario.fleet.regions[0].offset_h == 1.0  # solar time from the longitude
    assert scenario.faults[1] == FaultSpec("lv_battery", 0.0, (), 1.5)
    assert scenario.can == data["can"]  # passed through untouched for sim/can.py


def test_can_section_is_kept_raw_and_not_shared() -> None:
    data = _minimal()
    data["can"] = {"anything": {"nested": [1, 2, {"x": None}]}}
    before = copy.deepcopy(data["can"])
    scenario = Scenario.from_dict(data)
    assert scenario.can == before
    scenario.can["anything"]["nested"].append(3)
    assert Scenario.from_dict(_minimal() | {"can": before}).can == before


def test_yaml_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: file\nseed: 1\ndays: 1\nfleet:\n  vehicles: 3\n"
        "faults:\n  - {component: brake_pads, probability: 0.5}\n"
    )
    scenario = Scenario.from_yaml(path)
    assert scenario.name == "file" and scenario.fleet.vehicles == 3
    assert scenario.faults == (FaultSpec("brake_pads", 0.5),)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d.update(colour="red"), ["colour", "unknown key"]),
        (lambda d: d["fleet"].update(cars=3), ["fleet.cars", "unknown key"]),
        (lambda d: d["fleet"]["models"][0].update(shares=1), ["fleet.models[0].shares"]),
        (lambda d: d.update(days="seven"), ["days", "integer"]),
        (lambda d: d.update(days=0), ["days", "at least 1"]),
        (lambda d: d.update(seed=-1), ["seed"]),
        (lambda d: d["fleet"].update(vehicles=-4), ["fleet.vehicles", "at least 1"]),
        (lambda d: d["fleet"].update(vehicles=2.5), ["fleet.vehicles", "integer"]),
        (lambda d: d["fleet"]["models"][0].update(share=0.3), ["fleet.models", "sum to 1"]),
        (lambda d: d["fleet"]["regions"][0].update(share=0.5), ["fleet.regions", "sum to 1"]),
        (lambda d: d["fleet"]["models"][1].update(name="A"), ["fleet.models", "unique"]),
        (lambda d: d["fleet"]["models"][0].update(model_years=[]), ["model_years"]),
        (lambda d: d["fleet"]["models"][0].update(model_years=["new"]), ["model_years"]),
        (lambda d: d["fleet"]["models"][0].update(voltage_v=600), ["voltage_v"]),
        (lambda d: d["fleet"]["models"][0].update(wmi="IO1"), ["wmi"]),
        (lambda d: d["fleet"]["models"][0].update(battery_kwh=-5), ["battery_kwh"]),
        (lambda d: d["fleet"]["regions"][0].update(climate={"mean": 3}), ["climate.mean"]),
        (lambda d: d["fleet"]["regions"][0]["center"].update(lat=123), ["center.lat"]),
        (lambda d: d["fleet"].update(models={"name": "A"}), ["fleet.models", "list"]),
        (lambda d: d["faults"][0].update(component="wipers"), ["faults[0].component", "wipers"]),
        (lambda d: d["faults"][0].update(probability=1.5), ["faults[0].probability"]),
        (lambda d: d["faults"][0].update(vins=["NOTAVIN"]), ["faults[0].vins[0]"]),
        (lambda d: d["faults"][0].update(vins=["1HGCM82633A004353"]), ["vins[0]", "check digit"]),
        (lambda d: d["faults"][0].update(onset_day=5), ["faults[0].onset_day"]),
        (lambda d: d["faults"][0].pop("component"), ["faults[0].component", "missing"]),
        (lambda d: d.update(sample_interval_s=7), ["sample_interval_s"]),
        (lambda d: d.update(heartbeat_interval_s=45), ["heartbeat_interval_s"]),
        (lambda d: d.update(start="yesterday"), ["start"]),
        (lambda d: d.update(can=[1, 2]), ["can", "mapping"]),
    ],
)
def test_bad_input_names_the_key(change: Any, words: list[str]) -> None:
    data = _minimal()
    change(data)
    with pytest.raises(ConfigError) as info:
        Scenario.from_dict(data, source="bad.yaml")
    message = str(info.value)
    assert message.startswith("bad.yaml: ")
    for word in words:
        assert word in message


def test_yaml_that_is_not_a_scenario() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        Scenario.from_yaml_text("fleet: [unclosed", "x.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        Scenario.from_yaml_text("- just\n- a list\n", "x.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        Scenario.from_yaml("/nonexistent/scenario.yaml")


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError, match="sample_interval_s"):
        Scenario(sample_interval_s=0)
    with pytest.raises(ConfigError, match="onset_day"):
        Scenario(days=2, faults=(FaultSpec("tyre_leak", 0.1, onset_day=3.0),))
