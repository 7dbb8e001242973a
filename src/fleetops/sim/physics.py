"""Physical building blocks of the simulator, each vectorised over arrays.

Time grids are ``(vehicles, cells)`` arrays, one cell per sample interval of a local day.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

GRAVITY = 9.81
AIR_DENSITY = 1.2
TAPER_SOC = 0.8  # constant power below, constant-voltage taper above (as real chargers do)
KELVIN = 273.15
ATMOSPHERE_KPA = 101.325
MIN_TAU_S = 150.0  # keeps the closed-form EMA below float64 overflow over a whole day


def f64(values: Any) -> F64:
    """``values`` as a float64 array (numpy's own inference widens to Any)."""
    return np.asarray(values, dtype=np.float64)


def ema(target: F64, tau_s: F64 | float, y0: F64, dt: float) -> F64:
    """First-order lag of ``target`` along axis 1, with a time constant that may vary per cell.

    Solves ``y[c] = a[c] y[c-1] + (1 - a[c]) target[c]`` with ``y[-1] = y0`` in closed form
    (cumulative sums in log space) instead of a Python loop over cells.
    """
    rate = dt / np.maximum(np.broadcast_to(f64(tau_s), target.shape), MIN_TAU_S)
    log_a = np.cumsum(-rate, axis=1)  # log of the product of a over cells 0..c
    gain = -np.expm1(-rate)  # 1 - a
    weighted = np.exp(-log_a) * gain * target
    return f64(np.exp(log_a) * (y0[:, None] + np.cumsum(weighted, axis=1)))


def cell_ocv(soc: F64) -> F64:
    """Open-circuit voltage of one NMC cell group at state of charge ``soc`` (0-1)."""
    s = np.clip(soc, 0.0, 1.0)
    return f64(3.2 + s * (1.3 + s * (-0.95 + 0.6 * s)))  # monotonic: 3.2 V empty, 4.15 V full


def charge_soc(soc0: F64, elapsed_s: F64, rate: F64) -> F64:
    """State of charge after charging ``elapsed_s`` from ``soc0``.

    ``rate`` is the SoC gain per second at full power. Above ``TAPER_SOC`` power falls
    linearly with the SoC still to fill, so the SoC approaches 100 % exponentially.
    """
    rate = np.maximum(rate, 1e-12)
    to_taper = np.maximum(0.0, (TAPER_SOC - soc0) / rate)
    linear = soc0 + rate * elapsed_s
    taper_from = np.maximum(soc0, TAPER_SOC)
    k = rate / (1.0 - TAPER_SOC)
    tail = 1.0 - (1.0 - taper_from) * np.exp(-k * np.maximum(elapsed_s - to_taper, 0.0))
    return f64(np.where(elapsed_s < to_taper, linear, tail))


def time_to_soc(soc0: F64, target: F64, rate: F64) -> F64:
    """Seconds of charging from ``soc0`` to ``target`` (< 1); 0 where already there."""
    rate = np.maximum(rate, 1e-12)
    target = np.minimum(target, 0.99)
    to_taper = np.maximum(0.0, (np.minimum(target, TAPER_SOC) - soc0) / rate)
    taper_from = np.maximum(soc0, TAPER_SOC)
    in_taper = (
        (1.0 - TAPER_SOC) / rate * np.log(np.maximum(1.0 - taper_from, 1e-9) / (1.0 - target))
    )
    seconds = np.where(target <= TAPER_SOC, to_taper, to_taper + np.maximum(in_taper, 0.0))
    return f64(np.where(soc0 >= target, 0.0, seconds))


def charge_power_fraction(soc: F64) -> F64:
    """Share of the charger's power the battery accepts at ``soc`` (the taper)."""
    return f64(np.clip((1.0 - soc) / (1.0 - TAPER_SOC), 0.0, 1.0))


def pack_electrics(
    soc: F64, power_w: F64, n_series: F64, r_pack: F64, max_current_a: float = 950.0
) -> tuple[F64, F64, F64]:
    """Pack terminal voltage, current and power for a power demand (+ charging).

    Solves ``P = (V_oc + I R) I`` for ``I``; the current is capped as a BMS would, and
    the returned power is recomputed as ``V * I`` so the three signals always agree.
    """
    v_oc = n_series * cell_ocv(soc)
    disc = np.maximum(v_oc * v_oc + 4.0 * r_pack * power_w, 0.0)
    current = (np.sqrt(disc) - v_oc) / (2.0 * r_pack)
    current = np.clip(current, -max_current_a, max_current_a)
    voltage = v_oc + current * r_pack
    return f64(voltage), f64(current), f64(voltage * current)


def seasonal_temperature(t_abs_s: F64, mean_c: F64, seasonal_c: F64, southern: Bool) -> F64:
    """Daily-mean air temperature: coldest around 15 January (north; mid-July south)."""
    day_of_year = (t_abs_s / 86_400.0) % 365.25  # epoch day 0 is 1 January 1970
    season = np.cos(2.0 * np.pi * (day_of_year - 15.0) / 365.25)
    return f64(mean_c - seasonal_c * np.where(southern, -season, season))


def diurnal_cycle(local_hour: F64) -> F64:
    """-1 … 1 over the day, warmest at 15:00 local time."""
    return f64(np.cos(2.0 * np.pi * (local_hour - 15.0) / 24.0))


def ambient_temperature(
    t_abs_s: F64,
    mean_c: F64,
    seasonal_c: F64,
    diurnal_c: F64,
    offset_s: F64,
    southern: Bool,
) -> F64:
    """Climate part of the air temperature: seasonal and diurnal cycles (no weather)."""
    local_hour = ((t_abs_s + offset_s) % 86_400.0) / 3600.0
    seasonal = seasonal_temperature(t_abs_s, mean_c, seasonal_c, southern)
    return f64(seasonal + diurnal_c * diurnal_cycle(local_hour))


def daylight(local_hour: F64) -> F64:
    """0 at night, up to 1 around noon: drives solar gain in a parked cabin."""
    return f64(np.clip(np.sin(np.pi * (local_hour - 7.0) / 10.0), 0.0, 1.0))


def smooth_noise(rng: np.random.Generator, n: int, knot_every: int) -> F64:
    """Unit-variance-ish noise of ``n`` samples, linear between random knots."""
    knots = rng.standard_normal(n // knot_every + 2)
    return f64(np.interp(np.arange(n) / knot_every, np.arange(knots.size), knots))
