"""Simulation scenarios: which fleet to simulate, where, for how long and with which faults.

A scenario is a YAML file (see ``sim/data/scenarios/demo.yaml``) read into :class:`Scenario`.
Every field has a default, so ``Scenario()`` is a small, valid fleet. Bad input raises
:class:`~fleetops.core.errors.ConfigError` naming the offending key. The ``can:`` section is
kept as a raw mapping for :mod:`fleetops.sim.can`, which owns its meaning.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from fleetops.core.errors import ConfigError, ValidationError
from fleetops.core.types import validate_vin

# Components that can wear out or fail; each has a precursor in the signals (see sim/wear.py).
COMPONENTS: tuple[str, ...] = (
    "lv_battery",  # 12 V battery: resting voltage sags until the car no longer starts
    "cell_imbalance",  # traction battery: one cell group drifts, spread grows, SoH drops
    "brake_pads",  # sticking caliper: one pad wears fast until the wear limit
    "tyre_leak",  # slow puncture: one tyre loses pressure until flat
    "coolant_pump",  # pump degrades: coolant and motor run hotter for the same load
)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A vehicle model of the fleet and its share of it."""

    name: str = "Aurora"
    model_years: tuple[int, ...] = (2022, 2023, 2024)
    share: float = 1.0
    battery_kwh: float = 64.0
    consumption_kwh_per_100km: float = 16.0
    wmi: str = "WFE"  # world manufacturer identifier: VIN positions 1-3
    voltage_v: int = 400  # pack architecture: 400 V (96 cells in series) or 800 V (192)
    motor_kw: float = 160.0
    dc_max_kw: float = 130.0
    mass_kg: float | None = None  # None: estimated from the battery size
    tyre_placard_kpa: float = 250.0

    @property
    def kerb_mass_kg(self) -> float:
        return self.mass_kg if self.mass_kg is not None else 1250.0 + 8.5 * self.battery_kwh


@dataclass(frozen=True, slots=True)
class Climate:
    """Ambient temperature of a region: yearly mean with seasonal and day/night swings."""

    mean_c: float = 9.0
    seasonal_amplitude_c: float = 9.0
    diurnal_amplitude_c: float = 4.0


@dataclass(frozen=True, slots=True)
class RegionSpec:
    """Where part of the fleet drives: a centre, a radius and a climate."""

    name: str = "central"
    share: float = 1.0
    climate: Climate = Climate()
    lat: float = 48.14
    lon: float = 11.58
    radius_km: float = 20.0
    utc_offset_h: float | None = None  # None: mean solar time, round(lon / 15)

    @property
    def offset_h(self) -> float:
        return self.utc_offset_h if self.utc_offset_h is not None else float(round(self.lon / 15.0))


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A component fault: a share of the fleet (plus any listed VINs) develops it."""

    component: str
    probability: float = 0.0
    vins: tuple[str, ...] = ()
    onset_day: float | None = None  # days after start; None: drawn per vehicle


@dataclass(frozen=True, slots=True)
class FleetSpec:
    vehicles: int = 20
    models: tuple[ModelSpec, ...] = (ModelSpec(),)
    regions: tuple[RegionSpec, ...] = (RegionSpec(),)


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything :func:`fleetops.sim.simulate_fleet` needs; deterministic given ``seed``."""

    name: str = "default"
    seed: int = 0
    start: datetime = datetime(2026, 1, 5, tzinfo=UTC)
    days: int = 7
    sample_interval_s: int = 30  # while driving or charging
    heartbeat_interval_s: int = 900  # while parked (the telematics unit wakes briefly)
    fleet: FleetSpec = FleetSpec()
    faults: tuple[FaultSpec, ...] = ()
    can: dict[str, Any] = field(default_factory=dict, hash=False)  # raw, for fleetops.sim.can

    def __post_init__(self) -> None:
        _validate(self)

    def with_overrides(
        self, *, vehicles: int | None = None, days: int | None = None, seed: int | None = None
    ) -> Scenario:
        """The same scenario with fleet size, length or seed replaced (validated again)."""
        fleet = self.fleet if vehicles is None else replace(self.fleet, vehicles=vehicles)
        return replace(
            self,
            fleet=fleet,
            days=self.days if days is None else days,
            seed=self.seed if seed is None else seed,
        )

    @property
    def vehicle_days(self) -> int:
        """Units of the ``progress`` callback of :func:`~fleetops.sim.simulate_fleet`."""
        return self.fleet.vehicles * self.days

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Scenario:
        return _parse_scenario(data, source)

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "<yaml>") -> Scenario:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
        if doc is None:
            doc = {}
        if not isinstance(doc, Mapping):
            raise ConfigError(f"{source}: a scenario must be a mapping, got {type(doc).__name__}")
        return _parse_scenario(doc, source)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Scenario:
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read scenario {file}: {exc}") from exc
        return cls.from_yaml_text(text, str(file))


# -- resolving shipped scenarios --------------------------------------------------------------


def _shipped_dir() -> Path:
    return Path(str(resources.files("fleetops.sim").joinpath("data/scenarios")))


def shipped_scenarios() -> list[str]:
    """Names of the scenarios fleetops ships (``demo``, ``smoke``, ...)."""
    return sorted(p.stem for p in _shipped_dir().glob("*.yaml"))


def resolve_scenario(name_or_path: str | os.PathLike[str]) -> Path:
    """The file of a shipped scenario given by name, or a user's scenario file by path."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    name = candidate.name.removesuffix(".yaml").removesuffix(".yml")
    if str(name_or_path) in (name, f"{name}.yaml"):  # a bare name, not a path
        shipped = _shipped_dir() / f"{name}.yaml"
        if shipped.is_file():
            return shipped
    raise ConfigError(
        f"no scenario file {str(name_or_path)!r} and no shipped scenario of that name "
        f"(shipped: {', '.join(shipped_scenarios())})"
    )


def load_scenario(name_or_path: str | os.PathLike[str]) -> Scenario:
    """Read a shipped scenario by name (``"demo"``) or a scenario file by path."""
    return Scenario.from_yaml(resolve_scenario(name_or_path))


# -- parsing ----------------------------------------------------------------------------------


class _Section:
    """One mapping of the document, with its path for error messages."""

    def __init__(self, data: Any, where: str, source: str, allowed: tuple[str, ...]) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: {where or 'scenario'}: expected a mapping, got {data!r}")
        unknown = sorted(str(k) for k in data if k not in allowed)
        if unknown:
            key = f"{where}.{unknown[0]}" if where else unknown[0]
            raise ConfigError(f"{source}: {key}: unknown key (allowed here: {', '.join(allowed)})")
        self.data = data
        self.where = where
        self.source = source

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.key(name)}: {message}")

    def get(self, name: str, convert: Callable[[Any], _T], default: _T) -> _T:
        if name not in self.data or self.data[name] is None:
            return default
        try:
            return convert(self.data[name])
        except (TypeError, ValueError) as exc:
            raise self.fail(name, f"{exc} (got {self.data[name]!r})") from None

    def integer(self, name: str, default: int, minimum: int | None = None) -> int:
        value = self.get(name, _as_int, default)
        if minimum is not None and value < minimum:
            raise self.fail(name, f"must be at least {minimum}, got {value}")
        return value

    def number(
        self, name: str, default: float, minimum: float | None = None, maximum: float | None = None
    ) -> float:
        value = self.get(name, _as_float, default)
        if minimum is not None and value < minimum:
            raise self.fail(name, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.fail(name, f"must be at most {maximum}, got {value}")
        return value

    def text(self, name: str, default: str) -> str:
        return self.get(name, _as_str, default)

    def items(self, name: str) -> list[Any] | None:
        if name not in self.data or self.data[name] is None:
            return None
        value = self.data[name]
        if not isinstance(value, list):
            raise self.fail(name, f"expected a list, got {value!r}")
        return value


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected an integer")
    return value


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expected a number")
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return float(value)


def _as_str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string")
    return value


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        raise TypeError("expected an ISO 8601 date-time")
    # A naive time is read as UTC: vehicle clocks and the lake are UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_TOP = (
    "name",
    "seed",
    "start",
    "days",
    "sample_interval_s",
    "heartbeat_interval_s",
    "fleet",
    "faults",
    "can",
)
_FLEET = ("vehicles", "models", "regions")
_MODEL = (
    "name",
    "model_years",
    "share",
    "battery_kwh",
    "consumption_kwh_per_100km",
    "wmi",
    "voltage_v",
    "motor_kw",
    "dc_max_kw",
    "mass_kg",
    "tyre_placard_kpa",
)
_REGION = ("name", "share", "climate", "center", "radius_km", "utc_offset_h")
_CLIMATE = ("mean_c", "seasonal_amplitude_c", "diurnal_amplitude_c")
_CENTER = ("lat", "lon")
_FAULT = ("component", "probability", "vins", "onset_day")


def _parse_scenario(data: Mapping[str, Any], source: str) -> Scenario:
    top = _Section(data, "", source, _TOP)
    default = Scenario()
    can = data.get("can")
    if can is not None and not isinstance(can, Mapping):
        raise top.fail("can", f"expected a mapping, got {can!r}")
    values: dict[str, Any] = {
        "name": top.text("name", default.name),
        "seed": top.integer("seed", default.seed, minimum=0),
        "start": top.get("start", _as_datetime, default.start),
        "days": top.integer("days", default.days, minimum=1),
        "sample_interval_s": top.integer("sample_interval_s", default.sample_interval_s, 1),
        "heartbeat_interval_s": top.integer(
            "heartbeat_interval_s", default.heartbeat_interval_s, 1
        ),
        "fleet": _parse_fleet(data.get("fleet"), source),
        "faults": tuple(
            _parse_fault(item, f"faults[{i}]", source)
            for i, item in enumerate(top.items("faults") or [])
        ),
        "can": dict(can) if can is not None else {},
    }
    try:
        return Scenario(**values)
    except ConfigError as exc:  # cross-field checks: say which file they are about
        raise ConfigError(f"{source}: {exc}") from None


def _parse_fleet(data: Any, source: str) -> FleetSpec:
    if data is None:
        return FleetSpec()
    section = _Section(data, "fleet", source, _FLEET)
    models = section.items("models")
    regions = section.items("regions")
    return FleetSpec(
        vehicles=section.integer("vehicles", FleetSpec().vehicles, minimum=1),
        models=(
            tuple(_parse_model(m, f"fleet.models[{i}]", source) for i, m in enumerate(models))
            if models is not None
            else FleetSpec().models
        ),
        regions=(
            tuple(_parse_region(r, f"fleet.regions[{i}]", source) for i, r in enumerate(regions))
            if regions is not None
            else FleetSpec().regions
        ),
    )


def _parse_model(data: Any, where: str, source: str) -> ModelSpec:
    s = _Section(data, where, source, _MODEL)
    d = ModelSpec()
    years_raw = s.items("model_years")
    years = d.model_years
    if years_raw is not None:
        if not years_raw:
            raise s.fail("model_years", "must list at least one year")
        try:
            years = tuple(_as_int(y) for y in years_raw)
        except TypeError:
            raise s.fail(
                "model_years", f"expected a list of integer years, got {years_raw!r}"
            ) from None
        bad = [y for y in years if not 1980 <= y <= 2100]
        if bad:
            raise s.fail("model_years", f"implausible model year(s) {bad}")
    voltage = s.integer("voltage_v", d.voltage_v)
    if voltage not in (400, 800):
        raise s.fail("voltage_v", f"must be 400 or 800, got {voltage}")
    wmi = s.text("wmi", d.wmi).upper()
    try:
        if len(wmi) != 3:
            raise ValidationError("wrong length")
        validate_vin(wmi + "0" * 14)
    except ValidationError:
        raise s.fail("wmi", f"{wmi!r} is not 3 VIN characters (0-9, A-Z without I, O, Q)") from None
    return ModelSpec(
        name=s.text("name", d.name),
        model_years=years,
        share=s.number("share", d.share, minimum=0.0, maximum=1.0),
        battery_kwh=s.number("battery_kwh", d.battery_kwh, minimum=10.0, maximum=250.0),
        consumption_kwh_per_100km=s.number(
            "consumption_kwh_per_100km", d.consumption_kwh_per_100km, minimum=8.0, maximum=45.0
        ),
        wmi=wmi,
        voltage_v=voltage,
        motor_kw=s.number("motor_kw", d.motor_kw, minimum=30.0, maximum=390.0),
        dc_max_kw=s.number("dc_max_kw", d.dc_max_kw, minimum=0.0, maximum=350.0),
        mass_kg=(
            s.number("mass_kg", 0.0, minimum=600.0, maximum=4000.0)
            if data.get("mass_kg") is not None
            else None
        ),
        tyre_placard_kpa=s.number("tyre_placard_kpa", d.tyre_placard_kpa, 150.0, 450.0),
    )


def _parse_region(data: Any, where: str, source: str) -> RegionSpec:
    s = _Section(data, where, source, _REGION)
    d = RegionSpec()
    climate = d.climate
    if data.get("climate") is not None:
        c = _Section(data["climate"], f"{where}.climate", source, _CLIMATE)
        climate = Climate(
            mean_c=c.number("mean_c", d.climate.mean_c, minimum=-40.0, maximum=40.0),
            seasonal_amplitude_c=c.number(
                "seasonal_amplitude_c", d.climate.seasonal_amplitude_c, minimum=0.0, maximum=30.0
            ),
            diurnal_amplitude_c=c.number(
                "diurnal_amplitude_c", d.climate.diurnal_amplitude_c, minimum=0.0, maximum=15.0
            ),
        )
    lat, lon = d.lat, d.lon
    if data.get("center") is not None:
        c = _Section(data["center"], f"{where}.center", source, _CENTER)
        lat = c.number("lat", d.lat, minimum=-85.0, maximum=85.0)
        lon = c.number("lon", d.lon, minimum=-180.0, maximum=180.0)
    return RegionSpec(
        name=s.text("name", d.name),
        share=s.number("share", d.share, minimum=0.0, maximum=1.0),
        climate=climate,
        lat=lat,
        lon=lon,
        radius_km=s.number("radius_km", d.radius_km, minimum=1.0, maximum=300.0),
        utc_offset_h=(
            s.number("utc_offset_h", 0.0, minimum=-12.0, maximum=14.0)
            if data.get("utc_offset_h") is not None
            else None
        ),
    )


def _parse_fault(data: Any, where: str, source: str) -> FaultSpec:
    s = _Section(data, where, source, _FAULT)
    if "component" not in data:
        raise s.fail("component", f"missing (one of {', '.join(COMPONENTS)})")
    component = s.text("component", "")
    if component not in COMPONENTS:
        raise s.fail(
            "component", f"unknown component {component!r} (one of {', '.join(COMPONENTS)})"
        )
    vins_raw = s.items("vins") or []
    vins: list[str] = []
    for i, vin in enumerate(vins_raw):
        if not isinstance(vin, str):
            raise s.fail(f"vins[{i}]", f"expected a VIN string, got {vin!r}")
        try:
            vins.append(validate_vin(vin, check_digit=True))
        except ValidationError as exc:
            raise s.fail(f"vins[{i}]", str(exc)) from None
    return FaultSpec(
        component=component,
        probability=s.number("probability", 0.0, minimum=0.0, maximum=1.0),
        vins=tuple(vins),
        onset_day=s.number("onset_day", 0.0) if data.get("onset_day") is not None else None,
    )


def _validate(s: Scenario) -> None:
    """Checks that span fields (types were checked by the parser or by the type hints)."""

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{key}: {message}")

    if s.days < 1:
        raise fail("days", f"must be at least 1, got {s.days}")
    if s.seed < 0:
        raise fail("seed", f"must be non-negative, got {s.seed}")
    if not 1 <= s.sample_interval_s <= 600 or 86_400 % s.sample_interval_s:
        raise fail(
            "sample_interval_s",
            f"must divide a day into whole samples and be 1 … 600 s, got {s.sample_interval_s}",
        )
    if s.heartbeat_interval_s % s.sample_interval_s or s.heartbeat_interval_s > 21_600:
        raise fail(
            "heartbeat_interval_s",
            f"must be a multiple of sample_interval_s ({s.sample_interval_s}) and at most 6 h, "
            f"got {s.heartbeat_interval_s}",
        )
    if s.start.tzinfo is None:
        raise fail("start", "must carry a time zone (UTC)")
    if s.fleet.vehicles < 1:
        raise fail("fleet.vehicles", f"must be at least 1, got {s.fleet.vehicles}")
    for label, items in (("fleet.models", s.fleet.models), ("fleet.regions", s.fleet.regions)):
        if not items:
            raise fail(label, "must list at least one entry")
        total = sum(item.share for item in items)
        if abs(total - 1.0) > 1e-6:
            raise fail(label, f"shares must sum to 1, they sum to {total:g}")
        names = [item.name for item in items]
        if len(set(names)) != len(names):
            raise fail(label, f"names must be unique, got {names}")
    for i, fault in enumerate(s.faults):
        if fault.component not in COMPONENTS:
            raise fail(f"faults[{i}].component", f"unknown component {fault.component!r}")
        if not 0.0 <= fault.probability <= 1.0:
            raise fail(f"faults[{i}].probability", f"must be within 0 … 1, got {fault.probability}")
        if fault.onset_day is not None and not 0.0 <= fault.onset_day < s.days:
            raise fail(
                f"faults[{i}].onset_day",
                f"must be within the run (0 ≤ day < {s.days}), got {fault.onset_day}",
            )
