"""The fleet simulator: determinism, schemas, physics and faults with their ground truth."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fleetops.core.envelope import DecodedBatch, EnvelopeDecoder
from fleetops.core.errors import ConfigError
from fleetops.core.lake import Lake
from fleetops.core.schema import DTCS, ECUS, FAILURES, SIGNALS, VEHICLES
from fleetops.core.types import validate_vin, vin_check_digit
from fleetops.core.vss import DataType, default_catalog
from fleetops.sim import COMPONENTS, FaultSpec, FleetSimulation, load_scenario, simulate_fleet

F64 = npt.NDArray[np.float64]
TB = "Vehicle.Powertrain.TractionBattery"
SOC = f"{TB}.StateOfCharge.Current"
CHARGING = f"{TB}.Charging.IsCharging"
SPEED = "Vehicle.Speed"
ODO = "Vehicle.TraveledDistance"
LV_VOLT = "Vehicle.LowVoltageBattery.CurrentVoltage"
COOLANT = "Vehicle.Powertrain.ElectricMotor.CoolantTemperature"


@pytest.fixture(scope="module")
def smoke() -> FleetSimulation:
    return simulate_fleet(load_scenario("smoke"))


def _vehicle_index(sim: FleetSimulation, vin: str) -> int:
    return [v.vin for v in sim.vehicles].index(vin)


def _runs(flag: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """(first, last) row of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flag.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), (edges[1::2] - 1).tolist(), strict=True))


# -- determinism and schemas --------------------------------------------------------------------


def test_same_seed_gives_identical_tables(smoke: FleetSimulation) -> None:
    again = simulate_fleet(load_scenario("smoke"))
    assert again.signals.equals(smoke.signals)
    assert again.dtcs.equals(smoke.dtcs)
    assert again.failures.equals(smoke.failures)
    assert again.vehicles_table().equals(smoke.vehicles_table())
    assert again.ecus_table().equals(smoke.ecus_table())


def test_different_seed_gives_a_different_fleet(smoke: FleetSimulation) -> None:
    other = simulate_fleet(dataclasses.replace(smoke.scenario, seed=smoke.scenario.seed + 1))
    assert not other.signals.equals(smoke.signals)
    assert {v.vin for v in other.vehicles} != {v.vin for v in smoke.vehicles}


def test_tables_conform_to_the_lake_schemas(smoke: FleetSimulation) -> None:
    assert smoke.signals.schema.equals(SIGNALS)
    assert smoke.dtcs.schema.equals(DTCS)
    assert smoke.failures.schema.equals(FAILURES)
    assert smoke.vehicles_table().schema.equals(VEHICLES)
    assert smoke.ecus_table().schema.equals(ECUS)
    assert smoke.signals.num_rows == smoke.value_count == smoke.sample_count * 37
    assert smoke.vehicles_table().num_rows == len(smoke.vehicles) == smoke.scenario.fleet.vehicles


def test_signals_come_from_the_catalog_and_stay_in_range(smoke: FleetSimulation) -> None:
    catalog = default_catalog()
    table = smoke.signals
    assert set(pc.unique(table.column("signal")).to_pylist()) == set(catalog)
    for path, values in smoke.columns.items():
        spec = catalog[path]
        assert np.isfinite(values).all(), path
        if spec.min is not None:
            assert values.min() >= spec.min, path
        if spec.max is not None:
            assert values.max() <= spec.max, path
        if spec.datatype is DataType.BOOLEAN:
            assert set(np.unique(values)) <= {0.0, 1.0}, path
        elif spec.datatype.is_integer:
            assert np.array_equal(values, np.round(values)), path
    start = smoke.scenario.start.timestamp()
    assert smoke.sample_ts_s.min() >= start
    assert smoke.sample_ts_s.max() < start + smoke.scenario.days * 86_400


def test_vehicles_have_valid_vins_and_varied_software(smoke: FleetSimulation) -> None:
    models = {m.name: m for m in smoke.scenario.fleet.models}
    vins = [v.vin for v in smoke.vehicles]
    assert len(set(vins)) == len(vins)
    for vehicle in smoke.vehicles:
        assert validate_vin(vehicle.vin, check_digit=True) == vehicle.vin
        spec = models[vehicle.model]
        assert vehicle.vin.startswith(spec.wmi)
        assert vehicle.model_year in spec.model_years
        assert {e.name for e in vehicle.ecus} >= {"VCU", "BMS", "TCU", "ADAS", "IVI", "BCM", "GW"}
    versions = {(e.name, e.software_version) for v in smoke.vehicles for e in v.ecus}
    assert len(versions) > len(smoke.vehicles[0].ecus)  # not everyone runs the same release
    assert {v.region for v in smoke.vehicles} == {r.name for r in smoke.scenario.fleet.regions}


# -- physics --------------------------------------------------------------------------------


def test_time_order_and_odometer_are_monotonic(smoke: FleetSimulation) -> None:
    same = smoke.sample_vehicle[1:] == smoke.sample_vehicle[:-1]
    assert (np.diff(smoke.sample_ts_s)[same] > 0).all()
    assert (np.diff(smoke.columns[ODO])[same] >= 0).all()
    assert (np.diff(smoke.columns[ODO])[same] > 0).any()


def test_standing_still_means_motor_stopped(smoke: FleetSimulation) -> None:
    c = smoke.columns
    still = c[SPEED] == 0
    assert still.any() and (~still).any()
    assert (c["Vehicle.Powertrain.ElectricMotor.Speed"][still] == 0).all()
    assert (c["Vehicle.IsMoving"] == (~still).astype(float)).all()
    assert (c["Vehicle.Chassis.Accelerator.PedalPosition"][still] == 0).all()
    moving_rpm = c["Vehicle.Powertrain.ElectricMotor.Speed"][~still]
    assert np.corrcoef(moving_rpm, c[SPEED][~still])[0, 1] > 0.99  # fixed gear ratio


def test_soc_falls_when_driving_and_rises_when_charging(smoke: FleetSimulation) -> None:
    c, veh = smoke.columns, smoke.sample_vehicle
    same = np.concatenate(([False], veh[1:] == veh[:-1]))
    moved = same & (np.concatenate(([0.0], np.diff(c[ODO]))) > 0)
    trips = [(a - 1, b) for a, b in _runs(moved)]
    assert len(trips) > 20
    assert all(c[SOC][b] < c[SOC][a] for a, b in trips)
    charging = c[CHARGING] == 1.0
    assert (c[SPEED][charging] == 0).all()
    assert (c[f"{TB}.CurrentCurrent"][charging] > 0).all()
    assert (c[f"{TB}.CurrentCurrent"][moved] < 0).mean() > 0.6  # regen only now and then
    sessions = [(a, b) for a, b in _runs(charging) if b > a]
    assert sessions
    assert all(c[SOC][b] > c[SOC][a] for a, b in sessions)


def test_charging_tapers_above_80_percent() -> None:
    sim = simulate_fleet(dataclasses.replace(load_scenario("smoke"), days=4, faults=()))
    c = sim.columns
    power = c[f"{TB}.CurrentPower"]
    ratios = []
    for a, b in _runs(c[CHARGING] == 1.0):
        soc = c[SOC][a : b + 1]
        if soc[0] < 75 and soc[-1] > 86:
            session = power[a : b + 1]
            ratios.append(session[soc > 86].mean() / session[soc < 75].mean())
    assert len(ratios) >= 3 and max(ratios) < 0.8  # constant power below 80 %, then less


def test_pack_power_is_voltage_times_current(smoke: FleetSimulation) -> None:
    c = smoke.columns
    product = c[f"{TB}.CurrentVoltage"] * c[f"{TB}.CurrentCurrent"]
    # Both factors are reported rounded to 0.1, which bounds the mismatch.
    bound = 0.05 * np.abs(c[f"{TB}.CurrentCurrent"]) + 0.05 * c[f"{TB}.CurrentVoltage"] + 1.0
    assert (np.abs(c[f"{TB}.CurrentPower"] - product) <= bound).all()


def test_tyre_pressure_follows_temperature(smoke: FleetSimulation) -> None:
    c = smoke.columns
    leaking = {r["vin"] for r in smoke.failures.to_pylist() if r["component"] == "tyre_leak"}
    healthy = ~np.isin(smoke.sample_vehicle, [_vehicle_index(smoke, v) for v in leaking])
    parked = healthy & (c[SPEED] == 0) & (c[CHARGING] == 0)
    pressure = c["Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure"]
    correlations = []
    for v in np.unique(smoke.sample_vehicle[parked]):
        mine = parked & (smoke.sample_vehicle == v)
        correlations.append(
            np.corrcoef(c["Vehicle.Exterior.AirTemperature"][mine], pressure[mine])[0, 1]
        )
    assert np.median(correlations) > 0.5


def test_positions_stay_in_their_region(smoke: FleetSimulation) -> None:
    regions = {r.name: r for r in smoke.scenario.fleet.regions}
    lat = smoke.columns["Vehicle.CurrentLocation.Latitude"]
    for i, vehicle in enumerate(smoke.vehicles):
        region = regions[vehicle.region]
        mine = smoke.sample_vehicle == i
        assert np.abs(lat[mine] - region.lat).max() * 111.32 < 2 * region.radius_km
        assert np.ptp(lat[mine]) > 0  # it does move


# -- faults, failures and DTCs --------------------------------------------------------------


def _window(sim: FleetSimulation, vin: str, start: float, end: float) -> npt.NDArray[np.bool_]:
    ts = sim.sample_ts_s
    mine = (sim.sample_vehicle == _vehicle_index(sim, vin)) & (ts >= start) & (ts < end)
    return np.asarray(mine, dtype=np.bool_)


def test_every_fault_fails_with_ground_truth_and_healthy_cars_do_not(
    smoke: FleetSimulation,
) -> None:
    rows = smoke.failures.to_pylist()
    assert sorted(r["component"] for r in rows) == sorted(COMPONENTS)  # smoke: each fault once
    end = smoke.scenario.start.timestamp() + smoke.scenario.days * 86_400
    for r in rows:
        assert r["failure_ts"] is not None, r
        assert r["onset_ts"] < r["failure_ts"] and r["failure_ts"].timestamp() < end
    faulty = {r["vin"] for r in rows}
    assert len(faulty) == len(rows) < len(smoke.vehicles)
    healthy = [v.vin for v in smoke.vehicles if v.vin not in faulty]
    fault_codes = {"P0562", "P0A7F", "P0A80", "C1B10", "C1B11", "P2601", "P0A2F"}
    for row in smoke.dtcs.to_pylist():
        if row["vin"] in healthy:
            assert row["code"] not in fault_codes, row


def test_each_fault_shows_its_precursor_before_failure(smoke: FleetSimulation) -> None:
    c = smoke.columns
    faulty = {r["vin"] for r in smoke.failures.to_pylist()}
    healthy = ~np.isin(smoke.sample_vehicle, [_vehicle_index(smoke, v) for v in faulty])
    driving = c[SPEED] > 0
    parked = (c[SPEED] == 0) & (c[CHARGING] == 0)
    spread = f64(c[f"{TB}.CellVoltage.Max"] - c[f"{TB}.CellVoltage.Min"])
    tyres = np.stack([v for k, v in c.items() if k.endswith("Tire.Pressure")])
    pads = np.stack([v for k, v in c.items() if k.endswith("Brake.PadWear")])
    for r in smoke.failures.to_pylist():
        onset, fail = r["onset_ts"].timestamp(), r["failure_ts"].timestamp()
        late = _window(smoke, r["vin"], onset + 0.6 * (fail - onset), fail)  # before failure
        early = _window(smoke, r["vin"], 0, onset)
        component = r["component"]
        assert late.any(), component
        if component == "lv_battery":
            assert c[LV_VOLT][late & parked].min() < c[LV_VOLT][healthy & parked].min() - 0.3
        elif component == "cell_imbalance":
            assert spread[late].mean() > 4 * np.median(spread[healthy])
            soh = c[f"{TB}.StateOfHealth"]
            assert soh[late].min() < soh[early | late].max() - 1.0
        elif component == "brake_pads":
            wear = pads[:, late].max(axis=1)
            assert wear.max() >= 85 and np.sort(wear)[-2] < 80  # one pad, not all four
        elif component == "tyre_leak":
            assert tyres[:, late].min() < tyres[:, healthy].min() - 30
        elif component == "coolant_pump":
            hot = c[COOLANT][late & driving]
            assert hot.size and hot.max() > c[COOLANT][healthy & driving].max()


def test_faulty_vehicles_raise_fitting_dtcs_before_failing(smoke: FleetSimulation) -> None:
    codes = {
        "lv_battery": {"P0562"},
        "cell_imbalance": {"P0A7F", "P0AFA", "P0A80"},
        "brake_pads": {"C1B10", "C1B11"},
        "tyre_leak": {"C0750", "C0755", "C0760", "C0765"},
        "coolant_pump": {"P2601", "P0A2F"},
    }
    dtcs = smoke.dtcs.to_pylist()
    for r in smoke.failures.to_pylist():
        raised = {d["code"] for d in dtcs if d["vin"] == r["vin"] and d["ts"] <= r["failure_ts"]}
        assert raised & codes[r["component"]], r
    assert all(len(d["code"]) == 5 and d["code"][0] in "PCBU" for d in dtcs)


def test_explicit_vins_get_the_fault(smoke: FleetSimulation) -> None:
    target = smoke.vehicles[0].vin
    scenario = dataclasses.replace(
        smoke.scenario, faults=(FaultSpec("tyre_leak", 0.0, (target,), onset_day=0.2),)
    )
    sim = simulate_fleet(scenario)
    rows = sim.failures.to_pylist()
    assert [(r["vin"], r["component"]) for r in rows] == [(target, "tyre_leak")]
    assert rows[0]["onset_ts"].timestamp() == pytest.approx(
        scenario.start.timestamp() + 0.2 * 86_400, abs=1
    )
    body = target[:11] + "000000"  # serials are drawn from 100000 up: not in this fleet
    stranger = body[:8] + vin_check_digit(body) + body[9:]
    unknown = dataclasses.replace(
        smoke.scenario, faults=(FaultSpec("tyre_leak", 0.0, (stranger,)),)
    )
    with pytest.raises(ConfigError, match=stranger):
        simulate_fleet(unknown)


# -- outputs ------------------------------------------------------------------------------------


def test_messages_round_trip_through_the_envelope_decoder(smoke: FleetSimulation) -> None:
    decoder = EnvelopeDecoder(default_catalog())
    batch = DecodedBatch()
    seqs: dict[str, list[int]] = {}
    for vin, payload in smoke.messages(samples_per_message=50):
        decoder.decode(payload, f"fleet/{vin}/telemetry", batch)
        assert batch.keys[-1][0] == vin
        seqs.setdefault(vin, []).append(batch.keys[-1][1])
    assert batch.dead == []
    assert batch.messages == len(batch.keys)
    assert all(s == list(range(len(s))) for s in seqs.values())
    assert set(seqs) == {v.vin for v in smoke.vehicles}
    decoded = batch.signals_table()
    keys = [("vin", "ascending"), ("ts", "ascending"), ("signal", "ascending")]
    assert decoded.sort_by(keys).equals(smoke.signals.sort_by(keys))


def test_messages_keep_each_vins_samples_in_time_order(smoke: FleetSimulation) -> None:
    decoder = EnvelopeDecoder(default_catalog())
    last: dict[str, int] = {}
    for vin, payload in smoke.messages(samples_per_message=7):
        batch = DecodedBatch()
        decoder.decode(payload, "t", batch)
        ts = batch.ts[0]
        assert (np.diff(ts) > 0).all() and ts[0] > last.get(vin, 0)
        last[vin] = int(ts[-1])


def test_write_to_lake_appends_series_and_replaces_reference_tables(
    smoke: FleetSimulation, tmp_path: Path
) -> None:
    lake = Lake(tmp_path / "lake")
    counts = smoke.write_to(lake)
    assert counts["signals"] == smoke.value_count
    smoke.write_to(lake)
    assert lake.read("vehicles").num_rows == len(smoke.vehicles)  # replaced, not appended
    assert lake.read("failures").num_rows == smoke.failures.num_rows
    assert lake.read("ecus").num_rows == counts["ecus"]
    assert lake.read("dtcs").num_rows == 2 * smoke.dtcs.num_rows  # appended
    total = lake.query("SELECT count(*) AS n FROM signals").column("n")[0].as_py()
    assert total == 2 * smoke.value_count


def test_summary_and_progress(smoke: FleetSimulation) -> None:
    advances: list[int] = []
    scenario = dataclasses.replace(smoke.scenario, days=3)
    sim = simulate_fleet(scenario, progress=advances.append)
    assert sum(advances) == scenario.vehicle_days and all(a >= 0 for a in advances)
    summary = smoke.summary()
    assert summary["vehicles"] == len(smoke.vehicles)
    assert summary["signal_values"] == smoke.signals.num_rows
    assert summary["dtcs"] == smoke.dtcs.num_rows
    assert summary["failures"] == len(COMPONENTS)
    assert summary["trips"] > 0 and summary["distance_km"] > 0
    assert sim.summary()["days"] == 3


def test_signal_rows_match_columns(smoke: FleetSimulation) -> None:
    table = smoke.signals
    first = table.slice(0, 37).to_pylist()
    assert [r["signal"] for r in first] == list(default_catalog())
    vin = smoke.vehicles[int(smoke.sample_vehicle[0])].vin
    assert {r["vin"] for r in first} == {vin}
    assert [r["value"] for r in first] == [float(v[0]) for v in smoke.columns.values()]
    assert table.column("ts")[0].as_py().timestamp() == smoke.sample_ts_s[0]
    assert isinstance(table, pa.Table)


def f64(values: object) -> F64:
    return np.asarray(values, dtype=np.float64)


@pytest.mark.slow
def test_demo_size_and_speed() -> None:
    scenario = load_scenario("demo")
    began = time.perf_counter()
    sim = simulate_fleet(scenario)
    rows = sim.signals.num_rows
    elapsed = time.perf_counter() - began
    assert 5_000_000 <= rows <= 20_000_000
    assert elapsed < 30.0  # well under 10 s on a 2-core laptop; slack for loaded CI
    assert sim.failures.num_rows >= len(COMPONENTS)
