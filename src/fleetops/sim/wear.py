"""Faults, their ground truth, and the diagnostic trouble codes their precursors raise.

Each faulty component has an onset (wear starts to show) and a failure; in between a
*severity* ramps from 0 to 1 and shifts the signals it touches. DTCs are raised by rules on
the emitted signals, as an ECU would, so they appear only where the data shows a problem
(and, for healthy cars near a threshold, sometimes without one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from fleetops.core.errors import ConfigError
from fleetops.core.schema import DTCS, FAILURES
from fleetops.sim.physics import F64, I64, Bool, f64
from fleetops.sim.scenario import COMPONENTS, Scenario

LV, CELL, BRAKE, TYRE, COOLANT = (
    COMPONENTS.index(c)
    for c in ("lv_battery", "cell_imbalance", "brake_pads", "tyre_leak", "coolant_pump")
)
FAILURE_MODES = {
    "lv_battery": "no_start",
    "cell_imbalance": "capacity_derate",
    "brake_pads": "pad_worn_to_limit",
    "tyre_leak": "flat_tyre",
    "coolant_pump": "overheat_derate",
}
_DURATION_DAYS = {  # onset to failure, drawn uniformly
    "lv_battery": (2.0, 4.5),
    "cell_imbalance": (2.5, 5.0),
    "brake_pads": (2.0, 4.0),
    "tyre_leak": (1.0, 3.0),
    "coolant_pump": (2.0, 4.0),
}
# The wear model, not the plan, decides when these fail: pads when worn to the limit while
# braking, a weak coolant pump when the motor first overheats while driving.
DATA_DRIVEN = (BRAKE, COOLANT)
MOTOR_DERATE_C = 150.0  # the inverter derates power from here: the coolant pump failure
PAD_WARNING = 80.0  # percent worn: the wear sensor's first stage
PAD_LIMIT = 90.0  # percent worn: replace now
TYRE_LOW_SHARE = 0.75  # TPMS warns below this share of the placard pressure
LV_SAG_V = 1.7  # resting-voltage loss of a failing 12 V battery at failure
TYRE_DROP_KPA = (125.0, 150.0)
SOH_DROP = (3.0, 6.0)  # extra capacity loss (percentage points) of an imbalanced pack
SEVERITY_SHAPE = 1.5  # wear accelerates towards failure
DAY_S = 86_400


@dataclass(slots=True)
class FaultPlan:
    """Per vehicle and component (``COMPONENTS`` order): when the fault starts and ends."""

    onset_s: F64  # (vehicles, components), seconds since the epoch; inf: healthy
    fail_s: F64  # planned failure (for brake pads the wear model decides the actual one)
    part: I64  # which tyre or brake pad (0 FL, 1 FR, 2 RL, 3 RR)
    magnitude: F64  # tyre pressure loss (kPa) or SoH loss (points) reached at failure

    def take(self, index: I64 | slice) -> FaultPlan:
        return FaultPlan(
            self.onset_s[index], self.fail_s[index], self.part[index], self.magnitude[index]
        )

    def has(self, component: int) -> Bool:
        return np.asarray(np.isfinite(self.onset_s[:, component]), dtype=np.bool_)


def plan_faults(scenario: Scenario, vins: list[str], rng: np.random.Generator) -> FaultPlan:
    """Pick the vehicles that develop each fault, and when."""
    n, c = len(vins), len(COMPONENTS)
    start = scenario.start.timestamp()
    days = float(scenario.days)
    onset = np.full((n, c), np.inf)
    fail = np.full((n, c), np.inf)
    index = {vin: i for i, vin in enumerate(vins)}
    order = rng.permutation(n)
    cursor = 0  # walk one permutation so that faults land on different vehicles while possible
    for f, fault in enumerate(scenario.faults):
        comp = COMPONENTS.index(fault.component)
        chosen: list[int] = []
        for vin in fault.vins:
            if vin not in index:
                raise ConfigError(
                    f"faults[{f}].vins: {vin} is not a vehicle of this fleet (VINs depend on "
                    f"fleet and seed; take them from a run of this scenario)"
                )
            chosen.append(index[vin])
        exact = fault.probability * n
        count = int(exact) + int(rng.random() < exact - int(exact))  # unbiased rounding
        tried = 0
        while count > 0 and tried < n:
            candidate = int(order[cursor % n])
            cursor += 1
            tried += 1
            if candidate not in chosen and not np.isfinite(onset[candidate, comp]):
                chosen.append(candidate)
                count -= 1
        lo, hi = _DURATION_DAYS[fault.component]
        for v in chosen:
            nominal = rng.uniform(lo, hi)
            # Leave data-driven failures time to happen while the car is driven.
            latest = (0.85 if comp in DATA_DRIVEN else 0.95) * days
            if fault.onset_day is None:
                length = min(nominal, 0.6 * days)
                day = rng.uniform(0.05 * days, max(latest - length, 0.05 * days))
            else:
                day = fault.onset_day
                length = min(nominal, max(latest - day, 0.25))  # may run past the end
            onset[v, comp] = round(start + day * DAY_S)
            fail[v, comp] = round(start + (day + length) * DAY_S)
    magnitude = np.zeros((n, c))
    magnitude[:, TYRE] = rng.uniform(*TYRE_DROP_KPA, n)
    magnitude[:, CELL] = rng.uniform(*SOH_DROP, n)
    part = rng.integers(0, 4, (n, c))
    part[:, BRAKE] = rng.integers(0, 2, n)  # a sticking caliper is usually at the front
    return FaultPlan(onset, fail, part, magnitude)


def severity(t: F64, onset: F64, fail: F64) -> F64:
    """0 before onset, rising to 1 at failure, then 1; 0 where there is no fault (onset inf).

    ``onset`` and ``fail`` broadcast against ``t``.
    """
    on = np.isfinite(onset)
    start = np.where(on, onset, 0.0)
    span = np.maximum(np.where(on, fail, 1.0) - start, 1.0)
    ramp = np.clip((t - start) / span, 0.0, 1.0)
    return f64(np.where(on, ramp**SEVERITY_SHAPE, 0.0))


@dataclass(frozen=True, slots=True)
class DtcRule:
    code: str  # SAE J2012: P powertrain, C chassis, B body, U network; 1xxx maker-specific
    ecu: str
    description: str


# Rules whose conditions are evaluated on the emitted samples (see ``dtc_conditions``).
DTC_RULES: dict[str, DtcRule] = {
    r.code: r
    for r in (
        DtcRule("P0562", "BCM", "System Voltage Low"),
        DtcRule("P0A7F", "BMS", "Hybrid/EV Battery Pack Deterioration"),
        DtcRule("P0AFA", "BMS", "Hybrid/EV Battery System Voltage Low"),
        DtcRule("P0A80", "BMS", "Replace Hybrid/EV Battery Pack"),
        DtcRule("P0A7E", "BMS", "Hybrid/EV Battery Pack Over Temperature"),
        DtcRule("C0750", "ESC", "Tire Pressure Low - Left Front"),
        DtcRule("C0755", "ESC", "Tire Pressure Low - Right Front"),
        DtcRule("C0760", "ESC", "Tire Pressure Low - Left Rear"),
        DtcRule("C0765", "ESC", "Tire Pressure Low - Right Rear"),
        DtcRule("C1B10", "ESC", "Brake Pad Wear Warning"),
        DtcRule("C1B11", "ESC", "Brake Pad Worn To Limit"),
        DtcRule("P2601", "VCU", "Coolant Pump A Control Circuit Range/Performance"),
        DtcRule("P0A2F", "VCU", "Drive Motor A Temperature Too High"),
    )
}
# Benign noise a real fleet reports now and then: brief bus dropouts, a flaky sensor.
BACKGROUND_DTCS: tuple[DtcRule, ...] = (
    DtcRule("U0111", "GW", "Lost Communication With Battery Energy Control Module A"),
    DtcRule("U0155", "GW", "Lost Communication With Instrument Panel Cluster Control Module"),
    DtcRule("U0164", "GW", "Lost Communication With HVAC Control Module"),
    DtcRule("U0184", "IVI", "Lost Communication With Radio"),
    DtcRule("U0131", "GW", "Lost Communication With Power Steering Control Module"),
    DtcRule("U0422", "GW", "Invalid Data Received From Body Control Module"),
    DtcRule("C0035", "ESC", "Left Front Wheel Speed Sensor Circuit"),
    DtcRule("B1A00", "BCM", "Ambient Light Sensor Circuit"),
)
BACKGROUND_RATE_PER_DAY = 0.04  # per vehicle
REARM_S = 12 * 3600  # a stored code is reported again only after this long


def dtc_conditions(cols: Mapping[str, F64], aux: Mapping[str, F64]) -> dict[str, Bool]:
    """Per sample, whether each rule's condition holds (keys: DTC codes)."""
    parked = aux["awake"] == 0.0
    driving = aux["driving"] == 1.0
    cell_min = cols["Vehicle.Powertrain.TractionBattery.CellVoltage.Min"]
    spread = cols["Vehicle.Powertrain.TractionBattery.CellVoltage.Max"] - cell_min
    axle = "Vehicle.Chassis.Axle"
    wheels = ("Row1.Wheel.Left", "Row1.Wheel.Right", "Row2.Wheel.Left", "Row2.Wheel.Right")
    pads = np.stack([cols[f"{axle}.{w}.Brake.PadWear"] for w in wheels])
    out: dict[str, Bool] = {
        "P0562": parked & (cols["Vehicle.LowVoltageBattery.CurrentVoltage"] < 11.8),
        "P0A7F": spread > 0.08,
        "P0AFA": cell_min < 3.0,
        "P0A80": spread > 0.16,
        "P0A7E": cols["Vehicle.Powertrain.TractionBattery.Temperature.Average"] > 50.0,
        "C1B10": pads.max(axis=0) >= PAD_WARNING,
        "C1B11": pads.max(axis=0) >= PAD_LIMIT,
        "P2601": driving
        & (
            cols["Vehicle.Powertrain.ElectricMotor.CoolantTemperature"] - aux["coolant_expected"]
            > 10.0
        ),
        "P0A2F": cols["Vehicle.Powertrain.ElectricMotor.Temperature"] >= MOTOR_DERATE_C,
    }
    for code, wheel in zip(("C0750", "C0755", "C0760", "C0765"), wheels, strict=True):
        out[code] = cols[f"{axle}.{wheel}.Tire.Pressure"] < TYRE_LOW_SHARE * aux["placard_kpa"]
    return out


def detect_dtcs(
    vin_index: I64,
    ts_s: I64,
    conditions: Mapping[str, Bool],
    vins: list[str],
    background: tuple[I64, I64] | None = None,
) -> pa.Table:
    """DTC events where a condition becomes true (samples sorted by vehicle, then time).

    ``background`` adds benign codes: (sample row, index into ``BACKGROUND_DTCS``).
    """
    rows: list[tuple[int, int, str, str, str]] = []
    new_vehicle = np.ones(vin_index.size, dtype=bool)
    new_vehicle[1:] = vin_index[1:] != vin_index[:-1]
    for code, cond in conditions.items():
        rule = DTC_RULES[code]
        previous = np.zeros_like(cond)
        previous[1:] = cond[:-1]
        rising = np.flatnonzero(cond & (new_vehicle | ~previous))
        last: dict[int, int] = {}
        for i in rising.tolist():  # events are few; re-arming is per vehicle and code
            v, t = int(vin_index[i]), int(ts_s[i])
            if t - last.get(v, -(10**12)) >= REARM_S:
                last[v] = t
                rows.append((v, t, rule.ecu, rule.code, rule.description))
    if background is not None:
        sample, which = background
        for i, j in zip(sample.tolist(), which.tolist(), strict=True):
            rule = BACKGROUND_DTCS[j]
            rows.append((int(vin_index[i]), int(ts_s[i]), rule.ecu, rule.code, rule.description))
    rows.sort(key=lambda r: (r[0], r[1], r[3]))
    return pa.table(
        {
            "vin": pa.array([vins[r[0]] for r in rows], pa.string()),
            "ts": pa.array([r[1] * 1_000_000 for r in rows], pa.int64()).cast(
                DTCS.field("ts").type
            ),
            "ecu": pa.array([r[2] for r in rows], pa.string()),
            "code": pa.array([r[3] for r in rows], pa.string()),
            "description": pa.array([r[4] for r in rows], pa.string()),
        },
        schema=DTCS,
    )


def background_events(
    rng: np.random.Generator, vin_index: I64, awake: Bool, days: float, n_vehicles: int
) -> tuple[I64, I64]:
    """Benign DTCs at random awake samples (an ECU reports only while the car is awake)."""
    counts = rng.poisson(BACKGROUND_RATE_PER_DAY * days, n_vehicles)
    awake_rows = np.flatnonzero(awake)
    owner = vin_index[awake_rows]
    first = np.searchsorted(owner, np.arange(n_vehicles), side="left")
    last = np.searchsorted(owner, np.arange(n_vehicles), side="right")
    picks: list[int] = []
    for v in np.flatnonzero(counts).tolist():
        if last[v] > first[v]:
            picks.extend(awake_rows[rng.integers(first[v], last[v], counts[v])].tolist())
    sample = np.asarray(picks, dtype=np.int64)
    which = rng.integers(0, len(BACKGROUND_DTCS), sample.size).astype(np.int64)
    return sample, which


def failures_table(
    plan: FaultPlan, vins: list[str], actual_fail_s: F64, run_end_s: float
) -> pa.Table:
    """Ground truth: one row per fault that began, with its failure time (null if after the run)."""
    vehicle, comp = np.nonzero(np.isfinite(plan.onset_s))
    order = np.lexsort((comp, vehicle))
    vehicle, comp = vehicle[order], comp[order]
    onset = plan.onset_s[vehicle, comp]
    failed = actual_fail_s[vehicle, comp]
    keep = np.isfinite(failed) & (failed < run_end_s)
    to_us = 1_000_000
    return pa.table(
        {
            "vin": pa.array([vins[v] for v in vehicle.tolist()], pa.string()),
            "component": pa.array([COMPONENTS[c] for c in comp.tolist()], pa.string()),
            "onset_ts": pa.array(np.round(onset * to_us).astype(np.int64), pa.int64()).cast(
                FAILURES.field("onset_ts").type
            ),
            "failure_ts": pa.array(
                np.round(np.where(keep, failed, 0.0) * to_us).astype(np.int64),
                pa.int64(),
                mask=~keep,
            ).cast(FAILURES.field("failure_ts").type),
            "mode": pa.array([FAILURE_MODES[COMPONENTS[c]] for c in comp.tolist()], pa.string()),
        },
        schema=FAILURES,
    )
