"""The fleet simulator: a digital twin that produces telemetry, DTCs and failure ground truth.

The run is simulated one *local* day at a time for a chunk of vehicles at once. Within a day
everything is vectorised: the second-by-second drive of all trips (``sim/drive.py``), then a
``(vehicles, cells)`` grid with one cell per sample interval for charging, temperatures,
battery electrics and wear. Only the charging decisions loop, over the few gaps between
trips. Driving and charging cells are emitted as samples; parked ones only on heartbeats.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from fleetops.core.envelope import encode_message
from fleetops.core.lake import Lake
from fleetops.core.schema import ECUS, SIGNALS, VEHICLES
from fleetops.core.types import Vehicle
from fleetops.core.vss import default_catalog
from fleetops.sim import wear
from fleetops.sim.drive import (
    MAX_TRIPS,
    TO_HOME,
    TO_WORK,
    candidate_trips,
    drive_cells,
    finish_schedule,
    make_legs,
    motor_rpm,
    schedule_trips,
)
from fleetops.sim.physics import (
    ATMOSPHERE_KPA,
    F64,
    I64,
    KELVIN,
    Bool,
    ambient_temperature,
    charge_power_fraction,
    charge_soc,
    daylight,
    diurnal_cycle,
    ema,
    f64,
    pack_electrics,
    seasonal_temperature,
    time_to_soc,
)
from fleetops.sim.scenario import Scenario
from fleetops.sim.vehicles import VehicleParams, build_fleet

Progress = Callable[[int], None]

DAY_S = 86_400
CHUNK = 128  # vehicles simulated together at 30 s cells; fixed, so results never depend on
# the machine (only on the scenario: finer sampling means smaller chunks, same memory)
_BATCH_SAMPLES = 262_144  # samples per record batch of the signals table
AUX_W = 300.0  # 12 V loads, computers, pumps while awake
IDLE_W = 25.0  # what a sleeping car draws from the traction battery
PAD_J_PER_PERCENT = 2.5e7  # friction energy that wears 1 % of a pad (≈ 60 000 km of pads)
PAD_SHARE = np.array([0.35, 0.35, 0.15, 0.15])  # front axle does most of the braking

_A = "Vehicle.Chassis.Axle"
_WHEELS = ("Row1.Wheel.Left", "Row1.Wheel.Right", "Row2.Wheel.Left", "Row2.Wheel.Right")
TYRES = tuple(f"{_A}.{w}.Tire.Pressure" for w in _WHEELS)
PADS = tuple(f"{_A}.{w}.Brake.PadWear" for w in _WHEELS)
_TB = "Vehicle.Powertrain.TractionBattery"
_EM = "Vehicle.Powertrain.ElectricMotor"
# Decimal places a vehicle reports (integer datatypes are rounded to whole numbers anyway).
_DECIMALS: dict[str, int] = {
    "Vehicle.Speed": 1,
    "Vehicle.TraveledDistance": 3,
    "Vehicle.Acceleration.Longitudinal": 2,
    "Vehicle.CurrentLocation.Latitude": 6,
    "Vehicle.CurrentLocation.Longitude": 6,
    "Vehicle.Exterior.AirTemperature": 1,
    "Vehicle.Cabin.HVAC.AmbientAirTemperature": 1,
    f"{_TB}.StateOfCharge.Current": 2,
    f"{_TB}.StateOfCharge.Displayed": 1,
    f"{_TB}.StateOfHealth": 2,
    f"{_TB}.CurrentVoltage": 1,
    f"{_TB}.CurrentCurrent": 1,
    f"{_TB}.CurrentPower": 0,
    f"{_TB}.Temperature.Average": 1,
    f"{_TB}.CellVoltage.Min": 3,
    f"{_TB}.CellVoltage.Max": 3,
    "Vehicle.LowVoltageBattery.CurrentVoltage": 2,
    "Vehicle.LowVoltageBattery.CurrentCurrent": 2,
}


# -- the result ------------------------------------------------------------------------------


@dataclass(eq=False)
class FleetSimulation:
    """What :func:`simulate_fleet` produced: the fleet, its telemetry, DTCs and ground truth.

    Samples are held column-wise (one array per signal, rows sorted by VIN then time);
    :attr:`signals` is the long lake table built from them on first use.
    """

    scenario: Scenario
    vehicles: list[Vehicle]
    dtcs: pa.Table
    failures: pa.Table
    sample_vehicle: I64  # index into ``vehicles`` per sample
    sample_ts_s: I64  # seconds since the epoch per sample
    columns: dict[str, F64]  # VSS path -> value per sample, catalog order
    stats: dict[str, float] = field(default_factory=dict)
    _signals: pa.Table | None = field(default=None, init=False, repr=False)

    @property
    def sample_count(self) -> int:
        return int(self.sample_ts_s.size)

    @property
    def value_count(self) -> int:
        return self.sample_count * len(self.columns)

    @property
    def signals(self) -> pa.Table:
        """Telemetry in the lake's SIGNALS schema (vin, ts, signal, value), sorted."""
        if self._signals is None:
            self._signals = self._build_signals()
        return self._signals

    def _build_signals(self) -> pa.Table:
        names = list(self.columns)
        m = len(names)
        vin_bytes = np.frombuffer("".join(v.vin for v in self.vehicles).encode(), np.uint8)
        vin_bytes = vin_bytes.reshape(len(self.vehicles), 17)
        name_blob = np.frombuffer("".join(names).encode(), np.uint8)
        name_starts = np.concatenate(([0], np.cumsum([len(n.encode()) for n in names])[:-1]))
        batches = []
        # String columns are laid out as Arrow buffers directly (one VIN or one block of all
        # signal names per sample), in batches that keep 32-bit offsets and memory in check.
        for lo in range(0, self.sample_count, _BATCH_SAMPLES):
            hi = min(lo + _BATCH_SAMPLES, self.sample_count)
            n = hi - lo
            rows = n * m
            vin_data = np.empty((n, m, 17), dtype=np.uint8)
            vin_data[:] = vin_bytes[self.sample_vehicle[lo:hi]][:, None, :]  # broadcast, no repeat
            name_data = np.empty((n, name_blob.size), dtype=np.uint8)
            name_data[:] = name_blob
            ts_us = np.empty((n, m), dtype=np.int64)
            ts_us[:] = (self.sample_ts_s[lo:hi] * 1_000_000)[:, None]
            vin_offsets = np.arange(rows + 1, dtype=np.int32) * 17
            sig_offsets = np.empty(rows + 1, dtype=np.int32)
            sig_offsets[:-1] = (
                np.arange(n, dtype=np.int32)[:, None] * name_blob.size + name_starts
            ).ravel()
            sig_offsets[-1] = n * name_blob.size
            values = np.empty((n, m), dtype=np.float64)
            for j, name in enumerate(names):
                values[:, j] = self.columns[name][lo:hi]
            batches.append(
                pa.record_batch(
                    [
                        pa.StringArray.from_buffers(
                            rows, pa.py_buffer(vin_offsets), pa.py_buffer(vin_data)
                        ),
                        pa.array(ts_us.ravel()).cast(SIGNALS.field("ts").type),
                        pa.StringArray.from_buffers(
                            rows, pa.py_buffer(sig_offsets), pa.py_buffer(name_data)
                        ),
                        pa.array(values.ravel(), pa.float64()),
                    ],
                    schema=SIGNALS,
                )
            )
        return pa.Table.from_batches(batches, schema=SIGNALS)

    def vehicles_table(self) -> pa.Table:
        return pa.table(
            {
                "vin": [v.vin for v in self.vehicles],
                "model": [v.model for v in self.vehicles],
                "model_year": pa.array([v.model_year for v in self.vehicles], pa.int16()),
                "region": [v.region for v in self.vehicles],
            },
            schema=VEHICLES,
        )

    def ecus_table(self) -> pa.Table:
        rows = [
            (v.vin, e.name, e.hardware_id, e.software_version)
            for v in self.vehicles
            for e in v.ecus
        ]
        return pa.table(
            {name: [r[i] for r in rows] for i, name in enumerate(ECUS.names)}, schema=ECUS
        )

    def write_to(self, lake: Lake) -> dict[str, int]:
        """Append telemetry and DTCs; replace the inventory and ground-truth tables."""
        lake.write("signals", self.signals)
        lake.write("dtcs", self.dtcs)
        lake.replace("vehicles", self.vehicles_table())
        lake.replace("ecus", self.ecus_table())
        lake.replace("failures", self.failures)
        return {
            "signals": self.signals.num_rows,
            "dtcs": self.dtcs.num_rows,
            "vehicles": len(self.vehicles),
            "ecus": sum(len(v.ecus) for v in self.vehicles),
            "failures": self.failures.num_rows,
        }

    def summary(self) -> dict[str, Any]:
        components = self.failures.column("component").to_pylist()
        failed = self.failures.column("failure_ts").is_valid().to_pylist()
        return {
            "scenario": self.scenario.name,
            "vehicles": len(self.vehicles),
            "days": self.scenario.days,
            "samples": self.sample_count,
            "signal_values": self.value_count,
            "dtcs": self.dtcs.num_rows,
            "faults": len(components),
            "failures": int(sum(failed)),
            "faulty_vehicles": len(set(self.failures.column("vin").to_pylist())),
            "faults_by_component": {c: components.count(c) for c in sorted(set(components))},
            "trips": int(self.stats.get("trips", 0)),
            "distance_km": round(self.stats.get("distance_km", 0.0), 1),
            "charging_sessions": int(self.stats.get("charging_sessions", 0)),
            "energy_kwh": round(self.stats.get("energy_kwh", 0.0), 1),
        }

    def messages(self, samples_per_message: int = 60) -> Iterator[tuple[str, bytes]]:
        """What the vehicles publish: ``(vin, payload)`` in order of each message's first sample.

        Each message carries up to ``samples_per_message`` consecutive samples of one VIN;
        ``seq`` counts that VIN's messages from 0.
        """
        if samples_per_message < 1:
            raise ValueError("samples_per_message must be at least 1")
        veh = self.sample_vehicle
        starts_of_vehicle = np.searchsorted(veh, np.arange(len(self.vehicles)), side="left")
        # message boundaries: every samples_per_message rows within each vehicle's run
        offset = np.arange(veh.size) - starts_of_vehicle[veh]
        first_rows = np.flatnonzero(offset % samples_per_message == 0)
        ends = np.empty_like(first_rows)
        ends[:-1] = first_rows[1:]
        if ends.size:
            ends[-1] = veh.size
        seqs = offset[first_rows] // samples_per_message
        order = np.lexsort((veh[first_rows], self.sample_ts_s[first_rows]))
        ts_ms = self.sample_ts_s * 1000
        names = list(self.columns)
        for i in order.tolist():
            lo, hi = int(first_rows[i]), int(ends[i])
            vin = self.vehicles[int(veh[lo])].vin
            payload = encode_message(
                vin, int(seqs[i]), ts_ms[lo:hi], {n: self.columns[n][lo:hi] for n in names}
            )
            yield vin, payload


# -- simulation --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Weather:
    """Weather anomaly per region: a smooth random walk on top of the climate."""

    knot_s: F64
    anomaly: F64  # (regions, knots)

    @classmethod
    def draw(cls, rng: np.random.Generator, regions: int, t0: float, t1: float) -> _Weather:
        step = 3 * 3600.0
        knots = np.arange(t0 - 2 * DAY_S, t1 + 2 * DAY_S, step)
        phi = np.exp(-step / (36 * 3600.0))  # fronts pass in a day or two
        shocks = rng.normal(0.0, 3.0 * np.sqrt(1 - phi**2), (regions, knots.size))
        anomaly = np.empty_like(shocks)
        anomaly[:, 0] = rng.normal(0.0, 3.0, regions)
        for i in range(1, knots.size):  # a few hundred knots per run, not per sample
            anomaly[:, i] = phi * anomaly[:, i - 1] + shocks[:, i]
        return cls(knots, anomaly)

    def at(self, region: I64, t: F64) -> F64:
        out = np.empty_like(t)
        for r in np.unique(region).tolist():
            rows = region == r
            out[rows] = np.interp(t[rows], self.knot_s, self.anomaly[r])
        return out


@dataclass(slots=True)
class _State:
    """What carries over from one local day to the next, per vehicle of a chunk."""

    soc: F64
    carry: Bool  # still plugged in and charging at midnight
    carry_kw: F64
    carry_target: F64
    x: F64  # km east of the region centre
    y: F64
    odo_km: F64
    t_motor: F64
    t_coolant: F64
    t_coolant_ref: F64  # what a healthy pump would give: the ECU's model for P2601
    t_batt: F64
    t_cabin: F64
    t_tyre: F64
    pad: F64  # (n, 4)
    pad_at_onset: F64
    last_awake_s: F64
    immobile_from: F64  # failed: parked from then on
    brake_fail_s: F64
    coolant_fail_s: F64
    lv_attempt_s: F64  # first start attempt after the 12 V battery gave out


@dataclass(slots=True)
class _Out:
    vehicle: list[I64] = field(default_factory=list)
    ts: list[I64] = field(default_factory=list)
    cols: dict[str, list[F64]] = field(default_factory=dict)
    aux: dict[str, list[F64]] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, values: F64, aux: bool = False) -> None:
        (self.aux if aux else self.cols).setdefault(name, []).append(values)

    def count(self, name: str, value: float) -> None:
        self.stats[name] = self.stats.get(name, 0.0) + value


@dataclass(slots=True)
class _Ctx:
    scenario: Scenario
    dt: int
    cells: int
    hb_cells: int
    run_start: float
    run_end: float
    weather: _Weather


def simulate_fleet(scenario: Scenario, progress: Progress | None = None) -> FleetSimulation:
    """Simulate ``scenario``: deterministic for a given seed.

    ``progress`` is called with the number of vehicle-days just completed (they add up to
    ``scenario.vehicle_days``).
    """
    seed = scenario.seed
    vehicles, params = build_fleet(scenario, np.random.default_rng([seed, 0]))
    vins = [v.vin for v in vehicles]
    plan = wear.plan_faults(scenario, vins, np.random.default_rng([seed, 1]))
    run_start = scenario.start.timestamp()
    run_end = run_start + scenario.days * DAY_S
    ctx = _Ctx(
        scenario=scenario,
        dt=scenario.sample_interval_s,
        cells=DAY_S // scenario.sample_interval_s,
        hb_cells=scenario.heartbeat_interval_s // scenario.sample_interval_s,
        run_start=run_start,
        run_end=run_end,
        weather=_Weather.draw(
            np.random.default_rng([seed, 2]), len(scenario.fleet.regions), run_start, run_end
        ),
    )
    n = len(vehicles)
    out = _Out()
    brake_fail = np.full(n, np.inf)
    coolant_fail = np.full(n, np.inf)
    lv_attempt = np.full(n, np.inf)
    chunk_size = min(max(4, CHUNK * ctx.dt // 30), 1024)
    for chunk, lo in enumerate(range(0, n, chunk_size)):
        index = np.arange(lo, min(lo + chunk_size, n))
        p, fp = params.take(index), plan.take(index)
        # Local midnight at or before the run's start, per vehicle.
        first = np.floor((run_start + p.offset_s) / DAY_S) * DAY_S - p.offset_s
        windows = int(np.ceil((run_end - first.min()) / DAY_S))
        st = _initial_state(ctx, p, fp, first)
        done = 0
        for w in range(windows):
            rng = np.random.default_rng([seed, 3, chunk, w])
            _simulate_day(ctx, p, fp, st, first + w * DAY_S, rng, index, out)
            if progress is not None:  # spread this chunk's vehicle-days over its windows
                target = round(index.size * scenario.days * (w + 1) / windows)
                progress(target - done)
                done = target
        brake_fail[index] = st.brake_fail_s
        coolant_fail[index] = st.coolant_fail_s
        lv_attempt[index] = st.lv_attempt_s
    return _assemble(ctx, vehicles, plan, out, brake_fail, coolant_fail, lv_attempt)


def _initial_state(ctx: _Ctx, p: VehicleParams, plan: wear.FaultPlan, first: F64) -> _State:
    t0 = first[:, None]
    amb = _ambient(ctx, p, t0)[:, 0]
    planned = plan.fail_s.copy()
    planned[:, list(wear.DATA_DRIVEN)] = np.inf  # the wear model decides when these fail
    n = len(p)
    return _State(
        soc=p.soc0.copy(),
        carry=np.zeros(n, dtype=bool),
        carry_kw=np.zeros(n),
        carry_target=np.zeros(n),
        x=p.home_x.copy(),
        y=p.home_y.copy(),
        odo_km=p.odo0_km.copy(),
        t_motor=amb.copy(),
        t_coolant=amb.copy(),
        t_coolant_ref=amb.copy(),
        t_batt=amb + 2.0,
        t_cabin=amb.copy(),
        t_tyre=amb.copy(),
        pad=p.pad0.copy(),
        pad_at_onset=np.full(n, np.nan),
        last_awake_s=first - 8 * 3600.0,
        immobile_from=planned.min(axis=1),
        brake_fail_s=np.full(n, np.inf),
        coolant_fail_s=np.full(n, np.inf),
        lv_attempt_s=np.full(n, np.inf),
    )


def _ambient(ctx: _Ctx, p: VehicleParams, t: F64) -> F64:
    climate = ambient_temperature(
        t,
        p.climate_mean[:, None],
        p.climate_seasonal[:, None],
        p.climate_diurnal[:, None],
        p.offset_s[:, None],
        p.southern[:, None],
    )
    return f64(
        climate
        + ctx.weather.at(p.region, np.broadcast_to(t, climate.shape))
        + p.climate_offset[:, None]
    )


def _day_ambient(ctx: _Ctx, p: VehicleParams, t: F64) -> F64:
    """:func:`_ambient` over a local-day grid, computed more cheaply.

    The seasonal term moves a fraction of a degree in a day, so it is interpolated between
    the day's ends; the diurnal cycle is shared (sampling phases differ by under a minute).
    """
    ends = seasonal_temperature(
        t[:, [0, -1]], p.climate_mean[:, None], p.climate_seasonal[:, None], p.southern[:, None]
    )
    ramp = np.linspace(0.0, 1.0, t.shape[1])[None, :]
    hours = f64(np.arange(t.shape[1]) * (ctx.dt / 3600.0))  # the grid starts at local midnight
    climate = ends[:, :1] + (ends[:, 1:] - ends[:, :1]) * ramp
    climate = climate + p.climate_diurnal[:, None] * diurnal_cycle(hours)[None, :]
    return f64(climate + ctx.weather.at(p.region, t) + p.climate_offset[:, None])


def _group_exclusive_cumsum(values: F64, first: Bool) -> F64:
    """Running sum before each element, restarting where ``first`` is set (contiguous groups)."""
    total = np.cumsum(values) - values
    start = (
        np.maximum.accumulate(np.where(first, np.arange(values.size), 0)) if values.size else first
    )
    return f64(total - total[start]) if values.size else f64(values)


def _simulate_day(
    ctx: _Ctx,
    p: VehicleParams,
    plan: wear.FaultPlan,
    st: _State,
    win0: F64,
    rng: np.random.Generator,
    index: I64,
    out: _Out,
) -> None:
    n, cells, dt = len(p), ctx.cells, ctx.dt
    k_max = MAX_TRIPS
    col = np.arange(cells)
    t = win0[:, None] + (col * dt)[None, :] + p.sample_phase_s[:, None]  # sample instants
    win_end = win0 + DAY_S
    local_day = np.floor((win0 + p.offset_s) / DAY_S + 0.5).astype(np.int64)
    weekend = (local_day + 3) % 7 >= 5  # 1970-01-01 was a Thursday
    commute_today = p.commuter & ~weekend & (rng.random(n) > 0.05)  # leave, sick days

    # -- trips ---------------------------------------------------------------------------
    cand = candidate_trips(rng, p, weekend, commute_today)
    legs, durations = make_legs(rng, cand, p)
    sched = schedule_trips(cand, durations, dt, cells)
    start_abs = win0[:, None] + sched.start * dt + p.sample_phase_s[:, None]
    cancelled = sched.valid & (start_abs >= st.immobile_from[:, None])
    lv_fail = plan.fail_s[:, wear.LV]
    tried = cancelled & (start_abs >= lv_fail[:, None])
    st.lv_attempt_s = np.minimum(st.lv_attempt_s, np.where(tried, start_abs, np.inf).min(axis=1))
    sched = finish_schedule(sched.start, sched.cells, sched.valid & ~cancelled, cells)
    dc = drive_cells(rng, legs, sched, p, dt)
    flat = dc.vehicle * cells + dc.column
    fv = dc.vehicle
    driving = np.zeros((n, cells), dtype=bool)
    driving.ravel()[flat] = True

    # -- climate and energy --------------------------------------------------------------
    amb = _day_ambient(ctx, p, t)
    heat_w = np.minimum(120.0 * np.maximum(19.0 - amb, 0.0), 4500.0)
    heat_w = heat_w * np.where(p.heat_pump, 0.55, 1.0)[:, None]
    cool_w = np.minimum(120.0 * np.maximum(amb - 23.0, 0.0), 3000.0)
    hvac_w = heat_w + cool_w
    e_cell = dc.energy_j + (hvac_w.ravel()[flat] + AUX_W) * dt
    trip_id = fv * k_max + dc.trip
    trip_kwh = np.bincount(trip_id, weights=e_cell, minlength=n * k_max).reshape(n, k_max) / 3.6e6
    trip_km = (
        np.bincount(trip_id, weights=dc.distance_m, minlength=n * k_max).reshape(n, k_max) / 1e3
    )

    s_cool = wear.severity(
        t, plan.onset_s[:, wear.COOLANT, None], plan.fail_s[:, wear.COOLANT, None]
    )
    s_cell0 = wear.severity(win0, plan.onset_s[:, wear.CELL], plan.fail_s[:, wear.CELL])
    soh0 = p.soh0 - s_cell0 * plan.magnitude[:, wear.CELL]
    cap_kwh = p.cap_kwh * soh0 / 100.0  # usable capacity today, for the energy balance
    drain = IDLE_W / (cap_kwh * 3.6e6)  # SoC per second while asleep

    # -- charging decisions, gap by gap ---------------------------------------------------
    gs = np.concatenate([np.zeros((n, 1), dtype=np.int64), sched.end], axis=1)
    ge = np.concatenate([sched.start, np.full((n, 1), cells, dtype=np.int64)], axis=1)
    n_trips = sched.valid.sum(axis=1)
    seg = {
        name: np.zeros((n, k_max + 1))
        for name in ("c0", "c1", "soc0", "soc_c0", "soc_c1", "rate", "kw")
    }
    seg_charging = np.zeros((n, k_max + 1), dtype=bool)
    trip_soc0 = np.zeros((n, k_max))
    soc = st.soc.copy()
    carry = np.zeros(n, dtype=bool)
    carry_kw, carry_target = np.zeros(n), np.zeros(n)
    offpeak = np.where(np.isfinite(p.offpeak_h), np.nan_to_num(p.offpeak_h) * 3600.0 / dt, -1.0)
    station_kw = rng.choice([50.0, 150.0, 300.0], size=(n, k_max + 1), p=[0.3, 0.5, 0.2])
    rows = np.arange(n)
    for k in range(k_max + 1):
        g0, g1 = gs[:, k], ge[:, k]
        length_s = (g1 - g0) * dt
        mobile = (win0 + g0 * dt < st.immobile_from) & (g1 > g0)
        need = trip_kwh[:, k] / cap_kwh if k < k_max else np.zeros(n)
        carry_now = (k == 0) & st.carry & mobile & (soc < st.carry_target)
        home = (k == n_trips) & (p.home_kw > 0) & (soc < p.charge_threshold) & mobile & ~carry_now
        low = (soc < 0.22) | (soc - need < 0.12)
        fast = low & ~home & ~carry_now & mobile & (length_s >= 600) & (p.dc_max_kw > 0)
        work = (
            (k == 1)
            & commute_today
            & (p.home_kw == 0)
            & (soc < 0.7)
            & ~fast
            & mobile
            & (length_s >= 7200)
        )
        amb_g0 = amb[rows, np.minimum(g0, cells - 1)]
        dc_kw = np.minimum(p.dc_max_kw, station_kw[:, k]) * np.where(amb_g0 < 5.0, 0.6, 1.0)
        kw = np.select(
            [carry_now, home, fast, work],
            [
                st.carry_kw,
                np.minimum(p.home_kw, 11.0) * 0.92,
                dc_kw * 0.95,
                np.full(n, 11.0 * 0.92),
            ],
            0.0,
        )
        target = np.select(
            [carry_now, home, fast, work],
            [st.carry_target, p.charge_target, np.clip(need + 0.25, 0.8, 0.95), np.full(n, 0.9)],
            1.0,
        )
        charging = carry_now | home | fast | work
        scheduled = home & (offpeak >= 0)
        c0 = np.select(
            [carry_now, scheduled, fast],
            [
                g0,
                np.maximum(g0 + 1, np.ceil(offpeak).astype(np.int64)),
                g0 + int(np.ceil(300 / dt)),
            ],
            g0 + 1,
        )
        c0 = np.where(charging, np.minimum(c0, g1), g1)
        rate = kw / (cap_kwh * 3600.0)
        soc_c0 = soc - drain * (c0 - g0) * dt
        seconds = time_to_soc(soc_c0, target, rate)
        c1 = np.where(charging, np.minimum(c0 + np.ceil(seconds / dt).astype(np.int64), g1), g1)
        charging &= c1 > c0
        soc_c1 = np.where(charging, charge_soc(soc_c0, (c1 - c0) * dt, rate), soc_c0)
        for name, value in (
            ("c0", c0),
            ("c1", c1),
            ("soc0", soc),
            ("soc_c0", soc_c0),
            ("soc_c1", soc_c1),
            ("rate", rate),
            ("kw", kw),
        ):
            seg[name][:, k] = value
        seg_charging[:, k] = charging
        still = charging & (c1 >= cells) & (soc_c1 < target - 1e-3)
        carry |= still
        carry_kw = np.where(still, kw, carry_kw)
        carry_target = np.where(still, target, carry_target)
        soc = soc_c1 - drain * (g1 - c1) * dt
        if k < k_max:
            trip_soc0[:, k] = soc
            soc = np.where(sched.valid[:, k], np.maximum(soc - need, 0.01), soc)
    out.count("charging_sessions", float((seg_charging & (seg["c0"] > 0)).sum()))

    # -- per-cell state from the segments ---------------------------------------------------
    k_cell = (sched.end[:, :, None] <= col[None, None, :]).sum(axis=1)  # gap (or trip) index

    def at_gap(a: F64) -> F64:
        return f64(np.take_along_axis(a, k_cell, axis=1))

    c0_g, c1_g = at_gap(seg["c0"]), at_gap(seg["c1"])
    gs_g = at_gap(gs.astype(np.float64))
    before = col < c0_g
    during = (col >= c0_g) & (col < c1_g) & at_gap(seg_charging.astype(np.float64)).astype(bool)
    drain_g = drain[:, None] * dt
    soc_grid = np.where(
        before,
        at_gap(seg["soc0"]) - drain_g * (col - gs_g),
        np.where(
            during,
            charge_soc(at_gap(seg["soc_c0"]), (col - c0_g) * dt, at_gap(seg["rate"])),
            at_gap(seg["soc_c1"]) - drain_g * (col - c1_g),
        ),
    )
    charging_grid = during & ~driving
    e_before = _group_exclusive_cumsum(e_cell, dc.first)
    km_before = _group_exclusive_cumsum(dc.distance_m, dc.first) / 1e3
    soc_grid.ravel()[flat] = trip_soc0[fv, dc.trip] - e_before / (cap_kwh[fv] * 3.6e6)
    soc_grid = np.clip(soc_grid, 0.0, 1.0)
    charge_kw = np.where(charging_grid, at_gap(seg["kw"]) * charge_power_fraction(soc_grid), 0.0)
    awake = driving | charging_grid

    p_batt = np.where(charging_grid, charge_kw * 1000.0, -IDLE_W)
    p_batt.ravel()[flat] = -(dc.p_elec_inst + hvac_w.ravel()[flat] + AUX_W)
    load_kw = np.zeros((n, cells))
    load_kw.ravel()[flat] = dc.load_w / 1000.0
    v2 = np.zeros((n, cells))
    v2.ravel()[flat] = dc.v2_mean
    batt_kw = np.where(charging_grid, charge_kw, 0.0)
    batt_kw.ravel()[flat] = e_cell / dt / 1000.0

    # -- odometer and position -----------------------------------------------------------------
    odo_gap = np.concatenate(
        [st.odo_km[:, None], st.odo_km[:, None] + np.cumsum(trip_km, axis=1)], axis=1
    )
    odo = at_gap(odo_gap)
    odo.ravel()[flat] = odo_gap[fv, dc.trip] + km_before
    px, py = st.x.copy(), st.y.copy()
    pos_x, pos_y = np.zeros((n, k_max + 1)), np.zeros((n, k_max + 1))
    pos_x[:, 0], pos_y[:, 0] = px, py
    ox, oy, vx, vy = (np.zeros((n, k_max)) for _ in range(4))
    for k in range(k_max):
        last = k == n_trips - 1
        home_bound = (cand.purpose[:, k] == TO_HOME) | last
        work_bound = (cand.purpose[:, k] == TO_WORK) & ~last
        angle = rng.uniform(0.0, 2 * np.pi, n)
        reach = trip_km[:, k] / rng.uniform(1.3, 2.2, n)
        rx, ry = px + reach * np.cos(angle), py + reach * np.sin(angle)
        outside = np.hypot(rx, ry) > p.radius_km * 1.2  # turn back towards the centre
        rx = np.where(outside, px - reach * np.cos(angle), rx)
        ry = np.where(outside, py - reach * np.sin(angle), ry)
        tx = np.select([home_bound, work_bound], [p.home_x, p.work_x], rx)
        ty = np.select([home_bound, work_bound], [p.home_y, p.work_y], ry)
        dx, dy = tx - px, ty - py
        dist = np.hypot(dx, dy)
        limit = trip_km[:, k] / 1.25  # roads are never straight
        scale = np.where(dist > limit, limit / np.maximum(dist, 1e-9), 1.0)
        ox[:, k], oy[:, k], vx[:, k], vy[:, k] = px, py, dx * scale, dy * scale
        px = np.where(sched.valid[:, k], px + dx * scale, px)
        py = np.where(sched.valid[:, k], py + dy * scale, py)
        pos_x[:, k + 1], pos_y[:, k + 1] = px, py
    x, y = at_gap(pos_x), at_gap(pos_y)
    frac = km_before / np.maximum(trip_km[fv, dc.trip], 1e-9)
    tv_x, tv_y = vx[fv, dc.trip], vy[fv, dc.trip]
    span = np.maximum(np.hypot(tv_x, tv_y), 1e-9)
    wobble = (
        0.15 * trip_km[fv, dc.trip] * np.sin(np.pi * frac) * np.where(dc.trip % 2 == 0, 1.0, -1.0)
    )
    x.ravel()[flat] = ox[fv, dc.trip] + tv_x * frac - tv_y / span * wobble * (span > 1e-6)
    y.ravel()[flat] = oy[fv, dc.trip] + tv_y * frac + tv_x / span * wobble * (span > 1e-6)
    lat = p.lat0[:, None] + y / 111.32
    lon = p.lon0[:, None] + x / (111.32 * np.cos(np.radians(p.lat0))[:, None])

    # -- temperatures ------------------------------------------------------------------------
    eff = p.cool_eff[:, None] * (1.0 - 0.85 * s_cool)
    loss_kw = np.where(driving, 0.07 * load_kw + 0.35, 0.0) + np.where(
        charging_grid, 0.01 * charge_kw, 0.0
    )
    awake_heat = np.where(awake, 6.0, 0.0)
    coolant_eq = amb + awake_heat + 9.0 * loss_kw / eff
    coolant_ref_eq = amb + awake_heat + 9.0 * loss_kw / p.cool_eff[:, None]
    tau_coolant = np.where(awake, 500.0, 2400.0)
    t_coolant = np.minimum(ema(coolant_eq, tau_coolant, st.t_coolant, dt), 118.0)
    t_coolant_ref = ema(coolant_ref_eq, tau_coolant, st.t_coolant_ref, dt)
    motor_eq = coolant_eq + 20.0 * np.where(driving, loss_kw, 0.0) / eff
    t_motor = np.minimum(ema(motor_eq, np.where(driving, 350.0, 2400.0), st.t_motor, dt), 165.0)
    batt_eq = amb + 14.0 * (batt_kw / 100.0) ** 2 + np.where(awake, 1.5, 0.0)
    low_lim = np.where(awake & (charge_kw > 40.0), 15.0, np.where(driving, 5.0, -np.inf))
    high_lim = np.where(awake, 32.0 + 20.0 * s_cool, np.inf)  # chiller shares the coolant loop
    batt_eq = np.clip(batt_eq, low_lim, high_lim)
    t_batt = ema(batt_eq, np.where(awake, 2400.0, 7200.0), st.t_batt, dt)
    sun = daylight(f64(col * (dt / 3600.0)))[None, :]  # the grid starts at local midnight
    cabin_eq = np.where(driving, 21.0, amb + np.where(charging_grid, 2.0, 7.0 * sun))
    t_cabin = ema(cabin_eq, np.where(driving, 240.0, 2400.0), st.t_cabin, dt)
    tyre_eq = amb + np.where(driving, 4.0 + 22.0 * v2 / 900.0, 0.0)
    t_tyre = ema(tyre_eq, np.where(driving, 600.0, 1800.0), st.t_tyre, dt)

    # -- wear state over the day ------------------------------------------------------------
    awake_at = np.where(awake, t, -np.inf)
    last_awake = np.maximum(np.maximum.accumulate(awake_at, axis=1), st.last_awake_s[:, None])
    wear_inc = np.zeros((n, 4, cells))
    for j in range(4):
        wear_inc[:, j].ravel()[flat] = dc.brake_j * PAD_SHARE[j] / PAD_J_PER_PERCENT
    _brake_fault(plan, st, win0, win_end, wear_inc, dc.brake_j, dc.distance_m, fv, dc.column, t)
    pads = st.pad[:, :, None] + np.cumsum(wear_inc, axis=2) - wear_inc

    # -- motion at the sample instant ------------------------------------------------------------
    speed = np.zeros((n, cells))
    speed.ravel()[flat] = np.round(dc.v_inst * 3.6, 1)
    accel = np.zeros((n, cells))
    accel.ravel()[flat] = np.where(dc.v_inst > 0.0, dc.a_inst, 0.0)
    motor_kw = np.zeros((n, cells))
    motor_kw.ravel()[flat] = dc.p_mech_inst / 1000.0
    pedal = np.zeros((n, cells))
    pedal.ravel()[flat] = np.where(
        dc.p_mech_inst > 0, np.clip(115.0 * dc.p_mech_inst / p.p_max_w[fv] + 4.0, 0.0, 100.0), 0.0
    )
    brake_pedal = np.zeros((n, cells))
    brake_pedal.ravel()[flat] = np.where(
        dc.a_inst < -0.4,
        np.clip(12.0 - 100.0 * dc.a_inst / 7.0, 0.0, 100.0),
        np.where(dc.v_inst < 0.1, 20.0, 0.0),  # holding the car at a stop
    )
    steer = np.zeros((n, cells))
    turning = rng.random(flat.size) < np.where(dc.v_inst < 8.0, 0.25, 0.0)
    steer.ravel()[flat] = np.where(
        turning,
        rng.normal(0.0, 180.0, flat.size),
        rng.normal(0.0, 1.0, flat.size) * (4.0 + 60.0 / (dc.v_inst + 1.0)),
    )

    # -- what is reported: from here on only the emitted cells are computed ------------------
    heartbeat = (col[None, :] % ctx.hb_cells) == p.heartbeat_phase[:, None]
    in_run = (t >= ctx.run_start) & (t < ctx.run_end)
    emit = in_run & (awake | heartbeat)
    ev, _ = np.nonzero(emit)  # vehicle of each emitted sample
    m = ev.size
    te = t[emit]
    amb_e, awake_e, charging_e = amb[emit], awake[emit], charging_grid[emit]

    def fault(component: int) -> F64:
        return wear.severity(te, plan.onset_s[ev, component], plan.fail_s[ev, component])

    def noisy(a: F64, sd: float) -> F64:
        return f64(a + rng.normal(0.0, sd, m))

    s_lv_e, s_cell_e, s_tyre_e = fault(wear.LV), fault(wear.CELL), fault(wear.TYRE)

    # 12 V battery: the DC-DC converter charges it while awake; asleep it rests and drains.
    asleep_days = (te - last_awake[emit]) / DAY_S
    rest = (
        p.lv_rest_v[ev]
        - 0.006 * np.clip(15.0 - amb_e, 0.0, 40.0)  # cold lowers the open-circuit voltage
        - p.lv_drain_v_day[ev] * np.minimum(asleep_days, 7.0)
        - s_lv_e * (wear.LV_SAG_V + 0.3 * np.minimum(asleep_days, 2.0))  # weak cell self-discharges
    )
    surface = 0.35 * np.exp(-asleep_days * 24.0)  # surface charge fades after the car sleeps
    lv_v = np.where(awake_e, 13.95 - 0.3 * s_lv_e, rest + surface)
    lv_i = np.where(
        awake_e, 3.0 + 6.0 * s_lv_e + hvac_w[emit] / 1000.0, np.where(heartbeat[emit], -0.35, -0.04)
    )

    # Tyres: gas law against the 20 °C fill, natural seepage, and the leaking one.
    tyre_factor = (t_tyre[emit] + KELVIN) / (20.0 + KELVIN)
    seep = p.tyre_leak_kpa_day[ev] * (te - ctx.run_start) / DAY_S
    leak = s_tyre_e * plan.magnitude[ev, wear.TYRE]
    tyres = [
        (p.tyre_set_kpa[ev, j] - seep - leak * (plan.part[ev, wear.TYRE] == j) + ATMOSPHERE_KPA)
        * tyre_factor
        - ATMOSPHERE_KPA
        for j in range(4)
    ]

    # Traction battery electrics and the BMS view of it.
    soc_e = soc_grid[emit]
    volt, amp, power = pack_electrics(soc_e, p_batt[emit], p.n_series[ev], p.r_pack[ev])
    mean_cell = volt / p.n_series[ev]
    low_soc = np.clip((0.2 - soc_e) / 0.2, 0.0, 1.0)
    base = 0.6 * p.cell_spread_v[ev]
    cell_max = mean_cell + base + 1e-5 * np.abs(amp)
    cell_min = (
        mean_cell
        - base
        - 1.5e-5 * np.abs(amp)
        - 0.008 * low_soc
        - s_cell_e * (0.13 + 2.5e-4 * np.abs(amp))  # the weak cell group sags under load
    )
    soh_e = p.soh0[ev] - s_cell_e * plan.magnitude[ev, wear.CELL]
    displayed = np.clip((soc_e * 100.0 - 4.0) / 0.92 - 4.0 * s_cell_e, 0.0, 100.0)
    winter = 1.0 + 0.012 * np.clip(15.0 - amb_e, 0.0, 40.0)
    range_m = displayed / 100.0 * cap_kwh[ev] * 0.92 / (p.rated_kwh_km[ev] * winter) * 1000.0
    lat = p.lat0[ev] + y[emit] / 111.32
    lon = p.lon0[ev] + x[emit] / (111.32 * np.cos(np.radians(p.lat0[ev])))
    speed_e = speed[emit]
    motor_emitted = noisy(t_motor[emit], 0.3)

    out.vehicle.append(index[ev])
    out.ts.append(te.astype(np.int64))
    columns: dict[str, F64] = {
        "Vehicle.Speed": speed_e,
        "Vehicle.IsMoving": (speed_e > 0.0).astype(np.float64),
        "Vehicle.TraveledDistance": odo[emit],
        "Vehicle.Acceleration.Longitudinal": accel[emit],
        "Vehicle.CurrentLocation.Latitude": noisy(lat, 3e-5),
        "Vehicle.CurrentLocation.Longitude": noisy(lon, 4e-5),
        "Vehicle.Exterior.AirTemperature": noisy(amb_e, 0.2),
        "Vehicle.Cabin.HVAC.AmbientAirTemperature": noisy(t_cabin[emit], 0.2),
        "Vehicle.Cabin.HVAC.IsAirConditioningActive": (
            driving[emit] & ((amb_e > 20.0) | (t_cabin[emit] > 24.0))
        ).astype(np.float64),
        "Vehicle.Chassis.Accelerator.PedalPosition": pedal[emit],
        "Vehicle.Chassis.Brake.PedalPosition": brake_pedal[emit],
        "Vehicle.Chassis.SteeringWheel.Angle": np.clip(steer[emit], -540.0, 540.0),
        "Vehicle.Powertrain.Range": range_m,
        f"{_EM}.Speed": motor_rpm(speed_e),
        f"{_EM}.Power": motor_kw[emit],
        f"{_EM}.Temperature": motor_emitted,
        f"{_EM}.CoolantTemperature": noisy(t_coolant[emit], 0.3),
        f"{_TB}.StateOfCharge.Current": soc_e * 100.0,
        f"{_TB}.StateOfCharge.Displayed": displayed,
        f"{_TB}.StateOfHealth": soh_e,
        f"{_TB}.CurrentVoltage": volt,
        f"{_TB}.CurrentCurrent": amp,
        f"{_TB}.CurrentPower": power,
        f"{_TB}.Temperature.Average": noisy(t_batt[emit], 0.2),
        f"{_TB}.CellVoltage.Min": noisy(cell_min, 0.001),
        f"{_TB}.CellVoltage.Max": noisy(cell_max, 0.001),
        f"{_TB}.Charging.IsCharging": charging_e.astype(np.float64),
        "Vehicle.LowVoltageBattery.CurrentVoltage": noisy(lv_v, 0.015),
        "Vehicle.LowVoltageBattery.CurrentCurrent": noisy(lv_i, 0.05),
    }
    for j in range(4):
        columns[TYRES[j]] = noisy(tyres[j], 0.8)
        columns[PADS[j]] = pads[:, j][emit]
    for name, values in columns.items():
        out.add(name, values)
    out.add("awake", awake_e.astype(np.float64), aux=True)
    out.add("driving", driving[emit].astype(np.float64), aux=True)
    out.add("coolant_expected", t_coolant_ref[emit], aux=True)
    out.add("placard_kpa", p.placard_kpa[ev], aux=True)
    out.count("trips", float(sched.valid.sum()))
    out.count("distance_km", float(trip_km.sum()))
    out.count("energy_kwh", float(trip_kwh.sum()))

    # -- data-driven failures: the car goes to the workshop the next day ----------------------
    part = plan.part[:, wear.BRAKE]
    worn = (np.round(pads[rows, part]) >= wear.PAD_LIMIT) & emit & plan.has(wear.BRAKE)[:, None]
    st.brake_fail_s = _first_failure(worn, t, st.brake_fail_s)
    hot = np.zeros((n, cells), dtype=bool)
    hot[emit] = np.round(motor_emitted) >= wear.MOTOR_DERATE_C
    hot &= driving & (t >= plan.onset_s[:, wear.COOLANT][:, None])
    st.coolant_fail_s = _first_failure(hot, t, st.coolant_fail_s)
    failed = np.isfinite(st.brake_fail_s) | np.isfinite(st.coolant_fail_s)
    st.immobile_from = np.where(failed, np.minimum(st.immobile_from, win_end), st.immobile_from)

    # -- carry over ------------------------------------------------------------------------------
    st.soc = np.clip(soc, 0.0, 1.0)
    st.carry, st.carry_kw, st.carry_target = carry, carry_kw, carry_target
    st.x, st.y = px, py
    st.odo_km = odo_gap[:, -1]
    st.t_motor, st.t_coolant, st.t_coolant_ref = (
        t_motor[:, -1],
        t_coolant[:, -1],
        t_coolant_ref[:, -1],
    )
    st.t_batt, st.t_cabin, st.t_tyre = t_batt[:, -1], t_cabin[:, -1], t_tyre[:, -1]
    st.pad = st.pad + wear_inc.sum(axis=2)
    st.last_awake_s = last_awake[:, -1]


def _first_failure(condition: Bool, t: F64, known: F64) -> F64:
    """Time of the first sample meeting ``condition``, unless a failure is already known."""
    first = np.where(condition, t, np.inf).min(axis=1)
    return f64(np.where(np.isfinite(known), known, first))


def _brake_fault(
    plan: wear.FaultPlan,
    st: _State,
    win0: F64,
    win_end: F64,
    wear_inc: F64,
    brake_j: F64,
    distance_m: F64,
    fv: I64,
    column: I64,
    t: F64,
) -> None:
    """Extra wear of the pad behind a sticking caliper, paced to reach the limit on plan.

    The day's extra wear is spread over its driving after onset in proportion to braking
    and distance, so the pad wears only while the car moves.
    """
    onset = plan.onset_s[:, wear.BRAKE]
    fail = plan.fail_s[:, wear.BRAKE]
    part = plan.part[:, wear.BRAKE]
    active = np.isfinite(onset) & (onset < win_end) & ~np.isfinite(st.brake_fail_s)
    if not active.any():
        return
    rows = np.arange(onset.size)
    start_wear = st.pad[rows, part]
    st.pad_at_onset = np.where(active & np.isnan(st.pad_at_onset), start_wear, st.pad_at_onset)
    span = np.where(active, fail - np.where(active, onset, 0.0), 1.0)
    progress = np.where(active, np.clip((win_end - onset) / np.maximum(span, 1.0), 0.0, 1.0), 0.0)
    target = st.pad_at_onset + (wear.PAD_LIMIT + 1.5 - st.pad_at_onset) * progress
    healthy = wear_inc[rows, part].sum(axis=1)
    need = np.where(active, np.maximum(target - start_wear - healthy, 0.0), 0.0)
    cell_t = t[fv, column]
    weight = (brake_j + 40.0 * distance_m) * (cell_t >= onset[fv]) * active[fv]
    total = np.bincount(fv, weights=weight, minlength=onset.size)
    share = weight / np.maximum(total[fv], 1e-9)
    np.add.at(wear_inc, (fv, part[fv], column), need[fv] * share)


def _assemble(
    ctx: _Ctx,
    vehicles: list[Vehicle],
    plan: wear.FaultPlan,
    out: _Out,
    brake_fail: F64,
    coolant_fail: F64,
    lv_attempt: F64,
) -> FleetSimulation:
    vehicle = np.concatenate(out.vehicle)
    ts = np.concatenate(out.ts)
    order = np.lexsort((ts, vehicle))
    vehicle, ts = vehicle[order], ts[order]
    catalog = default_catalog()
    columns: dict[str, F64] = {}
    for path in catalog:  # catalog order; round to what a vehicle reports, clamp to the spec
        spec = catalog[path]
        values = np.concatenate(out.cols[path])[order]
        decimals = 0 if spec.datatype.is_integer else _DECIMALS.get(path, 3)
        values = np.round(values, decimals)
        low = spec.min if spec.min is not None else -np.inf
        high = spec.max if spec.max is not None else np.inf
        columns[path] = f64(np.clip(values, low, high))
    aux = {name: np.concatenate(parts)[order] for name, parts in out.aux.items()}
    vins = [v.vin for v in vehicles]
    conditions = wear.dtc_conditions(columns, aux)
    background = wear.background_events(
        np.random.default_rng([ctx.scenario.seed, 4]),
        vehicle,
        aux["awake"] == 1.0,
        float(ctx.scenario.days),
        len(vehicles),
    )
    dtcs = wear.detect_dtcs(vehicle, ts, conditions, vins, background)
    actual = plan.fail_s.copy()
    actual[:, wear.BRAKE] = brake_fail
    actual[:, wear.COOLANT] = coolant_fail
    # No-start at the first attempt to drive off; without one in the run, when the voltage gave out.
    tried = lv_attempt < ctx.run_end
    actual[:, wear.LV] = np.where(tried, lv_attempt, actual[:, wear.LV])
    failures = wear.failures_table(plan, vins, actual, ctx.run_end)
    return FleetSimulation(
        scenario=ctx.scenario,
        vehicles=vehicles,
        dtcs=dtcs,
        failures=failures,
        sample_vehicle=vehicle.astype(np.int64),
        sample_ts_s=ts,
        columns=columns,
        stats=out.stats,
    )
