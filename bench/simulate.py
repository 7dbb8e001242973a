"""Benchmark: signal values the fleet simulator generates per second.

Measures ``simulate_fleet`` at two fleet sizes, with and without building the long SIGNALS
table, against a baseline measured in the same run: the same drive, battery, thermal and
wear model stepped in plain Python one sample (and, while driving, one second) at a time,
emitting SIGNALS rows, on a small slice of the demo fleet; its rate per value is
extrapolated to each fleet size.

Run: ``.venv/bin/python bench/simulate.py`` (about half a minute).
"""

from __future__ import annotations

import dataclasses
import math
import random
import time

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from fleetops.core.schema import SIGNALS
from fleetops.core.vss import default_catalog
from fleetops.sim import Scenario, load_scenario, simulate_fleet
from fleetops.sim.drive import (
    GEAR_EFFICIENCY,
    MOTOR_EFFICIENCY,
    REGEN_EFFICIENCY,
    Legs,
    Schedule,
    candidate_trips,
    make_legs,
    schedule_trips,
)
from fleetops.sim.vehicles import VehicleParams, build_fleet

DAY_S = 86_400
PATHS = list(default_catalog())


def _knots(legs: Legs, trip: int) -> list[tuple[float, float]]:
    """(time, speed) knots of one trip, laid out as the vectorised model does."""
    knots: list[tuple[float, float]] = []
    for j in np.flatnonzero(legs.trip == trip).tolist():
        t0 = float(legs.start[j])
        t1 = t0 + float(legs.t_accel[j])
        t2 = t1 + float(legs.t_cruise[j])
        t3 = t2 + float(legs.t_brake[j])
        v, v_end = float(legs.v[j]), float(legs.v_end[j])
        knots += [(t0, float(legs.v_prev[j])), (t1, v), (t2, v), (t3, v_end)]
        knots.append((t3 + float(legs.t_stop[j]), v_end))
    return knots


def _speed(knots: list[tuple[float, float]], t: float, hint: int) -> tuple[float, int]:
    while hint + 1 < len(knots) and knots[hint + 1][0] <= t:
        hint += 1
    if hint + 1 >= len(knots):
        return 0.0, hint
    (ta, va), (tb, vb) = knots[hint], knots[hint + 1]
    return (va if tb <= ta else va + (vb - va) * (t - ta) / (tb - ta)), hint


def _ema(y: float, target: float, dt: float, tau: float) -> float:
    return y + (1.0 - math.exp(-dt / tau)) * (target - y)


def naive_vehicle_day(
    p: VehicleParams,
    i: int,
    vin: str,
    legs: Legs,
    sched: Schedule,
    t0: int,
    dt: int,
    hb: int,
    rows: list[tuple[str, int, str, float]],
) -> None:
    """One vehicle-day stepped sample by sample, appending SIGNALS rows."""
    cells = DAY_S // dt
    cap = float(p.cap_kwh[i]) * float(p.soh0[i]) / 100.0
    soc, odo = float(p.soc0[i]), float(p.odo0_km[i])
    x, y = float(p.home_x[i]), float(p.home_y[i])
    t_motor = t_cool = t_batt = t_cabin = t_tyre = 5.0
    pads = [float(w) for w in p.pad0[i]]
    mass, cda, crr = float(p.mass_kg[i]), float(p.cda[i]), float(p.crr[i])
    starts, lengths = sched.start[i].tolist(), sched.cells[i].tolist()
    last_end = max((s + n for s, n in zip(starts, lengths, strict=True) if n), default=0)
    charging, last_awake = False, float(t0)
    noise = random.Random(i)
    onsets = [math.inf] * 5  # the slice is healthy, but the model still evaluates each fault
    dtc_state = [False] * 13
    for c in range(cells):
        ts = t0 + c * dt
        hour = (c * dt / 3600.0) % 24.0
        amb = (
            float(p.climate_mean[i])
            - float(p.climate_seasonal[i])
            + float(p.climate_diurnal[i]) * math.cos(2 * math.pi * (hour - 15.0) / 24.0)
        )
        trip = next((k for k, s in enumerate(starts) if s <= c < s + lengths[k]), -1)
        load = speed = accel = p_mech = 0.0
        if trip >= 0:
            knots = _knots(legs, i * len(starts) + trip)
            hint, energy, dist = 0, 0.0, 0.0
            for s in range(dt):  # one second at a time
                t = (c - starts[trip]) * dt + s
                v, hint = _speed(knots, t, hint)
                a = _speed(knots, t + 1, hint)[0] - v
                p_wheel = (mass * a + mass * 9.81 * crr + 0.6 * cda * v * v) * v
                trac = min(max(p_wheel, 0.0) / GEAR_EFFICIENCY, float(p.p_max_w[i]))
                regen = max(min(p_wheel, 0.0), -float(p.regen_max_w[i])) if v > 1.5 else 0.0
                friction = regen - min(p_wheel, 0.0)
                for j, share in enumerate((0.35, 0.35, 0.15, 0.15)):
                    pads[j] += friction * share / 2.5e7
                energy += (
                    trac / MOTOR_EFFICIENCY * float(p.cons_factor[i]) + regen * REGEN_EFFICIENCY
                )
                dist += v
                load += abs(trac + regen) / dt
                if s == 0:
                    speed, accel, p_mech = round(v * 3.6, 1), a, trac + regen
            heat = min(120.0 * max(19.0 - amb, 0.0), 4500.0)
            soc -= (energy + (heat + 300.0) * dt) / (cap * 3.6e6)
            odo += dist / 1000.0
            x += dist / 1000.0 * 0.5
            last_awake = ts
        elif c > last_end and soc < float(p.charge_threshold[i]):
            charging = True
        if charging:
            soc += 7.4 * min(1.0, (1.0 - soc) / 0.2) * dt / (cap * 3600.0)
            charging = soc < float(p.charge_target[i])
            last_awake = ts
        awake = trip >= 0 or charging
        loss = 0.07 * load / 1000.0 + 0.35 if trip >= 0 else 0.0
        t_cool = _ema(
            t_cool, amb + (6.0 if awake else 0.0) + 9.0 * loss, dt, 500.0 if awake else 2400.0
        )
        t_motor = _ema(t_motor, t_cool + 20.0 * loss, dt, 350.0 if trip >= 0 else 2400.0)
        t_batt = _ema(t_batt, amb + (1.5 if awake else 0.0), dt, 2400.0 if awake else 7200.0)
        t_cabin = _ema(t_cabin, 21.0 if trip >= 0 else amb, dt, 240.0 if trip >= 0 else 2400.0)
        t_tyre = _ema(
            t_tyre, amb + (4.0 + 22.0 * (speed / 3.6) ** 2 / 900.0 if trip >= 0 else 0.0), dt, 600.0
        )
        if not (awake or c % hb == 0):
            continue
        s_ = min(max(soc, 0.0), 1.0)
        n_s, r = float(p.n_series[i]), float(p.r_pack[i])
        v_oc = n_s * (3.2 + s_ * (1.3 + s_ * (-0.95 + 0.6 * s_)))
        power = 7400.0 * min(1.0, (1.0 - s_) / 0.2) if charging else -(p_mech + 300.0)
        current = (math.sqrt(max(v_oc * v_oc + 4 * r * power, 0.0)) - v_oc) / (2 * r)
        volt = v_oc + current * r
        cell, spread = volt / n_s, float(p.cell_spread_v[i]) * 0.6 + 1e-5 * abs(current)
        asleep_days = (ts - last_awake) / DAY_S
        lv = (
            13.95
            if awake
            else float(p.lv_rest_v[i])
            - 0.006 * max(15.0 - amb, 0.0)
            - float(p.lv_drain_v_day[i]) * min(asleep_days, 7.0)
            + 0.35 * math.exp(-asleep_days * 24.0)
        )
        severity = [0.0 if ts < on else min((ts - on) / 86_400.0, 1.0) ** 1.5 for on in onsets]
        lv -= 1.7 * severity[0]
        t_motor, t_cool, t_batt, t_cabin, amb = (
            t_motor + noise.gauss(0.0, 0.3),
            t_cool + noise.gauss(0.0, 0.3),
            t_batt + noise.gauss(0.0, 0.2),
            t_cabin + noise.gauss(0.0, 0.2),
            amb + noise.gauss(0.0, 0.2),
        )
        factor = (t_tyre + 273.15) / 293.15
        tyres = [(float(w) + 101.325) * factor - 101.325 for w in p.tyre_set_kpa[i]]
        displayed = min(max((s_ * 100.0 - 4.0) / 0.92, 0.0), 100.0)
        values = [
            speed,
            float(speed > 0),
            round(odo, 3),
            round(accel, 2),
            float(p.lat0[i]) + y / 111.32,
            float(p.lon0[i]) + x / (111.32 * math.cos(math.radians(float(p.lat0[i])))),
            round(amb, 1),
            round(t_cabin, 1),
            0.0,
            min(max(115.0 * p_mech / float(p.p_max_w[i]) + 4.0, 0.0), 100.0) if p_mech > 0 else 0.0,
            0.0,
            0.0,
            *(round(w) for w in tyres),
            *(round(w) for w in pads),
            round(displayed / 100.0 * cap * 0.92 / float(p.rated_kwh_km[i]) * 1000.0),
            round(speed / 3.6 / (2 * math.pi * 0.34) * 60.0 * 9.0),
            round(p_mech / 1000.0),
            round(t_motor),
            round(t_cool),
            round(s_ * 100.0, 2),
            round(displayed, 1),
            float(p.soh0[i]),
            round(volt, 1),
            round(current, 1),
            round(volt * current),
            round(t_batt, 1),
            round(cell - spread, 3),
            round(cell + spread, 3),
            float(charging),
            round(lv, 2),
            4.0 if awake else -0.04,
        ]
        rows.extend(
            (vin, ts * 1_000_000, path, float(v)) for path, v in zip(PATHS, values, strict=True)
        )
        checks = [
            lv < 11.8 and not awake,
            2 * spread > 0.08,
            cell - spread < 3.0,
            2 * spread > 0.16,
            t_batt > 50.0,
            *(w < 0.75 * float(p.placard_kpa[i]) for w in tyres),
            max(pads) >= 80.0,
            max(pads) >= 90.0,
            t_motor >= 150.0,
            t_cool > 60.0,
        ]
        for j, hit in enumerate(checks):  # rising edges raise a DTC
            dtc_state[j] = hit


def baseline(scenario: Scenario, vehicles: int) -> tuple[int, float, float]:
    """Values, loop seconds and loop + table seconds of the naive model over vehicle-days."""
    fleet, params = build_fleet(scenario, np.random.default_rng([scenario.seed, 0]))
    p = params.take(np.arange(vehicles))
    rng = np.random.default_rng(1)
    cand = candidate_trips(rng, p, np.zeros(vehicles, dtype=bool), p.commuter.copy())
    legs, durations = make_legs(rng, cand, p)
    dt = scenario.sample_interval_s
    sched = schedule_trips(cand, durations, dt, DAY_S // dt)
    t0 = int(scenario.start.timestamp())
    rows: list[tuple[str, int, str, float]] = []
    began = time.perf_counter()
    for i in range(vehicles):
        naive_vehicle_day(
            p, i, fleet[i].vin, legs, sched, t0, dt, scenario.heartbeat_interval_s // dt, rows
        )
    looped = time.perf_counter() - began
    columns = list(zip(*rows, strict=True))
    pa.table(
        {
            "vin": pa.array(columns[0], pa.string()),
            "ts": pa.array(columns[1], pa.int64()).cast(SIGNALS.field("ts").type),
            "signal": pa.array(columns[2], pa.string()),
            "value": pa.array(columns[3], pa.float64()),
        },
        schema=SIGNALS,
    )
    return len(rows), looped, time.perf_counter() - began


def measure(scenario: Scenario) -> tuple[int, float, float]:
    """Values, seconds to simulate, and seconds including the SIGNALS table."""
    began = time.perf_counter()
    sim = simulate_fleet(scenario)
    simulated = time.perf_counter() - began
    rows = sim.signals.num_rows
    return rows, simulated, time.perf_counter() - began


def main() -> None:
    demo = load_scenario("demo")
    big = dataclasses.replace(demo, fleet=dataclasses.replace(demo.fleet, vehicles=400))
    simulate_fleet(dataclasses.replace(demo, days=1))  # warm imports and caches
    base_values, base_loop, base_total = baseline(demo, vehicles=8)
    loop_rate, table_rate = base_values / base_loop, base_values / base_total
    table = Table(title="fleetops.sim: signal values generated per second (same machine, same run)")
    for column in (
        "run",
        "vehicles × days",
        "values",
        "simulate s",
        "+ SIGNALS table s",
        "values/s",
        "values/s incl. table",
        "vs baseline",
    ):
        table.add_column(column, justify="left" if column == "run" else "right")
    table.add_row(
        "baseline: per-sample Python loop",
        "8 × 1",
        f"{base_values:,}",
        f"{base_loop:.2f}",
        f"{base_total:.2f}",
        f"{loop_rate:,.0f}",
        f"{table_rate:,.0f}",
        "1×",
    )
    for label, scenario in (("simulate_fleet, demo", demo), ("simulate_fleet, 4× demo", big)):
        values, simulated, total = measure(scenario)
        table.add_row(
            label,
            f"{scenario.fleet.vehicles} × {scenario.days}",
            f"{values:,}",
            f"{simulated:.2f}",
            f"{total:.2f}",
            f"{values / simulated:,.0f}",
            f"{values / total:,.0f}",
            f"{values / simulated / loop_rate:,.0f}× / "
            f"{values / total / table_rate:,.0f}× incl. table",
        )
        table.add_row(
            "  baseline, extrapolated",
            "",
            f"{values:,}",
            f"{values / loop_rate:,.0f}",
            f"{values / table_rate:,.0f}",
            f"{loop_rate:,.0f}",
            f"{table_rate:,.0f}",
            "",
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
