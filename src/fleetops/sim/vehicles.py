"""The simulated fleet's inventory (VINs, ECUs) and the hidden per-vehicle parameters."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from fleetops.core.types import Ecu, Vehicle, vin_check_digit
from fleetops.sim.physics import F64, I64, Bool, f64
from fleetops.sim.scenario import ModelSpec, Scenario

_YEAR_CODES = "ABCDEFGHJKLMNPRSTVWXY123456789"  # VIN position 10, a 30-year cycle from 1980
_VIN_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"

ECU_NAMES: tuple[str, ...] = ("VCU", "BMS", "TCU", "ADAS", "IVI", "BCM", "GW", "ESC")
# Release history per ECU, oldest first; a fleet is never fully up to date.
SOFTWARE_TRAINS: dict[str, tuple[str, ...]] = {
    "VCU": ("3.9.4", "4.0.2", "4.1.0", "4.2.1"),
    "BMS": ("2.6.0", "2.7.3", "2.8.1", "3.0.0"),
    "TCU": ("5.1.2", "5.2.0", "5.3.4", "5.4.0"),
    "ADAS": ("1.12.0", "1.13.2", "1.14.1", "2.0.0"),
    "IVI": ("8.4.1", "8.5.0", "9.0.3", "9.1.0"),
    "BCM": ("2.2.5", "2.3.0", "2.3.1", "2.4.0"),
    "GW": ("1.6.0", "1.7.2", "1.8.0", "1.8.1"),
    "ESC": ("6.0.1", "6.0.4", "6.1.0", "6.2.0"),
}
_TRAIN_WEIGHTS = np.array([0.07, 0.13, 0.25, 0.55])


def model_year_code(year: int) -> str:
    return _YEAR_CODES[(year - 1980) % 30]


def model_code(name: str) -> str:
    """Three VIN-safe letters naming a model (VIN positions 4-6)."""
    letters = [c for c in name.upper() if c in _VIN_LETTERS]
    return "".join(letters[:3]).ljust(3, "X")


def make_vin(wmi: str, model: ModelSpec, year: int, plant: str, serial: int) -> str:
    """A 17-character VIN with a valid check digit (position 9)."""
    vds = model_code(model.name) + "E" + ("1" if model.voltage_v == 400 else "2")
    body = f"{wmi}{vds}0{model_year_code(year)}{plant}{serial:06d}"
    return body[:8] + vin_check_digit(body) + body[9:]  # position 9 weighs 0 in the sum


def hardware_revision(model_year: int) -> str:
    return "A" if model_year < 2022 else "B" if model_year < 2024 else "C"


@dataclass(slots=True)
class VehicleParams:
    """Per-vehicle constants the signals come from, as arrays over the fleet (hidden truth)."""

    model: I64
    region: I64
    model_year: I64
    offset_s: F64  # local time = UTC + offset
    lat0: F64
    lon0: F64
    radius_km: F64
    climate_mean: F64
    climate_seasonal: F64
    climate_diurnal: F64
    southern: Bool
    climate_offset: F64  # micro-climate of where the car lives
    cap_kwh: F64  # nominal usable capacity when new
    n_series: F64
    r_pack: F64
    p_max_w: F64
    regen_max_w: F64
    mass_kg: F64
    cda: F64
    crr: F64
    cons_factor: F64  # drivetrain and auxiliary losses, calibrated to the model's rating
    rated_kwh_km: F64
    dc_max_kw: F64
    home_kw: F64  # 0: no home charger
    offpeak_h: F64  # local hour a scheduled home charge starts; NaN: starts on arrival
    charge_threshold: F64
    charge_target: F64
    heat_pump: Bool
    commuter: Bool
    commute_min: F64
    commute_kind: I64
    depart_h: F64  # usual local hour of leaving for work
    return_h: F64
    trip_rate: F64
    accel: F64
    decel: F64
    speed_factor: F64
    home_x: F64
    home_y: F64
    work_x: F64
    work_y: F64
    odo0_km: F64
    soc0: F64
    soh0: F64
    pad0: F64  # (n, 4): FL, FR, RL, RR, percent worn
    tyre_set_kpa: F64  # (n, 4) cold pressure when last inflated (at 20 °C)
    tyre_leak_kpa_day: F64
    placard_kpa: F64
    lv_rest_v: F64
    lv_drain_v_day: F64
    cool_eff: F64
    cell_spread_v: F64
    sample_phase_s: I64  # vehicles do not all sample in the same second
    heartbeat_phase: I64

    def take(self, index: I64 | slice) -> VehicleParams:
        values: dict[str, Any] = {
            f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)
        }
        return VehicleParams(**values)

    def __len__(self) -> int:
        return len(self.model)


def _allocate(n: int, shares: list[float], rng: np.random.Generator) -> I64:
    """Category per item with counts as close to ``shares`` as integers allow, shuffled."""
    exact = np.asarray(shares) * n
    counts = np.floor(exact).astype(np.int64)
    rest = n - int(counts.sum())
    counts[np.argsort(-(exact - counts), kind="stable")[:rest]] += 1
    return np.asarray(rng.permutation(np.repeat(np.arange(len(shares)), counts)), dtype=np.int64)


def build_fleet(
    scenario: Scenario, rng: np.random.Generator
) -> tuple[list[Vehicle], VehicleParams]:
    """Draw the fleet: identity and inventory of each vehicle, and its hidden parameters."""
    fleet = scenario.fleet
    n = fleet.vehicles
    models, regions = fleet.models, fleet.regions
    model = _allocate(n, [m.share for m in models], rng)
    region = _allocate(n, [r.share for r in regions], rng)
    year = np.array([rng.choice(models[m].model_years) for m in model], dtype=np.int64)
    serials = rng.choice(900_000, size=n, replace=False) + 100_000
    age = np.maximum(
        scenario.start.year
        + scenario.start.timetuple().tm_yday / 365.25
        - year
        - rng.uniform(0.0, 1.0, n),
        0.05,
    )

    vehicles: list[Vehicle] = []
    train_pick = rng.choice(4, size=(n, len(ECU_NAMES)), p=_TRAIN_WEIGHTS)
    for i in range(n):
        spec = models[model[i]]
        plant = _VIN_LETTERS[int(model[i]) % len(_VIN_LETTERS)]
        vin = make_vin(spec.wmi, spec, int(year[i]), plant, int(serials[i]))
        rev = hardware_revision(int(year[i]))
        ecus = []
        for j, name in enumerate(ECU_NAMES):
            train = SOFTWARE_TRAINS[name]
            pick = int(train_pick[i, j])
            if rev == "A":  # first-generation hardware cannot take the newest release
                pick = min(pick, len(train) - 2)
            ecus.append(Ecu(name, f"{model_code(spec.name)}-{name}-{rev}", train[pick]))
        vehicles.append(Vehicle(vin, spec.name, int(year[i]), regions[region[i]].name, tuple(ecus)))

    def per_model(attr: str) -> F64:
        return f64([float(getattr(models[m], attr)) for m in model])

    def per_region(get: Any) -> F64:
        return f64([float(get(regions[r])) for r in region])

    cap = per_model("battery_kwh")
    voltage = per_model("voltage_v")
    n_series = np.where(voltage > 600, 192.0, 96.0)
    mass = f64([models[m].kerb_mass_kg for m in model]) + 80.0 + rng.uniform(0.0, 150.0, n)
    cda = 0.45 + 0.0028 * cap + rng.uniform(-0.03, 0.03, n)
    crr = rng.uniform(0.008, 0.011, n)
    motor_w = per_model("motor_kw") * 1000.0
    consumption = per_model("consumption_kwh_per_100km")
    cons_factor = consumption / reference_consumption(mass, cda, crr)
    radius = per_region(lambda r: r.radius_km)

    commuter = rng.random(n) < 0.65
    commute_min = rng.uniform(12.0, 45.0, n)
    commute_kind = np.where(commute_min < 20, 0, np.where(commute_min < 32, 1, 2))
    commute_kind = np.where((commute_kind == 2) & (rng.random(n) < 0.4), 1, commute_kind)
    home_r = radius * 0.8 * np.sqrt(rng.random(n))
    home_a = rng.uniform(0.0, 2.0 * np.pi, n)
    home_x, home_y = home_r * np.cos(home_a), home_r * np.sin(home_a)
    commute_km = commute_min / 60.0 * np.array([24.0, 42.0, 70.0])[commute_kind] / 1.35
    work_a = rng.uniform(0.0, 2.0 * np.pi, n)
    work_x, work_y = home_x + commute_km * np.cos(work_a), home_y + commute_km * np.sin(work_a)
    far = np.hypot(work_x, work_y) > radius * 1.3  # keep workplaces inside the region
    work_x = np.where(far, home_x - commute_km * np.cos(work_a), work_x)
    work_y = np.where(far, home_y - commute_km * np.sin(work_a), work_y)

    home_kw = np.where(rng.random(n) < 0.75, rng.choice([7.4, 11.0], n), 0.0)
    scheduled = rng.random(n) < 0.4
    pad_front = rng.uniform(5.0, 70.0, n)
    pad0 = np.stack([pad_front, pad_front, 0.7 * pad_front, 0.7 * pad_front], axis=1) + rng.uniform(
        -2.0, 2.0, (n, 4)
    )
    placard = per_model("tyre_placard_kpa")
    tyre_set = placard[:, None] * rng.uniform(0.9, 1.05, n)[:, None] + rng.uniform(-4, 4, (n, 4))
    tired_lv = rng.random(n) < 0.12  # old but working 12 V batteries: normal variation
    lv_rest = np.where(tired_lv, rng.uniform(12.25, 12.45, n), rng.uniform(12.45, 12.8, n))
    dt = scenario.sample_interval_s
    params = VehicleParams(
        model=model,
        region=region,
        model_year=year,
        offset_s=per_region(lambda r: r.offset_h * 3600.0),
        lat0=per_region(lambda r: r.lat),
        lon0=per_region(lambda r: r.lon),
        radius_km=radius,
        climate_mean=per_region(lambda r: r.climate.mean_c),
        climate_seasonal=per_region(lambda r: r.climate.seasonal_amplitude_c),
        climate_diurnal=per_region(lambda r: r.climate.diurnal_amplitude_c),
        southern=per_region(lambda r: r.lat) < 0,
        climate_offset=rng.normal(0.0, 0.7, n),
        cap_kwh=cap,
        n_series=n_series,
        r_pack=n_series / 96.0 * rng.uniform(0.055, 0.075, n) * (1.0 + 0.03 * age),
        p_max_w=motor_w,
        regen_max_w=np.minimum(0.45 * motor_w, 150_000.0),
        mass_kg=mass,
        cda=cda,
        crr=crr,
        cons_factor=cons_factor,
        rated_kwh_km=consumption / 100.0,
        dc_max_kw=per_model("dc_max_kw") * rng.uniform(0.85, 1.0, n),
        home_kw=home_kw,
        offpeak_h=np.where(scheduled & (home_kw > 0), rng.uniform(21.5, 23.5, n), np.nan),
        charge_threshold=rng.uniform(0.35, 0.75, n),
        charge_target=rng.choice([0.8, 0.85, 0.9, 0.95], n, p=[0.35, 0.25, 0.3, 0.1]),
        heat_pump=(year >= 2023) | (rng.random(n) < 0.2),
        commuter=commuter,
        commute_min=commute_min,
        commute_kind=np.asarray(commute_kind, dtype=np.int64),
        depart_h=rng.uniform(6.6, 8.8, n),
        return_h=rng.uniform(16.2, 18.6, n),
        trip_rate=rng.uniform(0.4, 2.2, n),
        accel=rng.uniform(1.2, 2.5, n),
        decel=rng.uniform(1.5, 2.8, n),
        speed_factor=rng.uniform(0.92, 1.08, n),
        home_x=home_x,
        home_y=home_y,
        work_x=work_x,
        work_y=work_y,
        odo0_km=age * rng.uniform(6_000.0, 20_000.0, n),
        soc0=rng.uniform(0.45, 0.9, n),
        soh0=np.clip(100.0 - 1.8 * age - rng.uniform(0.0, 2.0, n), 80.0, 100.0),
        pad0=np.clip(pad0, 1.0, 78.0),
        tyre_set_kpa=tyre_set,
        tyre_leak_kpa_day=rng.uniform(0.15, 0.7, n),
        placard_kpa=placard,
        lv_rest_v=lv_rest,
        lv_drain_v_day=rng.uniform(0.005, 0.03, n),
        cool_eff=rng.uniform(0.85, 1.15, n),
        cell_spread_v=rng.uniform(0.003, 0.012, n) * (1.0 + 0.08 * age),
        sample_phase_s=rng.integers(0, dt, n),
        heartbeat_phase=rng.integers(0, scenario.heartbeat_interval_s // dt, n),
    )
    return vehicles, params


def reference_consumption(mass_kg: F64, cda: F64, crr: F64) -> F64:
    """kWh/100 km the drive model gives a car in mixed driving at mild temperature.

    Road load at a typical 15 m/s plus stop-and-go losses, fitted to what ``sim/drive.py``
    yields at 20 °C; used to scale each car's losses so that the fleet matches its models'
    rated consumption.
    """
    road_n = mass_kg * 9.81 * crr + 0.5 * 1.2 * cda * 15.0**2
    return f64(1.25 * (road_n * 100_000.0 / 3.6e6 / 0.88 + 0.0021 * mass_kg))
