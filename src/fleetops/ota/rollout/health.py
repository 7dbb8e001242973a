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
"""

from __future__ import annotations

import math
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["event_signals"] = list(self.event_signals)
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
    }
    if enough and t.size >= 2 and c.size >= 2:
        res = stats.mean_shift_test(t, c, policy.risk_margin)
        entry.update(judged=True, p_value=res.p_value, method=res.method)
    else:
        entry.update(judged=False, p_value=math.nan, method="below minimum exposure")
    return entry
