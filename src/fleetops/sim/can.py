"""A CAN bus of one simulated EV, frame by frame, with labelled attacks.

Every cyclic message of the DBC is sent at its ``GenMsgCycleTime`` from its own ECU clock
(random phase, ppm drift, scheduling jitter), queued on a shared bus at its bit rate, and
carries the encoded state of a smooth drive generated here with NumPy: speed, motor,
battery, temperatures, position. Alive counters and CRCs are set as the DBC's E2E roles
say (see :mod:`fleetops.core.dbc`). Everything is vectorised per message.

Attacks (the ``attacks:`` list of the ``can:`` scenario section) are injected with a label
per frame; :attr:`CanSimulation.attacks` is the ground truth. See :class:`CanAttack`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from cantools.database.can import Database, Message, Signal

from fleetops.core.dbc import BitLayout, E2ESpec, e2e_specs, load_dbc, signal_layout, vss_paths
from fleetops.core.errors import ConfigError
from fleetops.core.schema import UTC_US
from fleetops.core.types import CanFrames

F64 = npt.NDArray[np.float64]
# The vehicle state is computed on a 100 ms grid and interpolated linearly at each frame's
# time: smooth at any cycle time, ten times less memory than a 10 ms grid.
_GRID_DT = 0.1
_MAX_DURATION_S = 86_400.0  # ~40 M frames, several GB: longer spans as several scenarios


class AttackType(StrEnum):
    FLOODING = "flooding"
    FUZZING = "fuzzing"
    SPOOFING = "spoofing"
    REPLAY = "replay"
    SUPPRESSION = "suppression"
    MASQUERADE = "masquerade"


PROFILES = ("urban", "highway", "mixed", "charging", "parked")
_SHAPES = ("plateau", "continuous")
_FUZZ_MODES = ("random_ids", "known_ids")

ATTACKS_SCHEMA = pa.schema(
    [
        pa.field("attack", pa.string(), nullable=False),
        pa.field("arbitration_id", pa.uint32()),  # null where it varies (fuzzing random ids)
        pa.field("message", pa.string()),
        pa.field("signal", pa.string()),
        pa.field("start", UTC_US, nullable=False),
        pa.field("end", UTC_US, nullable=False),
        pa.field("frames", pa.int64(), nullable=False),  # injected, or removed (suppression)
        pa.field("params", pa.string(), nullable=False),  # JSON of the attack's settings
    ]
)


def _fail(where: str, problem: str) -> ConfigError:
    return ConfigError(f"can scenario: {where}: {problem}")


def _number(d: Mapping[str, Any], key: str, where: str, default: float | None) -> float | None:
    value = d.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, f"{key} must be a number, got {value!r}")
    return float(value)


def _frame_id(value: Any, where: str) -> int:
    try:
        number = int(value, 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise _fail(where, f"{value!r} is not a CAN id") from None
    if isinstance(value, bool) or not 0 <= number <= 0x1FFFFFFF:
        raise _fail(where, f"{value!r} is not a CAN id")
    return number


@dataclass(frozen=True, slots=True)
class CanAttack:
    """One attack of a scenario (times in seconds from the scenario's start).

    * ``flooding``: ``id`` (default 0x000, the highest priority) at ``rate_hz`` (2000);
    * ``fuzzing``: ``rate_hz`` (200) frames with random payloads, on random 11-bit ids
      (``mode: random_ids``) or on the DBC's ids (``known_ids``);
    * ``spoofing``: extra frames of ``message`` at ``rate_hz`` (its cycle rate) beside the
      real sender, ``signal`` forced to ``value`` (``shape: plateau``) or drifting from the
      true value by ``drift_per_s`` (``continuous``); counter and CRC valid;
    * ``replay``: frames of ``message`` recorded from ``source_start_s`` re-sent as they were;
    * ``suppression``: ``message`` not sent (ground truth only, there is no frame);
    * ``masquerade``: the real sender of ``message`` silenced, the attacker sends at its
      cycle with ``signal`` manipulated as for spoofing, counter continued, CRC valid.

    ``message`` is a name or id; ``signal`` a signal name or VSS path (then ``message`` may
    be left out).
    """

    type: AttackType
    start_s: float
    duration_s: float
    message: str | int | None = None
    signal: str | None = None
    id: int | None = None
    rate_hz: float | None = None
    shape: str = "plateau"
    value: float | None = None
    drift_per_s: float | None = None
    mode: str = "random_ids"
    source_start_s: float | None = None

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "attack") -> CanAttack:
        if not isinstance(d, Mapping):
            raise _fail(where, f"expected a mapping, got {d!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise _fail(where, f"unknown keys {unknown} (allowed: {sorted(known)})")
        try:
            kind = AttackType(str(d.get("type")))
        except ValueError:
            allowed = ", ".join(t.value for t in AttackType)
            raise _fail(where, f"type {d.get('type')!r} is not one of {allowed}") from None
        where = f"{where} ({kind.value})"
        start = _number(d, "start_s", where, None)
        duration = _number(d, "duration_s", where, None)
        if start is None or duration is None:
            raise _fail(where, "start_s and duration_s are required")
        if start < 0 or duration <= 0:
            raise _fail(where, "start_s must be >= 0 and duration_s > 0")
        rate = _number(d, "rate_hz", where, None)
        if rate is not None and rate <= 0:
            raise _fail(where, "rate_hz must be positive")
        shape = str(d.get("shape", "plateau"))
        if shape not in _SHAPES:
            raise _fail(where, f"shape {shape!r} is not one of {', '.join(_SHAPES)}")
        mode = str(d.get("mode", "random_ids"))
        if mode not in _FUZZ_MODES:
            raise _fail(where, f"mode {mode!r} is not one of {', '.join(_FUZZ_MODES)}")
        message = d.get("message")
        if message is not None and not isinstance(message, str | int):
            raise _fail(where, f"message must be a name or an id, got {message!r}")
        signal = d.get("signal")
        needs_message = kind in (
            AttackType.SPOOFING,
            AttackType.REPLAY,
            AttackType.SUPPRESSION,
            AttackType.MASQUERADE,
        )
        if needs_message and message is None and signal is None:
            raise _fail(where, "needs a message (or a signal given by VSS path)")
        if kind in (AttackType.SPOOFING, AttackType.MASQUERADE):
            if signal is None:
                raise _fail(where, "needs the signal to manipulate")
            if shape == "plateau" and d.get("value") is None:
                raise _fail(where, "a plateau needs the value to hold")
        source = _number(d, "source_start_s", where, None)
        if kind is AttackType.REPLAY:
            source = max(0.0, start - duration) if source is None else source
            if source < 0 or source + duration > start:
                raise _fail(where, "the recorded window must lie before the replay")
        return cls(
            type=kind,
            start_s=start,
            duration_s=duration,
            message=message,
            signal=None if signal is None else str(signal),
            id=None if d.get("id") is None else _frame_id(d["id"], where),
            rate_hz=rate,
            shape=shape,
            value=_number(d, "value", where, None),
            drift_per_s=_number(d, "drift_per_s", where, None),
            mode=mode,
            source_start_s=source,
        )

    def params(self) -> dict[str, Any]:
        """The settings that matter for this attack type (for the ground truth)."""
        keys = {
            AttackType.FLOODING: ("id", "rate_hz"),
            AttackType.FUZZING: ("mode", "rate_hz"),
            AttackType.SPOOFING: ("shape", "value", "drift_per_s", "rate_hz"),
            AttackType.REPLAY: ("source_start_s",),
            AttackType.SUPPRESSION: (),
            AttackType.MASQUERADE: ("shape", "value", "drift_per_s"),
        }[self.type]
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


def _parse_start(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(float(value), tz=UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise _fail("start", f"{value!r} is not an ISO 8601 time") from None
    else:
        raise _fail("start", f"{value!r} is not a time")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)
_DEFAULT_ORIGIN = (48.1372, 11.5755)  # latitude, longitude (Munich)


@dataclass(frozen=True, slots=True)
class CanScenario:
    """The ``can:`` section of a scenario: how long, which drive, which attacks."""

    duration_s: float = 60.0
    seed: int = 0
    start: datetime = _DEFAULT_START
    profile: str = "mixed"
    attacks: tuple[CanAttack, ...] = ()
    bus: str = "can0"
    bitrate: int = 500_000
    jitter_us: float = 50.0  # mean ECU scheduling delay
    ambient_c: float = 15.0
    soc_start: float = 80.0
    origin: tuple[float, float] = _DEFAULT_ORIGIN  # latitude, longitude

    @property
    def start_epoch(self) -> float:
        return self.start.timestamp()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> CanScenario:
        d = d or {}
        if not isinstance(d, Mapping):
            raise _fail("can", f"expected a mapping, got {d!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise _fail("can", f"unknown keys {unknown} (allowed: {sorted(known)})")
        duration = _number(d, "duration_s", "duration_s", 60.0)
        assert duration is not None
        if not 0 < duration <= _MAX_DURATION_S:
            raise _fail("duration_s", f"must be > 0 and at most {_MAX_DURATION_S:.0f} s")
        seed = d.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise _fail("seed", f"must be a non-negative integer, got {seed!r}")
        profile = str(d.get("profile", "mixed"))
        if profile not in PROFILES:
            raise _fail("profile", f"{profile!r} is not one of {', '.join(PROFILES)}")
        raw_attacks = d.get("attacks") or []
        if not isinstance(raw_attacks, Sequence) or isinstance(raw_attacks, str):
            raise _fail("attacks", "expected a list")
        attacks = tuple(CanAttack.from_dict(a, f"attacks[{i}]") for i, a in enumerate(raw_attacks))
        for i, attack in enumerate(attacks):
            if attack.start_s >= duration:
                raise _fail(f"attacks[{i}]", f"starts after the scenario ends ({duration} s)")
        bitrate = d.get("bitrate", 500_000)
        if isinstance(bitrate, bool) or not isinstance(bitrate, int) or bitrate <= 0:
            raise _fail("bitrate", f"must be a positive integer, got {bitrate!r}")
        origin = d.get("origin", _DEFAULT_ORIGIN)
        if (
            not isinstance(origin, Sequence)
            or len(origin) != 2
            or not -85 <= float(origin[0]) <= 85
            or not -180 <= float(origin[1]) <= 180
        ):
            raise _fail("origin", f"expected [latitude, longitude], got {origin!r}")
        jitter = _number(d, "jitter_us", "jitter_us", 50.0)
        ambient = _number(d, "ambient_c", "ambient_c", 15.0)
        soc = _number(d, "soc_start", "soc_start", 80.0)
        assert jitter is not None and ambient is not None and soc is not None
        if jitter < 0 or not -40 <= ambient <= 50 or not 0 <= soc <= 100:
            raise _fail("can", "jitter_us >= 0, ambient_c in [-40, 50], soc_start in [0, 100]")
        return cls(
            duration_s=duration,
            seed=seed,
            start=_parse_start(d.get("start", _DEFAULT_START)),
            profile=profile,
            attacks=attacks,
            bus=str(d.get("bus", "can0")),
            bitrate=bitrate,
            jitter_us=jitter,
            ambient_c=ambient,
            soc_start=soc,
            origin=(float(origin[0]), float(origin[1])),
        )


@dataclass(slots=True)
class CanSimulation:
    """Frames on the bus (``label``: "" normal, else the attack type) and the ground truth."""

    scenario: CanScenario
    frames: CanFrames
    attacks: pa.Table  # ATTACKS_SCHEMA, one row per attack of the scenario
    attack_index: npt.NDArray[np.int32]  # per frame: its row in ``attacks``, -1 if normal
    # The true vehicle state (VSS path or "Message.Signal"), every _GRID_DT from the start.
    state: dict[str, F64] = field(repr=False, default_factory=dict)

    def truth(self, key: str, timestamp: F64) -> F64:
        """The true value of state ``key`` at epoch ``timestamp`` (interpolated)."""
        series = self.state[key]
        return _Sampler(timestamp - self.scenario.start_epoch, series.size)(series)


# -- the drive ------------------------------------------------------------------------------


def _smooth(x: F64, seconds: float) -> F64:
    """Centred moving average over ``seconds`` (edges held), via a cumulative sum."""
    width = max(1, round(seconds / _GRID_DT))
    if width == 1 or x.size == 0:
        return x.astype(np.float64)
    padded = np.pad(x.astype(np.float64), (width // 2, width - width // 2 - 1), mode="edge")
    total = np.cumsum(padded)
    total[width:] = total[width:] - total[:-width]
    return total[width - 1 :] / width


def _speed_profile(profile: str, n: int, rng: np.random.Generator) -> F64:
    """Target speeds (km/h) in segments: stops and drives for the profile, then smoothed."""
    if profile in ("charging", "parked"):
        return np.zeros(n)
    steps: list[tuple[int, float]] = []
    total = 0
    while total < n:
        kind = profile if profile != "mixed" else ("urban" if rng.random() < 0.6 else "highway")
        if kind == "urban":
            stop, drive = rng.uniform(5, 30), rng.uniform(20, 90)
            speed = rng.uniform(25, 55)
        else:
            stop, drive = (rng.uniform(5, 15) if total == 0 else 0.0), rng.uniform(60, 240)
            speed = rng.uniform(90, 130)
        for seconds, value in ((stop, 0.0), (drive, speed)):
            count = round(seconds / _GRID_DT)
            if count:
                steps.append((count, value))
                total += count
    counts = np.array([c for c, _ in steps])
    target = np.repeat(np.array([v for _, v in steps]), counts)[:n]
    ramp = _smooth(_smooth(target, 10.0), 3.0)  # ~1.5-3 m/s^2 ramps, no jerk steps
    wobble = _smooth(_smooth(rng.normal(size=n), 20.0), 20.0)  # twice: smooth slope too
    wobble /= max(float(np.std(wobble)), 1e-9)
    return np.clip(ramp * (1 + 0.03 * wobble), 0, None)


def _drive_state(s: CanScenario, rng: np.random.Generator) -> dict[str, F64]:
    """The vehicle's state on the 10 ms grid, keyed by VSS path or ``Message.Signal``."""
    n = math.ceil(s.duration_s / _GRID_DT) + 2
    t = np.arange(n) * _GRID_DT
    awake = s.profile != "parked"
    charging = s.profile == "charging"
    driving = s.profile in ("urban", "highway", "mixed")
    kmh = _speed_profile(s.profile, n, rng)
    v = kmh / 3.6
    accel = np.gradient(v, _GRID_DT)
    moving = v > 0.05

    # Steering: slow sweeps, large when slow, small at highway speed.
    amplitude = 5 + 175 * np.exp(-v / 4)
    f1, f2 = rng.uniform(0.01, 0.05), rng.uniform(0.05, 0.15)
    p1, p2 = rng.uniform(0, 2 * np.pi, 2)
    angle = amplitude * (
        0.6 * np.sin(2 * np.pi * f1 * t + p1) + 0.4 * np.sin(2 * np.pi * f2 * t + p2)
    )
    yaw = v * np.tan(np.radians(angle / 15.0)) / 2.9  # rad/s: steering ratio 15, wheelbase 2.9
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(yaw) * _GRID_DT
    north = np.cumsum(v * np.cos(heading)) * _GRID_DT
    east = np.cumsum(v * np.sin(heading)) * _GRID_DT
    lat0, lon0 = s.origin

    # Powertrain: road load, 92 % efficiency, regeneration limited to 80 kW.
    mass, radius, ratio = 2100.0, 0.34, 9.05
    force = mass * accel + 0.5 * 1.2 * 0.62 * v**2 + mass * 9.81 * 0.011 * moving
    wheel_kw = force * v / 1000
    motor_kw = np.where(wheel_kw > 0, wheel_kw / 0.92, np.maximum(wheel_kw * 0.92, -80.0))
    rpm = v / (2 * np.pi * radius) * 60 * ratio
    torque = np.where(
        rpm > 50, motor_kw * 1000 / np.maximum(rpm * 2 * np.pi / 60, 1e-6), force * radius / ratio
    )
    hvac_kw = 0.3 + 0.12 * abs(s.ambient_c - 21) if awake else 0.0
    aux_kw = (0.35 + hvac_kw) if awake else 0.05

    # Battery: 77 kWh, 96 cells in series; power and current positive when charging.
    soh = float(rng.uniform(88, 99))
    capacity = 77.0 * soh / 100
    battery_kw = np.full(n, 11.0) if charging else -(motor_kw + aux_kw)
    soc = np.clip(s.soc_start + np.cumsum(battery_kw) * _GRID_DT / 3600 / capacity * 100, 0, 100)
    if charging:
        battery_kw = np.where(soc >= 100, 0.0, battery_kw)
    ocv_cell = 3.45 + 0.7 * soc / 100
    current = battery_kw * 1000 / (96 * ocv_cell)
    pack_v = 96 * ocv_cell + current * 0.09
    spread = 0.008 + 0.004 * np.abs(current) / 200
    cell_v = pack_v / 96
    heat = _smooth(current**2, 300.0) / 200**2
    batt_temp = s.ambient_c + 4 + 12 * heat
    load = _smooth(np.abs(motor_kw), 60.0)
    coolant = s.ambient_c + 8 + 10 * _smooth(np.abs(motor_kw), 300.0) / 60
    motor_temp = coolant + 35 * load / 100
    cabin_set = 21.0
    cabin = cabin_set + (s.ambient_c - cabin_set) * np.exp(-t / 900) if awake else s.ambient_c
    tyre_temp = s.ambient_c + 15 * _smooth(v, 600.0) / 30
    odometer = rng.uniform(1_000, 80_000) + np.cumsum(v) * _GRID_DT / 1000
    noise = rng.normal(size=(6, n))

    vss = "Vehicle."
    tp = vss + "Powertrain.TractionBattery."
    st: dict[str, F64 | float] = {
        vss + "Speed": kmh,
        vss + "IsMoving": moving.astype(float),
        vss + "TraveledDistance": odometer,
        vss + "Acceleration.Longitudinal": accel + 0.02 * noise[0],
        vss + "CurrentLocation.Latitude": lat0 + north / 111_320,
        vss + "CurrentLocation.Longitude": lon0 + east / (111_320 * math.cos(math.radians(lat0))),
        vss + "Exterior.AirTemperature": s.ambient_c + 0.5 * np.sin(t / 1800) + 0.1 * noise[1],
        vss + "Cabin.HVAC.AmbientAirTemperature": cabin,
        vss + "Cabin.HVAC.IsAirConditioningActive": float(awake and s.ambient_c > 18),
        vss + "Chassis.Accelerator.PedalPosition": np.clip(100 * motor_kw / 220, 0, 100),
        vss + "Chassis.Brake.PedalPosition": np.clip((-accel - 0.3) * 30, 0, 100),
        vss + "Chassis.SteeringWheel.Angle": angle,
        vss + "Powertrain.Range": soc / 100 * capacity / 0.17 * 1000,
        vss + "Powertrain.ElectricMotor.Speed": rpm,
        vss + "Powertrain.ElectricMotor.Power": motor_kw,
        vss + "Powertrain.ElectricMotor.Temperature": motor_temp,
        vss + "Powertrain.ElectricMotor.CoolantTemperature": coolant,
        tp + "StateOfCharge.Current": soc,
        tp + "StateOfCharge.Displayed": np.clip(np.round((soc - 2) / 96 * 100), 0, 100),
        tp + "StateOfHealth": soh,
        tp + "CurrentVoltage": pack_v,
        tp + "CurrentCurrent": current,
        tp + "CurrentPower": battery_kw * 1000,
        tp + "Temperature.Average": batt_temp,
        tp + "CellVoltage.Min": cell_v - spread,
        tp + "CellVoltage.Max": cell_v + spread,
        tp + "Charging.IsCharging": float(charging),
        vss + "LowVoltageBattery.CurrentVoltage": (14.2 if awake else 12.6) + 0.02 * noise[2],
        vss + "LowVoltageBattery.CurrentCurrent": (1.5 if awake else -0.3) + 0.3 * noise[3],
        "VCU_DriveCmd.TorqueRequest": torque * 1.02,
        "VCU_DriveCmd.GearSelect": 3.0 if driving else 0.0,
        "VCU_DriveCmd.DriveReady": float(driving),
        "VCU_DriveCmd.VehicleMode": 3.0 if charging else 2.0 if driving else 1.0,
        "MCU_Status.MotorTorque": torque,
        "MCU_Status.MotorState": (
            np.where(motor_kw > 0.5, 2.0, np.where(motor_kw < -0.5, 3.0, 1.0)) if driving else 0.0
        ),
        "EPS_Steering.SteeringRate": np.gradient(angle, _GRID_DT),
        "EPS_Steering.SteeringTorque": 0.02 * angle * moving + 0.05 * noise[4],
        "ESP_Dynamics.LatAccel": v * yaw,
        "ESP_Dynamics.YawRate": np.degrees(yaw),
        "BMS_PackStatus.ContactorState": 2.0 if awake else 0.0,
        "BMS_Energy.EnergyRemaining": soc / 100 * capacity,
        "BMS_CellStats.MinCellIndex": float(rng.integers(0, 96)),
        "BMS_CellStats.MaxCellIndex": float(rng.integers(0, 96)),
        "BMS_CellStats.CellTempMin": batt_temp - 1.5,
        "BMS_CellStats.CellTempMax": batt_temp + 2.0,
        "BMS_CellStats.CoolantInletTemp": batt_temp - 3,
        "BMS_CellStats.IsolationResistance": 2000 + 20 * noise[5],
        "BMS_SOC.ChargeState": 1.0 if charging else 0.0,
        "BMS_SOC.TimeToFull": (
            np.minimum((100 - soc) / 100 * capacity / 11 * 60, 65534) if charging else 65534.0
        ),
        "MCU_Thermal.InverterTemp": coolant + 15 * _smooth(np.abs(motor_kw), 30.0) / 100,
        "MCU_Thermal.DeratingFactor": 100.0,
        "MCU_Thermal.PumpDuty": np.clip(20 + 3 * (coolant - s.ambient_c), 0, 100),
        "VCU_Trip.Consumption": 17.0 + _smooth(noise[0], 60.0),
        "DCDC_Status.DCDCMode": 1.0 if awake else 0.0,
        "DCDC_Status.DCDCTemp": s.ambient_c + (15 if awake else 0),
        "HVAC_Status.BlowerLevel": (
            np.where(np.abs(cabin - cabin_set) > 3, 4.0, 1.0) if awake else 0.0
        ),
        "HVAC_Status.TempSetpoint": cabin_set,
    }
    for k, wheel in enumerate(("FL", "FR", "RL", "RR")):
        side = 1 if wheel.endswith("R") else -1  # outer wheels turn faster
        st[f"ESP_WheelSpeeds.WheelSpeed{wheel}"] = np.clip(
            kmh * (1 + side * yaw * 0.8 / 2), 0, None
        )
        axle = "Row1" if k < 2 else "Row2"
        lr = "Left" if wheel.endswith("L") else "Right"
        nominal = rng.uniform(235, 260)
        st[f"{vss}Chassis.Axle.{axle}.Wheel.{lr}.Tire.Pressure"] = (
            nominal * (273.15 + tyre_temp) / (273.15 + s.ambient_c)
        )
        st[f"{vss}Chassis.Axle.{axle}.Wheel.{lr}.Brake.PadWear"] = float(
            rng.uniform(5, 40) if k < 2 else rng.uniform(3, 25)
        )
        st[f"TPMS_Status.TireTemp{wheel}"] = tyre_temp
    return {k: np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)) for k, v in st.items()}


# -- encoding -------------------------------------------------------------------------------


@dataclass(slots=True)
class _SignalEncoder:
    name: str
    key: str  # state key: VSS path or "Message.Signal"
    layout: BitLayout
    signed: bool
    float_bits: int
    scale: float
    offset: float
    lo: float  # physical range to clip to
    hi: float
    raw_lo: int
    raw_hi: int
    mux_parent: str | None
    mux_ids: npt.NDArray[np.int64] | None
    pages: npt.NDArray[np.int64] | None  # for multiplexers: the ids cycled through


@dataclass(slots=True)
class _MessageEncoder:
    message: Message
    frame_id: int
    is_extended: bool
    length: int
    cycle_s: float
    signals: dict[str, _SignalEncoder]
    e2e: E2ESpec | None

    def encode(
        self,
        state: dict[str, F64],
        at: _Sampler,
        counter: npt.NDArray[np.int64] | None,
        frame_no: npt.NDArray[np.int64],
        override: tuple[str, F64] | None = None,
    ) -> npt.NDArray[np.uint8]:
        """Payloads ``(n, 8)`` of the state sampled by ``at``; ``override`` replaces one
        signal's physical values (attacks)."""
        n = at.size
        le = np.zeros(n, dtype=np.uint64)
        be = np.zeros(n, dtype=np.uint64)
        values: dict[str, npt.NDArray[np.int64]] = {}
        for enc in self.signals.values():
            if self.e2e is not None and enc.name == self.e2e.checksum_signal:
                continue  # set once every other byte is known
            if self.e2e is not None and enc.name == self.e2e.counter_signal:
                assert counter is not None
                raw = counter % (enc.raw_hi + 1)
            elif enc.pages is not None:  # multiplexers send their pages in turn
                raw = enc.pages[frame_no % enc.pages.size]
            else:
                if override is not None and override[0] == enc.name:
                    phys = override[1]
                else:
                    series = state.get(enc.key)
                    phys = np.zeros(n) if series is None else at(series)
                raw = self._raw(enc, phys)
            values[enc.name] = raw
            bits = raw.view(np.uint64) & enc.layout.mask
            if enc.mux_parent is not None and enc.mux_ids is not None:
                bits = np.where(np.isin(values[enc.mux_parent], enc.mux_ids), bits, np.uint64(0))
            if enc.layout.shift:
                bits = bits << np.uint64(enc.layout.shift)
            if enc.layout.big_endian:
                be |= bits
            else:
                le |= bits
        word = le | be.byteswap()
        data = word.view(np.uint8).reshape(n, 8).copy()
        if self.e2e is not None:
            data[:, self.e2e.checksum_byte] = self.e2e.checksum(data)
        return data

    @staticmethod
    def _raw(enc: _SignalEncoder, phys: F64) -> npt.NDArray[np.int64]:
        if enc.hi > enc.lo:
            phys = np.clip(phys, enc.lo, enc.hi)
        scaled = (phys - enc.offset) / enc.scale if enc.scale != 1 or enc.offset else phys
        if enc.float_bits == 32:
            return scaled.astype(np.float32).view(np.uint32).astype(np.int64)
        if enc.float_bits == 64:
            return scaled.view(np.int64)
        return np.clip(np.rint(scaled), enc.raw_lo, enc.raw_hi).astype(np.int64)


def _signal_encoder(
    message: Message, signal: Signal, vss: dict[tuple[int, str], str]
) -> _SignalEncoder:
    layout = signal_layout(signal)
    length = layout.length
    raw_lo, raw_hi = (
        (-(1 << (length - 1)), (1 << (length - 1)) - 1)
        if signal.is_signed
        else (
            0,
            (1 << length) - 1,
        )
    )
    raw_lo, raw_hi = max(raw_lo, -(1 << 62)), min(raw_hi, (1 << 62))
    pages = None
    if signal.is_multiplexer:
        ids = sorted(
            {
                i
                for s in message.signals
                if s.multiplexer_signal == signal.name
                for i in (s.multiplexer_ids or [])
            }
        )
        pages = np.asarray(ids or [0], dtype=np.int64)
    return _SignalEncoder(
        name=signal.name,
        key=vss.get((message.frame_id, signal.name), f"{message.name}.{signal.name}"),
        layout=layout,
        signed=bool(signal.is_signed),
        float_bits=length if signal.is_float else 0,
        scale=float(signal.scale),
        offset=float(signal.offset),
        lo=float(signal.minimum) if signal.minimum is not None else 0.0,
        hi=float(signal.maximum) if signal.maximum is not None else 0.0,
        raw_lo=raw_lo,
        raw_hi=raw_hi,
        mux_parent=signal.multiplexer_signal,
        mux_ids=(
            None if signal.multiplexer_ids is None else np.asarray(signal.multiplexer_ids, np.int64)
        ),
        pages=pages,
    )


def _mux_depth(signals: dict[str, _SignalEncoder], name: str) -> int:
    parent = signals[name].mux_parent
    return 0 if parent is None else 1 + _mux_depth(signals, parent)


def _encoders(db: Database) -> dict[int, _MessageEncoder]:
    vss = vss_paths(db)
    specs = e2e_specs(db)
    out: dict[int, _MessageEncoder] = {}
    for message in db.messages:
        if message.length > 8 or message.is_container:
            continue  # classic CAN only
        signals = {s.name: _signal_encoder(message, s, vss) for s in message.signals}
        # Multiplexers first: a multiplexed signal needs its selector's value.
        order = sorted(signals, key=lambda name: _mux_depth(signals, name))
        out[message.frame_id] = _MessageEncoder(
            message=message,
            frame_id=message.frame_id,
            is_extended=bool(message.is_extended_frame),
            length=message.length,
            cycle_s=(message.cycle_time or 0) / 1000.0,
            signals={name: signals[name] for name in order},
            e2e=specs.get(message.frame_id),
        )
    return out


# -- streams --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Stream:
    """Frames of one sender (or attacker), before they meet on the bus."""

    times: F64  # seconds from the scenario's start, when the frame is ready to send
    frame_id: npt.NDArray[np.uint32]
    is_extended: npt.NDArray[np.bool_]
    dlc: npt.NDArray[np.uint8]
    data: npt.NDArray[np.uint8]
    attack: int = -1  # row of the ground truth, -1 for the real sender

    def __len__(self) -> int:
        return self.times.size

    def take(self, index: npt.NDArray[Any]) -> _Stream:
        return _Stream(
            self.times[index],
            self.frame_id[index],
            self.is_extended[index],
            self.dlc[index],
            self.data[index],
            self.attack,
        )


def _stream(enc: _MessageEncoder, times: F64, data: npt.NDArray[np.uint8], attack: int) -> _Stream:
    n = times.size
    return _Stream(
        times,
        np.full(n, enc.frame_id, dtype=np.uint32),
        np.full(n, enc.is_extended, dtype=bool),
        np.full(n, enc.length, dtype=np.uint8),
        data,
        attack,
    )


class _Sampler:
    """Linear interpolation of state series at given times (seconds from the start),
    with the index arithmetic done once for all the signals of a message."""

    def __init__(self, times: F64, size: int) -> None:
        position = np.clip(times / _GRID_DT, 0, size - 1)
        self.left = np.minimum(position.astype(np.intp), size - 2)
        self.weight = position - self.left
        self.size = times.size

    def __call__(self, series: F64) -> F64:
        if series.strides == (0,):  # a broadcast constant
            return np.full(self.size, series[0])
        left = series[self.left]
        right = series[self.left + 1]
        out: F64 = left + (right - left) * self.weight
        return out


def _cyclic_times(
    cycle: float,
    start: float,
    end: float,
    s: CanScenario,
    rng: np.random.Generator,
    phase: float | None = None,
) -> F64:
    """Send times of one ECU task: own phase, clock drift (ppm) and scheduling jitter."""
    period = cycle * (1 + rng.normal(0, 30e-6))
    first = start + (rng.uniform(0, cycle) if phase is None else phase)
    count = max(0, math.floor((end - first) / period) + 1)
    times: F64 = first + np.arange(count, dtype=np.float64) * period
    if s.jitter_us > 0:
        times += rng.exponential(s.jitter_us * 1e-6, count)
    return times[times < end]


@dataclass(slots=True)
class _Normal:
    """A real sender's frames: as sent, and as left after attacks silenced some."""

    enc: _MessageEncoder
    original: _Stream  # replays record from it
    counter: npt.NDArray[np.int64]  # alive counter of each original frame
    stream: _Stream
    index: npt.NDArray[np.intp]  # position in ``original`` of each frame of ``stream``


def _frame_bits(dlc: npt.NDArray[np.uint8], extended: npt.NDArray[np.bool_]) -> F64:
    """Bits on the wire per frame: header/CRC/ACK/EOF + interframe space, data, ~10 %
    stuffing."""
    bits: F64 = (np.where(extended, 67.0, 47.0) + 8.0 * dlc) * 1.1
    return bits


class _Builder:
    def __init__(self, s: CanScenario, db: Database, rng: np.random.Generator) -> None:
        self.s = s
        self.db = db
        self.rng = rng
        self.encoders = _encoders(db)
        self.vss = {path: key for key, path in vss_paths(db).items()}
        self.state = _drive_state(s, rng)
        self.size = next(iter(self.state.values())).size
        assert self.size >= 2
        self.normal: dict[int, _Normal] = {}
        self.injected: list[_Stream] = []
        self.rows: list[dict[str, Any]] = []

    def normal_traffic(self) -> None:
        for frame_id, enc in self.encoders.items():
            if enc.cycle_s <= 0:
                continue  # event-driven messages are not simulated
            times = _cyclic_times(enc.cycle_s, 0.0, self.s.duration_s, self.s, self.rng)
            frame_no = np.arange(times.size, dtype=np.int64)
            counter = (frame_no + int(self.rng.integers(0, 16))) % 16
            data = enc.encode(self.state, _Sampler(times, self.size), counter, frame_no)
            stream = _stream(enc, times, data, -1)
            self.normal[frame_id] = _Normal(enc, stream, counter, stream, np.arange(times.size))

    # -- attacks -------------------------------------------------------------------------

    def _target(self, a: CanAttack, where: str) -> tuple[_MessageEncoder, str | None]:
        message: Message | None = None
        signal = a.signal
        if a.message is not None:
            try:
                message = (
                    self.db.get_message_by_frame_id(_frame_id(a.message, where))
                    if isinstance(a.message, int) or a.message.lower().startswith("0x")
                    else self.db.get_message_by_name(a.message)
                )
            except KeyError:
                raise _fail(where, f"the DBC has no message {a.message!r}") from None
        elif signal is not None and signal in self.vss:
            frame_id, signal = self.vss[signal]
            message = self.db.get_message_by_frame_id(frame_id)
        if message is None or message.frame_id not in self.encoders:
            raise _fail(where, f"cannot find the message of {a.signal or a.message!r}")
        enc = self.encoders[message.frame_id]
        if signal is not None and signal not in enc.signals:
            by_path = {enc.signals[name].key: name for name in enc.signals}
            if signal not in by_path:
                raise _fail(where, f"message {message.name} has no signal {signal!r}")
            signal = by_path[signal]
        return enc, signal

    def _manipulated(
        self, a: CanAttack, enc: _MessageEncoder, signal: str, times: F64
    ) -> tuple[str, F64]:
        if a.shape == "plateau":
            assert a.value is not None
            return signal, np.full(times.size, a.value)
        sig = enc.signals[signal]
        truth = self.state.get(sig.key)
        base = np.zeros(times.size) if truth is None else _Sampler(times, self.size)(truth)
        drift = a.drift_per_s
        if drift is None:  # default: 1 % of the signal's range per second
            drift = (sig.hi - sig.lo) / 100 if sig.hi > sig.lo else 1.0
        return signal, base + drift * (times - a.start_s)

    def _window(self, normal: _Normal, a: CanAttack) -> npt.NDArray[np.bool_]:
        t = normal.stream.times
        return (t >= a.start_s) & (t < min(a.end_s, self.s.duration_s))

    def _silence(self, normal: _Normal, a: CanAttack) -> npt.NDArray[np.intp]:
        """Drop the real sender's frames in the attack window; their original indices."""
        window = self._window(normal, a)
        removed = normal.index[window]
        normal.stream = normal.stream.take(~window)
        normal.index = normal.index[~window]
        return removed

    def attack(self, row: int, a: CanAttack) -> None:
        where = f"attacks[{row}] ({a.type.value})"
        end = min(a.end_s, self.s.duration_s)
        frame_id: int | None = None
        message: str | None = None
        signal: str | None = None
        if a.type is AttackType.FLOODING:
            frame_id = 0 if a.id is None else a.id
            count = self._flooding(row, a, frame_id, end)
        elif a.type is AttackType.FUZZING:
            count = self._fuzzing(row, a, end)
        else:
            enc, signal = self._target(a, where)
            frame_id, message = enc.frame_id, enc.message.name
            normal = self.normal.get(enc.frame_id)
            if normal is None:
                raise _fail(where, f"message {message} is not sent cyclically")
            if a.type is AttackType.SUPPRESSION:
                count = self._silence(normal, a).size
            elif a.type is AttackType.REPLAY:
                count = self._replay(row, a, normal, end)
            else:
                assert signal is not None
                manipulate = (a, signal)
                if a.type is AttackType.SPOOFING:
                    count = self._spoofing(row, manipulate, enc, end)
                else:
                    count = self._masquerade(row, manipulate, normal, end)
        self.rows.append(
            {
                "attack": a.type.value,
                "arbitration_id": frame_id,
                "message": message,
                "signal": signal,
                "start": round((self.s.start_epoch + a.start_s) * 1e6),
                "end": round((self.s.start_epoch + end) * 1e6),
                "frames": count,
                "params": json.dumps(a.params(), sort_keys=True),
            }
        )

    def _flooding(self, row: int, a: CanAttack, frame_id: int, end: float) -> int:
        rate = a.rate_hz or 2000.0
        times = np.arange(a.start_s, end, 1 / rate)  # a tool sending as fast as told
        n = times.size
        self.injected.append(
            _Stream(
                times,
                np.full(n, frame_id, dtype=np.uint32),
                np.full(n, frame_id > 0x7FF, dtype=bool),
                np.full(n, 8, dtype=np.uint8),
                np.zeros((n, 8), dtype=np.uint8),
                row,
            )
        )
        return n

    def _fuzzing(self, row: int, a: CanAttack, end: float) -> int:
        rng = self.rng
        n = max(0, math.floor((end - a.start_s) * (a.rate_hz or 200.0)))
        times = np.sort(rng.uniform(a.start_s, end, n))
        if a.mode == "random_ids":
            ids = rng.integers(0, 0x800, n).astype(np.uint32)
            dlc = rng.integers(0, 9, n).astype(np.uint8)
        else:
            known = np.array(sorted(self.encoders), dtype=np.uint32)
            lengths = np.array([self.encoders[int(i)].length for i in known], dtype=np.uint8)
            pick = rng.integers(0, known.size, n)
            ids, dlc = known[pick], lengths[pick]
        data = rng.integers(0, 256, (n, 8), dtype=np.uint8)
        data[np.arange(8)[None, :] >= dlc[:, None]] = 0
        self.injected.append(_Stream(times, ids, np.zeros(n, dtype=bool), dlc, data, row))
        return n

    def _replay(self, row: int, a: CanAttack, normal: _Normal, end: float) -> int:
        assert a.source_start_s is not None
        src = normal.original
        recorded = (src.times >= a.source_start_s) & (src.times < a.source_start_s + a.duration_s)
        copy = src.take(recorded)
        copy.times = copy.times + (a.start_s - a.source_start_s)
        copy = copy.take(copy.times < end)
        copy.attack = row
        self.injected.append(copy)
        return len(copy)

    def _spoofing(
        self, row: int, manipulate: tuple[CanAttack, str], enc: _MessageEncoder, end: float
    ) -> int:
        a, signal = manipulate
        rng = self.rng
        period = 1 / (a.rate_hz or 1 / enc.cycle_s)
        times = np.arange(a.start_s + rng.uniform(0, period), end, period)
        times = times + rng.exponential(max(self.s.jitter_us, 1.0) * 1e-6, times.size)
        times = times[times < end]
        frame_no = np.arange(times.size, dtype=np.int64)
        counter = frame_no + int(rng.integers(0, 16))  # the attacker's own sequence
        override = self._manipulated(a, enc, signal, times)
        data = enc.encode(self.state, _Sampler(times, self.size), counter, frame_no, override)
        self.injected.append(_stream(enc, times, data, row))
        return times.size

    def _masquerade(
        self, row: int, manipulate: tuple[CanAttack, str], normal: _Normal, end: float
    ) -> int:
        a, signal = manipulate
        enc = normal.enc
        self._silence(normal, a)
        # The sender's first slot in the window, even if an earlier attack already emptied it.
        slot = int(np.searchsorted(normal.original.times, a.start_s))
        if slot >= len(normal.original) or normal.original.times[slot] >= end:
            return 0
        # The attacker answers in the silenced sender's first slot, keeps its own clock from
        # there and carries the sender's counter on.
        first = float(normal.original.times[slot]) + self.rng.uniform(1e-4, 5e-4)
        times = _cyclic_times(enc.cycle_s, first, end, self.s, self.rng, phase=0.0)
        steps = np.arange(times.size, dtype=np.int64)
        previous = int(normal.counter[slot - 1]) if slot else -1
        override = self._manipulated(a, enc, signal, times)
        data = enc.encode(
            self.state, _Sampler(times, self.size), previous + 1 + steps, slot + steps, override
        )
        self.injected.append(_stream(enc, times, data, row))
        return times.size

    # -- the bus -------------------------------------------------------------------------

    def bus(self) -> tuple[CanFrames, npt.NDArray[np.int32]]:
        streams = [n.stream for n in self.normal.values()] + self.injected
        times = np.concatenate([st.times for st in streams])
        order = np.argsort(times, kind="stable")  # each stream is sorted: a k-way merge
        ids = np.concatenate([st.frame_id for st in streams])[order]
        extended = np.concatenate([st.is_extended for st in streams])[order]
        dlc = np.concatenate([st.dlc for st in streams])[order]
        data = np.concatenate([st.data for st in streams])[order]
        attack = np.concatenate([np.full(len(st), st.attack, dtype=np.int32) for st in streams])[
            order
        ]
        ready = times[order]
        # One frame at a time on the wire: start_i = max(ready_i, end of frame i-1), i.e. a
        # running maximum of ready - (time taken by earlier frames); stamped at the frame's
        # end as a receiver does.
        duration = _frame_bits(dlc, extended) / self.s.bitrate
        before = np.cumsum(duration) - duration
        start = np.maximum.accumulate(ready - before) + before
        stamp = self.s.start_epoch + start + duration
        # Zeroed unicode is "" for free; only injected frames get their attack's name.
        labels = np.zeros(attack.size, dtype="<U10")
        injected = np.flatnonzero(attack >= 0)
        names = np.array([r["attack"] for r in self.rows] or [""], dtype="<U10")
        labels[injected] = names[attack[injected]]
        frames = CanFrames(
            timestamp=stamp,
            arbitration_id=ids,
            dlc=dlc,
            data=data,
            bus=self.s.bus,
            is_extended=extended,
            label=labels,
        )
        return frames, attack


def simulate_can(
    scenario: CanScenario | Mapping[str, Any], db: Database | None = None
) -> CanSimulation:
    """Simulate the bus of ``scenario`` (or a raw ``can:`` mapping) with ``db`` (default:
    the shipped fleetops EV DBC). Deterministic for a given seed."""
    s = scenario if isinstance(scenario, CanScenario) else CanScenario.from_dict(scenario)
    builder = _Builder(s, load_dbc() if db is None else db, np.random.default_rng(s.seed))
    builder.normal_traffic()
    for row, attack in enumerate(s.attacks):
        builder.attack(row, attack)
    frames, attack_index = builder.bus()
    truth = pa.Table.from_pylist(builder.rows, schema=ATTACKS_SCHEMA)
    return CanSimulation(s, frames, truth, attack_index, builder.state)
