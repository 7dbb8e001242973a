"""Trips of a local day and their second-by-second drive, aggregated to sample cells.

A trip is a chain of *legs*: accelerate to a cruise speed, cruise, and optionally brake to a
stop and wait (urban legs stop often, highway legs never). Speeds between leg knots are
piecewise linear, with slow random undulation on top; every second of every trip of the
day is computed at once with ``np.interp`` over one concatenated time axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fleetops.sim.physics import AIR_DENSITY, F64, GRAVITY, I64, Bool, f64, smooth_noise
from fleetops.sim.vehicles import VehicleParams

MAX_TRIPS = 6  # per vehicle and local day
URBAN, SUBURBAN, HIGHWAY = 0, 1, 2
TO_WORK, TO_HOME, OTHER = 0, 1, 2
MIN_GAP_S = 600  # parked at least this long between two trips
GEAR_EFFICIENCY = 0.92
MOTOR_EFFICIENCY = 0.90
REGEN_EFFICIENCY = 0.75
WHEEL_RADIUS_M = 0.34
GEAR_RATIO = 9.0

# Per leg kind: cruise speed range (km/h), mean extra cruise time (s), minimum cruise (s),
# chance of stopping after the leg, longest stop (s).
_SPEED_KMH = ((22.0, 52.0), (55.0, 88.0), (100.0, 130.0))
_CRUISE_MEAN_S = (35.0, 90.0, 300.0)
_CRUISE_MIN_S = (8.0, 20.0, 60.0)
_STOP_P = (0.55, 0.25, 0.0)
_STOP_MAX_S = (45.0, 30.0, 0.0)
_LEG_MEAN_S = np.array([75.0, 150.0, 400.0])


@dataclass(slots=True)
class Candidates:
    """Trips a vehicle would like to make today, ``(vehicles, MAX_TRIPS)``, by start time."""

    start_s: F64  # local seconds after midnight; inf: no trip
    target_s: F64  # intended duration
    kind: I64
    purpose: I64


def candidate_trips(
    rng: np.random.Generator, p: VehicleParams, weekend: Bool, commute_today: Bool
) -> Candidates:
    """Commutes on workdays, errands, and longer leisure trips at weekends."""
    n = len(p)
    k_other = MAX_TRIPS - 2
    start_h = np.full((n, MAX_TRIPS), np.inf)
    target_min = np.zeros((n, MAX_TRIPS))
    kind = np.zeros((n, MAX_TRIPS), dtype=np.int64)
    purpose = np.full((n, MAX_TRIPS), OTHER, dtype=np.int64)

    start_h[:, 0] = np.where(commute_today, p.depart_h + rng.normal(0.0, 0.25, n), np.inf)
    start_h[:, 1] = np.where(commute_today, p.return_h + rng.normal(0.0, 0.4, n), np.inf)
    target_min[:, :2] = p.commute_min[:, None] * rng.uniform(0.85, 1.3, (n, 2))  # traffic
    kind[:, :2] = p.commute_kind[:, None]
    purpose[:, 0], purpose[:, 1] = TO_WORK, TO_HOME

    rate = np.where(weekend, 0.9 * p.trip_rate, np.where(commute_today, 0.45, 1.0) * p.trip_rate)
    n_other = np.minimum(rng.poisson(rate), k_other)
    has = np.arange(k_other)[None, :] < n_other[:, None]
    shape = (n, k_other)
    lunch = rng.random(shape) < 0.3
    workday_errand = np.where(lunch, rng.normal(12.3, 0.4, shape), rng.uniform(18.6, 21.5, shape))
    when = np.where(
        weekend[:, None],
        rng.uniform(9.0, 19.5, shape),
        np.where(commute_today[:, None], workday_errand, rng.uniform(8.5, 20.0, shape)),
    )
    # At most one long leisure drive a day, sized so that a charged battery covers it.
    leisure = weekend[:, None] & (np.arange(k_other) == 0)[None, :] & (rng.random(shape) < 0.35)
    longest = np.minimum(100.0, 1.1 * p.cap_kwh)[:, None]
    start_h[:, 2:] = np.where(has, when, np.inf)
    target_min[:, 2:] = np.where(
        leisure,
        rng.uniform(0.4, 1.0, shape) * longest,
        rng.uniform(8.0, 35.0, shape),
    )
    kind[:, 2:] = np.where(leisure, HIGHWAY, np.where(rng.random(shape) < 0.7, URBAN, SUBURBAN))

    order = np.argsort(start_h, axis=1, kind="stable")
    return Candidates(
        start_s=np.take_along_axis(start_h, order, axis=1) * 3600.0,
        target_s=np.take_along_axis(target_min, order, axis=1) * 60.0,
        kind=np.take_along_axis(kind, order, axis=1),
        purpose=np.take_along_axis(purpose, order, axis=1),
    )


@dataclass(slots=True)
class Legs:
    """The legs of all candidate trips, flat; ``trip`` is the flat candidate index."""

    trip: I64
    v_prev: F64  # m/s at the start of the leg
    v: F64  # cruise speed
    v_end: F64  # 0 if the leg ends in a stop
    t_accel: F64
    t_cruise: F64
    t_brake: F64
    t_stop: F64
    start: F64  # seconds after the trip's start


def make_legs(rng: np.random.Generator, cand: Candidates, p: VehicleParams) -> tuple[Legs, F64]:
    """Legs of every candidate trip, and each trip's duration (0 for none)."""
    n, k = cand.start_s.shape
    flat = np.flatnonzero(np.isfinite(cand.start_s).ravel())
    if flat.size == 0:
        empty = np.zeros(0)
        none = Legs(np.zeros(0, dtype=np.int64), *([empty] * 8))
        return none, np.zeros((n, k))
    trip_kind = cand.kind.ravel()[flat]
    target = cand.target_s.ravel()[flat]
    vehicle = flat // k
    n_legs = np.where(
        trip_kind == HIGHWAY,
        4 + np.maximum(1, np.round((target - 4 * _LEG_MEAN_S[URBAN]) / _LEG_MEAN_S[HIGHWAY])),
        np.clip(np.round(target / _LEG_MEAN_S[trip_kind]), 2, 400),
    ).astype(np.int64)
    trip_of_leg = np.repeat(np.arange(flat.size), n_legs)
    first = np.concatenate(([0], np.cumsum(n_legs)[:-1]))
    pos = np.arange(trip_of_leg.size) - first[trip_of_leg]
    count = n_legs[trip_of_leg]
    kind_of_trip = trip_kind[trip_of_leg]
    # Highway trips start and end in town; suburban ones leave and reach a street.
    edge = np.where(kind_of_trip == HIGHWAY, 2, np.where(kind_of_trip == SUBURBAN, 1, 0))
    leg_kind = np.where((pos < edge) | (pos >= count - edge), URBAN, kind_of_trip)
    veh = vehicle[trip_of_leg]
    m = trip_of_leg.size

    lo = np.array([s[0] for s in _SPEED_KMH])[leg_kind]
    hi = np.array([s[1] for s in _SPEED_KMH])[leg_kind]
    v = rng.uniform(lo, hi) * p.speed_factor[veh] / 3.6
    cruise = (
        np.array(_CRUISE_MIN_S)[leg_kind]
        + rng.exponential(1.0, m) * np.array(_CRUISE_MEAN_S)[leg_kind]
    )
    last = pos == count - 1
    stop = (rng.random(m) < np.array(_STOP_P)[leg_kind]) | last
    longest = np.maximum(np.array(_STOP_MAX_S)[leg_kind], 5.0)
    t_stop = np.where(stop & ~last, rng.uniform(5.0, longest), 0.0)  # a trip ends on arrival
    v_end = np.where(stop, 0.0, v)
    v_prev = np.zeros(m)
    v_prev[1:] = v_end[:-1]
    v_prev[pos == 0] = 0.0
    accel = p.accel[veh] * rng.uniform(0.75, 1.1, m) * np.where(v > 20.0, 0.6, 1.0)
    decel = p.decel[veh] * rng.uniform(0.75, 1.1, m)
    t_accel = np.abs(v - v_prev) / np.where(v >= v_prev, accel, decel)
    t_brake = np.where(stop, v / decel, 0.0)
    duration = t_accel + cruise + t_brake + t_stop
    ends = np.cumsum(duration)
    trip_end = ends[first + n_legs - 1]
    trip_start = np.concatenate(([0.0], trip_end[:-1]))
    start = ends - duration - trip_start[trip_of_leg]
    durations = np.zeros(n * k)
    durations[flat] = trip_end - trip_start
    legs = Legs(
        trip=flat[trip_of_leg],
        v_prev=v_prev,
        v=v,
        v_end=v_end,
        t_accel=t_accel,
        t_cruise=cruise,
        t_brake=t_brake,
        t_stop=t_stop,
        start=start,
    )
    return legs, durations.reshape(n, k)


@dataclass(slots=True)
class Schedule:
    """Trips kept for the day, ``(vehicles, MAX_TRIPS)``; kept trips come first, in order."""

    start: I64  # first cell; ``cells`` (the day's length) where none
    cells: I64  # cells the trip occupies; 0 where none
    valid: Bool

    @property
    def end(self) -> I64:
        return self.start + self.cells


def schedule_trips(cand: Candidates, duration_s: F64, dt: int, cells: int) -> Schedule:
    """Place trips on the cell grid without overlap; drop those that would pass midnight."""
    wanted = np.isfinite(cand.start_s)
    n_cells = np.ceil((duration_s + 1.0) / dt).astype(np.int64)  # ends standing, one spare second
    start = np.where(wanted, np.ceil(np.where(wanted, cand.start_s, 0.0) / dt), cells).astype(
        np.int64
    )
    gap = int(np.ceil(MIN_GAP_S / dt))
    for k in range(1, start.shape[1]):
        earliest = start[:, k - 1] + n_cells[:, k - 1] + gap
        start[:, k] = np.where(wanted[:, k], np.maximum(start[:, k], earliest), cells)
    valid = wanted & (start + n_cells <= cells - 1)  # the last cell of a day is parked
    return finish_schedule(start, n_cells, valid, cells)


def finish_schedule(start: I64, n_cells: I64, valid: Bool, cells: int) -> Schedule:
    """Keep only a leading run of valid trips (later trips start later, so none is lost)."""
    valid = np.logical_and.accumulate(valid, axis=1)
    return Schedule(
        start=np.where(valid, start, cells).astype(np.int64),
        cells=np.where(valid, n_cells, 0).astype(np.int64),
        valid=valid,
    )


@dataclass(slots=True)
class DriveCells:
    """Driving cells of the day, flat, ordered by vehicle, trip and time.

    Sums cover the cell's interval; ``*_inst`` values are at the sample instant (its start).
    """

    vehicle: I64
    column: I64  # cell index in the day grid
    trip: I64  # trip slot (0..MAX_TRIPS-1) of the vehicle
    first: Bool  # first cell of its trip
    distance_m: F64
    energy_j: F64  # drawn by the drive motor, net of regeneration (no HVAC)
    brake_j: F64  # dissipated by the friction brakes
    load_w: F64  # mean |motor shaft power|, heats motor and coolant
    v2_mean: F64  # mean squared speed, heats tyres
    v_inst: F64
    a_inst: F64
    p_mech_inst: F64
    p_elec_inst: F64


def drive_cells(
    rng: np.random.Generator,
    legs: Legs,
    sched: Schedule,
    p: VehicleParams,
    dt: int,
) -> DriveCells:
    """Second-by-second speed and longitudinal dynamics of the kept trips, per sample cell."""
    k = sched.valid.shape[1]
    kept_flat = sched.valid.ravel()
    trip_cells = sched.cells.ravel()[kept_flat]
    trip_vehicle = np.flatnonzero(kept_flat) // k
    trip_slot = np.flatnonzero(kept_flat) % k
    new_index = np.cumsum(kept_flat) - 1
    on = kept_flat[legs.trip]
    leg_trip = new_index[legs.trip[on]]

    seconds = trip_cells * dt
    total = int(seconds.sum())
    base = np.concatenate(([0], np.cumsum(seconds)[:-1])).astype(np.float64)
    t0 = base[leg_trip] + legs.start[on]
    t1 = t0 + legs.t_accel[on]
    t2 = t1 + legs.t_cruise[on]
    t3 = t2 + legs.t_brake[on]
    t4 = t3 + legs.t_stop[on]
    knot_t = np.stack([t0, t1, t2, t3, t4], axis=1).ravel()
    knot_v = np.stack(
        [legs.v_prev[on], legs.v[on], legs.v[on], legs.v_end[on], legs.v_end[on]], axis=1
    ).ravel()
    t = np.arange(total, dtype=np.float64)
    v = np.interp(t, knot_t, knot_v, left=0.0, right=0.0) if total else np.zeros(0)
    if total:  # drivers never hold a speed exactly; standing still stays exactly 0
        v = v * (1.0 + 0.035 * np.clip(smooth_noise(rng, total, 20), -2.5, 2.5))
    grade = 0.012 * smooth_noise(rng, total, 90) if total else np.zeros(0)

    sec_vehicle = np.repeat(trip_vehicle, seconds)
    mass = p.mass_kg[sec_vehicle]
    accel = np.zeros(total)
    accel[:-1] = np.diff(v)  # forward difference: a trip ends standing, so no leak across trips
    force = mass * accel + mass * GRAVITY * (p.crr[sec_vehicle] + grade)
    force += 0.5 * AIR_DENSITY * p.cda[sec_vehicle] * v * v
    p_wheel = force * v
    p_trac = np.minimum(np.maximum(p_wheel, 0.0) / GEAR_EFFICIENCY, p.p_max_w[sec_vehicle])
    p_regen = np.where(
        v > 1.5, np.maximum(np.minimum(p_wheel, 0.0), -p.regen_max_w[sec_vehicle]), 0.0
    )
    p_friction = np.minimum(p_wheel, 0.0) - p_regen
    p_mech = p_trac + p_regen
    p_elec = p_trac / MOTOR_EFFICIENCY * p.cons_factor[sec_vehicle] + p_regen * REGEN_EFFICIENCY

    def per_cell_sum(x: F64) -> F64:
        return f64(x.reshape(-1, dt).sum(axis=1))

    n_cells_total = total // dt
    cell_trip = np.repeat(np.arange(trip_cells.size), trip_cells)
    trip_first_cell = np.concatenate(([0], np.cumsum(trip_cells)[:-1]))
    within = np.arange(n_cells_total) - trip_first_cell[cell_trip]
    return DriveCells(
        vehicle=trip_vehicle[cell_trip],
        column=sched.start.ravel()[kept_flat][cell_trip] + within,
        trip=trip_slot[cell_trip],
        first=within == 0,
        distance_m=per_cell_sum(v),
        energy_j=per_cell_sum(p_elec),
        brake_j=per_cell_sum(-p_friction),
        load_w=per_cell_sum(np.abs(p_mech)) / dt,
        v2_mean=per_cell_sum(v * v) / dt,
        v_inst=f64(v[::dt]),
        a_inst=f64(accel[::dt]),
        p_mech_inst=f64(p_mech[::dt]),
        p_elec_inst=f64(p_elec[::dt]),
    )


def motor_rpm(speed_kmh: F64) -> F64:
    """Drive motor speed from vehicle speed through a single-speed reduction gear."""
    return f64(np.round(speed_kmh / 3.6 / (2.0 * np.pi * WHEEL_RADIUS_M) * 60.0 * GEAR_RATIO))
