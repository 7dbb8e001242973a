"""Automatic halt: the updated cohort against the not-yet-updated control cohort.

Wave membership is a seeded random permutation of the cohort, so at any moment the members
that have not installed the release are a randomised control for those that have. Each
look compares, from the campaign's start to now:

* event signals (rows of an events frame: ``vin``, ``ts``, ``signal``, optional ``count``):
  events of a vehicle after its install count for the updated cohort, before it (or with no
  install) for the control; exposure is vehicle-days on each side. Default signals: ``dtc``
  (every code), ``dtc_target_ecu`` (codes of the updated ECUs), ``boot_failure`` and
  ``ids_alert`` (security).
* ``install_failure``: failed installs among attempts (see :func:`stats.failure_test`).
* ``failure_risk`` when a risk frame (``vin``, ``ts``, ``risk``) is given: the per-vehicle
  mean predicted risk after the install against the control's over the same period.

A signal is judged only once the updated cohort has the minimum exposure; the p-values of
the judged signals go through Holm at the look's alpha (see :mod:`.stats`), and a rejected
null halts the campaign. Every number behind the decision is kept as evidence.

The power gate (:func:`power_checks`): before the next wave is released, every signal with a
declared minimum effect of interest must have enough exposure in the updated cohort that
this look would have halted a release adding that effect with the policy's power, at the
smallest level Holm can give it (the look's alpha over the number of signals — so the
computed power is a lower bound). Otherwise the wave soaks on (see
:meth:`.campaign.Campaign.monitor`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from fleetops.core.errors import ValidationError
from fleetops.ota.rollout import stats

DAY_S = 86_400.0
SECURITY_SIGNALS = frozenset({"ids_alert"})
DEFAULT_EVENT_SIGNALS: tuple[str, ...] = ("dtc", "dtc_target_ecu", "boot_failure", "ids_alert")
# The smallest regression each signal must be able to catch before a wave is widened
# (docs/ota-rollout.md, "Power gate"): extra events per vehicle-day for event signals, extra
# failure share over the acceptable one for installs, extra mean risk for failure_risk.
DEFAULT_MIN_EFFECTS: dict[str, float] = {
    "dtc": 0.25,
    "dtc_target_ecu": 0.1,
    "boot_failure": 0.04,
    "ids_alert": 0.1,
    "install_failure": 0.15,
    "failure_risk": 0.05,
}


@dataclass(frozen=True, slots=True)
class HaltPolicy:
    """How the campaign judges itself (defaults documented in docs/ota-rollout.md)."""

    alpha: float = 0.05  # campaign-wide chance of halting a release within the margins
    rate_margin: float = 0.25  # a rate up to 25 % above the control's is acceptable
    min_treated_vehicle_days: float = 30.0
    min_treated_vehicles: int = 10
    min_installs: int = 10
    acceptable_install_failure: float = 0.02
    install_reference: tuple[int, int] | None = None  # (failures, attempts) of a past release
    risk_margin: float = 0.02  # absolute, on a 0..1 risk score
    event_signals: tuple[str, ...] = DEFAULT_EVENT_SIGNALS
    power: float = 0.8  # wanted power at the minimum effects before a wave widens (0: off)
    min_effects: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIN_EFFECTS))
    max_power_wait_days: float = 14.0  # beyond the soak; then the campaign pauses for a human

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValidationError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.rate_margin < 0 or self.risk_margin < 0:
            raise ValidationError("margins must be >= 0")
        if not 0 <= self.acceptable_install_failure < 1:
            raise ValidationError("the acceptable install failure share must be in [0, 1)")
        if self.min_treated_vehicle_days <= 0 or self.min_treated_vehicles < 1:
            raise ValidationError("the minimum exposure must be positive")
        if self.min_installs < 1:
            raise ValidationError("min_installs must be at least 1")
        if not 0 <= self.power < 1:
            raise ValidationError(f"the gate's power must be in [0, 1), got {self.power}")
        if self.max_power_wait_days < 0:
            raise ValidationError("max_power_wait_days cannot be negative")
        known = {*self.event_signals, "install_failure", "failure_risk"}
        for signal, effect in self.min_effects.items():
            if signal not in known:
                raise ValidationError(
                    f"minimum effect for {signal!r}, which is not monitored ({sorted(known)})"
                )
            if not effect > 0:
                raise ValidationError(f"the minimum effect of {signal} must be > 0, got {effect}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["event_signals"] = list(self.event_signals)
        d["min_effects"] = dict(self.min_effects)
        d["install_reference"] = (
            None if self.install_reference is None else list(self.install_reference)
        )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HaltPolicy:
        d = dict(d)
        if d.get("install_reference") is not None:
            d["install_reference"] = tuple(d["install_reference"])
        if "event_signals" in d:
            d["event_signals"] = tuple(d["event_signals"])
        return cls(**d)


@dataclass(frozen=True, slots=True)
class SignalResult:
    """One signal at one look: the evidence a halt carries."""

    signal: str
    kind: str  # health | security
    judged: bool  # False: below the minimum exposure (no p-value)
    treated_count: float
    treated_exposure: float  # vehicle-days, or install attempts, or vehicles (risk)
    control_count: float
    control_exposure: float
    treated_rate: float
    control_rate: float
    p_value: float
    threshold: float  # what p_value was compared with (Holm at the look's alpha)
    significant: bool
    method: str
    margin: float
    treated_vins: list[str] = field(default_factory=list)  # updated vehicles with the signal
    spread: float = math.nan  # per-vehicle SD of the risk (failure_risk only; for its power)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    """One look: every signal's comparison and whether the campaign must halt."""

    look: int
    time: float  # epoch seconds
    alpha_look: float
    treated_vehicles: int
    control_vehicles: int
    results: tuple[SignalResult, ...]

    @property
    def halt(self) -> bool:
        return any(r.significant for r in self.results)

    @property
    def significant(self) -> list[SignalResult]:
        return [r for r in self.results if r.significant]

    def to_dict(self) -> dict[str, Any]:
        return {
            "look": self.look,
            "time": self.time,
            "alpha_look": self.alpha_look,
            "treated_vehicles": self.treated_vehicles,
            "control_vehicles": self.control_vehicles,
            "halt": self.halt,
            "results": [r.to_dict() for r in self.results],
        }


def _epoch(col: str) -> pl.Expr:
    """Seconds since the epoch from a datetime or numeric column."""
    return pl.col(col)


def _ts_seconds(frame: pl.DataFrame, col: str = "ts") -> pl.DataFrame:
    dtype = frame.schema[col]
    if isinstance(dtype, pl.Datetime):
        return frame.with_columns((pl.col(col).dt.epoch("us").cast(pl.Float64) / 1e6).alias(col))
    if dtype.is_numeric():
        return frame.with_columns(pl.col(col).cast(pl.Float64))
    raise ValidationError(f"column {col!r} must be a datetime or epoch seconds, got {dtype}")


def evaluate(
    *,
    vins: npt.NDArray[np.str_] | list[str],
    installed_at: npt.NDArray[np.float64],
    start: float,
    now: float,
    events: pl.DataFrame | None,
    install_attempts: int,
    install_failures: int,
    policy: HaltPolicy,
    look: int,
    risk: pl.DataFrame | None = None,
) -> HealthReport:
    """Compare updated and control vehicles from ``start`` to ``now`` (epoch seconds).

    ``vins`` are the cohort's vehicles and ``installed_at`` when each installed the release
    (NaN: not installed, or not successfully).
    """
    if now <= start:
        raise ValidationError("a look must come after the campaign's start")
    vin_list = [str(v) for v in vins]
    inst = np.asarray(installed_at, dtype=np.float64)
    if inst.shape != (len(vin_list),):
        raise ValidationError("installed_at must give one time per VIN")
    treated_mask = np.isfinite(inst) & (inst <= now)
    t_start = np.where(treated_mask, np.maximum(inst, start), now)
    treated_exposure = float(np.sum(now - t_start[treated_mask])) / DAY_S
    control_exposure = float(np.sum(t_start - start)) / DAY_S
    n_treated = int(treated_mask.sum())
    n_control = int(np.sum(~treated_mask))
    alpha_look = stats.look_alpha(policy.alpha, look)
    enough = (
        n_treated >= policy.min_treated_vehicles
        and treated_exposure >= policy.min_treated_vehicle_days
        and control_exposure > 0
    )

    pending: list[dict[str, Any]] = []
    cohort = pl.DataFrame(
        {"vin": vin_list, "installed_at": np.where(treated_mask, inst, np.inf)},
        schema={"vin": pl.String, "installed_at": pl.Float64},
    )
    counts: dict[str, tuple[float, float, list[str]]] = {}
    if events is not None and not events.is_empty():
        for col in ("vin", "ts", "signal"):
            if col not in events.columns:
                raise ValidationError(f"the events frame lacks column {col!r}")
        ev = _ts_seconds(events)
        if "count" not in ev.columns:
            ev = ev.with_columns(pl.lit(1.0).alias("count"))
        ev = (
            ev.filter((pl.col("ts") >= start) & (pl.col("ts") <= now))
            .join(cohort, on="vin", how="inner")
            .with_columns((pl.col("ts") >= pl.col("installed_at")).alias("treated"))
        )
        agg = ev.group_by("signal", "treated").agg(pl.col("count").sum())
        vins_by = (
            ev.filter(pl.col("treated"))
            .group_by("signal")
            .agg(pl.col("vin").unique().sort().head(50))
        )
        for signal in policy.event_signals:
            sub = agg.filter(pl.col("signal") == signal)
            t = float(sub.filter(pl.col("treated"))["count"].sum())
            c = float(sub.filter(~pl.col("treated"))["count"].sum())
            names = vins_by.filter(pl.col("signal") == signal)["vin"].to_list()
            counts[signal] = (t, c, list(names[0]) if names else [])
    for signal in policy.event_signals:
        t, c, names = counts.get(signal, (0.0, 0.0, []))
        entry: dict[str, Any] = {
            "signal": signal,
            "kind": "security" if signal in SECURITY_SIGNALS else "health",
            "treated_count": t,
            "treated_exposure": treated_exposure,
            "control_count": c,
            "control_exposure": control_exposure,
            "treated_rate": t / treated_exposure if treated_exposure > 0 else math.nan,
            "control_rate": c / control_exposure if control_exposure > 0 else math.nan,
            "margin": policy.rate_margin,
            "treated_vins": names,
        }
        if enough:
            res = stats.rate_test(
                round(t), treated_exposure, round(c), control_exposure, policy.rate_margin
            )
            entry.update(judged=True, p_value=res.p_value, method=res.method)
        else:
            entry.update(judged=False, p_value=math.nan, method="below minimum exposure")
        pending.append(entry)

    install_entry: dict[str, Any] = {
        "signal": "install_failure",
        "kind": "health",
        "treated_count": float(install_failures),
        "treated_exposure": float(install_attempts),
        "control_count": float(policy.install_reference[0])
        if policy.install_reference
        else math.nan,
        "control_exposure": float(policy.install_reference[1])
        if policy.install_reference
        else math.nan,
        "treated_rate": install_failures / install_attempts if install_attempts else math.nan,
        "control_rate": (
            policy.install_reference[0] / policy.install_reference[1]
            if policy.install_reference
            else policy.acceptable_install_failure
        ),
        "margin": 0.0 if policy.install_reference else policy.acceptable_install_failure,
        "treated_vins": [],
    }
    if install_attempts >= policy.min_installs:
        res = stats.failure_test(
            install_failures,
            install_attempts,
            policy.acceptable_install_failure,
            policy.install_reference,
        )
        install_entry.update(judged=True, p_value=res.p_value, method=res.method)
    else:
        install_entry.update(judged=False, p_value=math.nan, method="below minimum installs")
    pending.append(install_entry)

    if risk is not None and not risk.is_empty():
        pending.append(_risk_entry(risk, cohort, start, now, policy, enough))

    judged = [i for i, e in enumerate(pending) if e["judged"]]
    rejected, thresholds = stats.holm([pending[i]["p_value"] for i in judged], alpha_look)
    for e in pending:
        e.update(significant=False, threshold=math.nan)
    for k, i in enumerate(judged):
        pending[i].update(significant=rejected[k], threshold=thresholds[k])
    return HealthReport(
        look=look,
        time=now,
        alpha_look=alpha_look,
        treated_vehicles=n_treated,
        control_vehicles=n_control,
        results=tuple(SignalResult(**e) for e in pending),
    )


def _risk_entry(
    risk: pl.DataFrame,
    cohort: pl.DataFrame,
    start: float,
    now: float,
    policy: HaltPolicy,
    enough: bool,
) -> dict[str, Any]:
    for col in ("vin", "ts", "risk"):
        if col not in risk.columns:
            raise ValidationError(f"the risk frame lacks column {col!r}")
    r = (
        _ts_seconds(risk)
        .filter((pl.col("ts") >= start) & (pl.col("ts") <= now))
        .join(cohort, on="vin", how="inner")
        .with_columns((pl.col("ts") >= pl.col("installed_at")).alias("treated"))
        .group_by("vin", "treated")
        .agg(pl.col("risk").cast(pl.Float64).mean())
    )
    t = r.filter(pl.col("treated"))["risk"].to_numpy()
    c = r.filter(~pl.col("treated"))["risk"].to_numpy()
    entry: dict[str, Any] = {
        "signal": "failure_risk",
        "kind": "health",
        "treated_count": float(t.sum()),
        "treated_exposure": float(t.size),
        "control_count": float(c.sum()),
        "control_exposure": float(c.size),
        "treated_rate": float(t.mean()) if t.size else math.nan,
        "control_rate": float(c.mean()) if c.size else math.nan,
        "margin": policy.risk_margin,
        "treated_vins": [],
        "spread": float(np.std(np.concatenate([t, c]), ddof=1)) if t.size + c.size >= 2 else 0.0,
    }
    if enough and t.size >= 2 and c.size >= 2:
        res = stats.mean_shift_test(t, c, policy.risk_margin)
        entry.update(judged=True, p_value=res.p_value, method=res.method)
    else:
        entry.update(judged=False, p_value=math.nan, method="below minimum exposure")
    return entry


@dataclass(frozen=True, slots=True)
class PowerCheck:
    """Could this look have caught a signal's minimum effect of interest?"""

    signal: str
    unit: str  # what the exposure counts: vehicle-days, installs or vehicles
    min_effect: float
    power: float  # now, at the level Holm gives the signal at worst
    exposure: float  # the updated cohort's, now
    needed: float  # exposure at which the power is reached (inf: not by waiting)
    powered: bool
    method: str

    def describe(self) -> str:
        needed = "unreachable" if math.isinf(self.needed) else f"{self.needed:.0f} {self.unit}"
        return (
            f"signal {self.signal}, exposure needed {needed}, have {self.exposure:.0f} "
            f"(power {self.power:.0%} for +{self.min_effect:g})"
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()
        }


def _needed(power: Callable[[float], float], have: float, target: float, limit: float) -> float:
    """The smallest exposure (from ``have`` on) with ``power >= target``, to about 1 %.

    Discrete tests make the power a slightly saw-toothed function of the exposure, so this is
    the first crossing found by doubling then bisecting, not a guaranteed minimum."""
    lo = hi = max(have, 1.0)
    while power(hi) < target:
        lo, hi = hi, hi * 2.0
        if hi > limit:
            return math.inf
    if hi == lo:
        return hi
    while hi - lo > max(0.01 * lo, 0.5):
        mid = (lo + hi) / 2.0
        lo, hi = (lo, mid) if power(mid) >= target else (mid, hi)
    return hi


def power_checks(
    report: HealthReport,
    policy: HaltPolicy,
    *,
    released_members: int,
    wave_attempts: int,
    wave_size: int,
    error_threshold: float,
) -> list[PowerCheck]:
    """The power gate's view of one look: one check per signal with a minimum effect.

    ``released_members``: ECUs in the released waves (the most install attempts that waiting
    can bring); ``wave_attempts`` / ``wave_size`` / ``error_threshold``: the current wave's,
    since its error threshold halts on install failures too and counts as detection.
    """
    level = report.alpha_look / max(1, len(report.results))
    checks: list[PowerCheck] = []
    for r in report.results:
        effect = policy.min_effects.get(r.signal)
        if effect is None:
            continue
        if r.signal == "install_failure":
            checks.append(
                _install_check(
                    r,
                    policy,
                    effect,
                    level,
                    released_members,
                    wave_attempts,
                    wave_size,
                    error_threshold,
                )
            )
        elif r.signal == "failure_risk":
            checks.append(_risk_check(r, policy, effect, level, released_members))
        else:
            checks.append(_rate_check(r, policy, effect, level))
    return checks


def _rate_check(r: SignalResult, policy: HaltPolicy, effect: float, level: float) -> PowerCheck:
    method = "exact conditional binomial power at the observed control rate"
    if not r.control_exposure > 0:
        return PowerCheck(
            r.signal, "vehicle-days", effect, 0.0, r.treated_exposure, math.inf, False, method
        )
    control_rate = r.control_count / r.control_exposure

    def power(e: float) -> float:
        return stats.rate_power(
            e, control_rate, r.control_exposure, effect, policy.rate_margin, level
        )

    now = power(r.treated_exposure) if r.judged else 0.0
    needed = max(
        _needed(power, r.treated_exposure, policy.power, 1e7), policy.min_treated_vehicle_days
    )
    return PowerCheck(
        r.signal,
        "vehicle-days",
        effect,
        now,
        r.treated_exposure,
        needed,
        r.judged and now >= policy.power,
        method,
    )


def _install_check(
    r: SignalResult,
    policy: HaltPolicy,
    effect: float,
    level: float,
    released_members: int,
    wave_attempts: int,
    wave_size: int,
    error_threshold: float,
) -> PowerCheck:
    ref = policy.install_reference
    share = (ref[0] / ref[1] if ref else policy.acceptable_install_failure) + effect
    attempts = int(r.treated_exposure)
    earlier = attempts - wave_attempts  # attempts of the waves before the current one

    def test_power(n: float) -> float:
        n_int = math.ceil(n)
        if n_int < policy.min_installs:
            return 0.0
        return stats.failure_power(
            n_int, share, policy.acceptable_install_failure, level, policy.install_reference
        )

    # The wave's error threshold halts on more than threshold × size failures in the wave.
    in_wave = np.arange(wave_attempts, wave_size + 1)
    limit = math.floor(error_threshold * wave_size)
    by_threshold = stats.exceed_probability(limit, in_wave, share)
    now = max(test_power(attempts), float(by_threshold[0]) if in_wave.size else 0.0)
    reach = np.flatnonzero(by_threshold >= policy.power)
    via_threshold = earlier + int(in_wave[reach[0]]) if reach.size else math.inf
    via_test = _needed(test_power, attempts, policy.power, 1e7)
    needed = float(min(via_test, via_threshold))
    if needed > released_members:
        needed = math.inf  # more attempts than the released waves hold: soaking cannot help
    return PowerCheck(
        r.signal,
        "installs",
        effect,
        now,
        float(attempts),
        needed,
        now >= policy.power,
        "exact binomial / Fisher power, or the wave's error threshold",
    )


def _risk_check(
    r: SignalResult, policy: HaltPolicy, effect: float, level: float, released_members: int
) -> PowerCheck:
    n_c = int(r.control_exposure)
    sd = 0.0 if math.isnan(r.spread) else r.spread

    def power(n: float) -> float:
        return stats.mean_shift_power(math.ceil(n), n_c, sd, effect, policy.risk_margin, level)

    now = power(r.treated_exposure) if r.judged else 0.0
    needed = _needed(power, r.treated_exposure, policy.power, float(max(released_members, 1)))
    return PowerCheck(
        r.signal,
        "vehicles",
        effect,
        now,
        r.treated_exposure,
        needed,
        r.judged and now >= policy.power,
        "Welch t power, normal approximation at the observed SD",
    )
