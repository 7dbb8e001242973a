"""A campaign: a release rolled out to a cohort in waves, that halts itself on regressions.

States and transitions (every one recorded with time, actor, reason and any evidence)::

    draft ─start→ running ─pause→ paused ─resume→ running
                  running ─(auto-)halt→ halted ─resume (override)→ running
                  running ─(last wave done)→ completed
    draft|running|paused|halted ─cancel→ cancelled
    running|paused|halted|completed ─rollback→ rolled_back  (installed ECUs get the previous image)

Waves follow Eclipse hawkBit's rollout groups: each wave is a cumulative share of the
cohort with a *success threshold* (share of the wave installed before the next wave is
released, after a minimum soak time) and an *error threshold* (share of the wave whose
install failed that halts the campaign). Wave membership is a seeded random permutation of
the cohort, which makes the not-yet-updated members a randomised control (see
:mod:`.health`).

A *power gate* holds the next wave until the updated cohort is large enough that the halt
would have caught the policy's minimum effects of interest (:func:`.health.power_checks`):
the wave soaks on, and past ``HaltPolicy.max_power_wait_days`` (or at once, when soaking
cannot reach the power) the campaign pauses for a human, who resumes it to soak on or
waives the gate for that wave.
"""

from __future__ import annotations

import itertools
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from fleetops.core.errors import ValidationError
from fleetops.ota.rollout.cohort import CohortSpec, select_cohort
from fleetops.ota.rollout.health import DAY_S, HaltPolicy, HealthReport, evaluate, power_checks


class State(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    HALTED = "halted"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"


_ALLOWED: dict[State, frozenset[State]] = {
    State.DRAFT: frozenset({State.RUNNING, State.CANCELLED}),
    State.RUNNING: frozenset(
        {State.PAUSED, State.HALTED, State.CANCELLED, State.COMPLETED, State.ROLLED_BACK}
    ),
    State.PAUSED: frozenset({State.RUNNING, State.HALTED, State.CANCELLED, State.ROLLED_BACK}),
    State.HALTED: frozenset({State.RUNNING, State.CANCELLED, State.ROLLED_BACK}),
    State.COMPLETED: frozenset({State.ROLLED_BACK}),
    State.CANCELLED: frozenset(),
    State.ROLLED_BACK: frozenset(),
}


class TransitionError(ValidationError):
    """A state change the campaign's state does not allow."""


@dataclass(frozen=True, slots=True)
class Image:
    """A target of the image repository: its name and version."""

    name: str
    version: str


@dataclass(frozen=True, slots=True)
class Release:
    """What a campaign installs: one image per ECU hardware id, and what to roll back to."""

    name: str
    images: dict[str, Image]
    rollback: dict[str, Image] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.images:
            raise ValidationError(f"release {self.name!r} has no image")

    @property
    def version(self) -> str:
        versions = sorted({i.version for i in self.images.values()})
        return versions[0] if len(versions) == 1 else ",".join(versions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "images": {h: [i.name, i.version] for h, i in self.images.items()},
            "rollback": {h: [i.name, i.version] for h, i in self.rollback.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Release:
        return cls(
            d["name"],
            {h: Image(*v) for h, v in d["images"].items()},
            {h: Image(*v) for h, v in d.get("rollback", {}).items()},
        )


@dataclass(frozen=True, slots=True)
class Wave:
    """A rollout group: the cumulative share of the cohort it brings the release to."""

    share: float
    success_threshold: float = 0.9
    error_threshold: float = 0.05
    min_soak_days: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise ValidationError(f"a wave's share must be in (0, 1], got {self.share}")
        if not 0 < self.success_threshold <= 1:
            raise ValidationError(
                f"a success threshold must be in (0, 1], got {self.success_threshold}"
            )
        if not 0 <= self.error_threshold < 1:
            raise ValidationError(
                f"an error threshold must be in [0, 1), got {self.error_threshold}"
            )
        if self.min_soak_days < 0:
            raise ValidationError("a wave's soak time cannot be negative")


DEFAULT_WAVES: tuple[Wave, ...] = (
    Wave(0.01, min_soak_days=3.0),
    Wave(0.10, min_soak_days=2.0),
    Wave(0.50, min_soak_days=2.0),
    Wave(1.00, min_soak_days=0.0),
)


def waves_from_shares(
    shares: list[float],
    success_threshold: float = 0.9,
    error_threshold: float = 0.05,
    soak_days: float = 2.0,
) -> tuple[Wave, ...]:
    """Waves from cumulative shares (percent or fractions); the last must reach the cohort."""
    if not shares:
        raise ValidationError("give at least one wave")
    frac = [s / 100.0 if max(shares) > 1 else s for s in shares]
    if any(b <= a for a, b in itertools.pairwise(frac)):
        raise ValidationError(f"wave shares must increase, got {shares}")
    if not math.isclose(frac[-1], 1.0):
        raise ValidationError(
            f"the last wave must reach the whole cohort (100 %), got {shares[-1]}"
        )
    return tuple(
        Wave(f, success_threshold, error_threshold, soak_days if i < len(frac) - 1 else 0.0)
        for i, f in enumerate(frac)
    )


def _epoch(t: datetime | float | None) -> float:
    if t is None:
        return datetime.now(UTC).timestamp()
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValidationError("times must be timezone-aware")
        return t.timestamp()
    return float(t)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


@dataclass
class Campaign:
    """A campaign and its runtime state; :class:`~.store.CampaignStore` persists it."""

    campaign_id: str
    name: str
    release: Release
    cohort: CohortSpec
    waves: tuple[Wave, ...]
    policy: HaltPolicy
    seed: int
    created: float
    members: pl.DataFrame  # cohort.MEMBER_COLUMNS + wave (int), installed_at, failed_at, serial
    state: State = State.DRAFT
    released_waves: int = 0
    wave_released_at: list[float] = field(default_factory=list)
    started_at: float | None = None
    looks: int = 0
    transitions: list[dict[str, Any]] = field(default_factory=list)
    installs: list[dict[str, Any]] = field(default_factory=list)
    last_report: dict[str, Any] | None = None
    virtual_test: dict[str, Any] | None = None
    power_gate: dict[str, Any] | None = None  # the gate's latest verdict on the current wave
    power_waived_wave: int | None = None  # a wave an operator released without the power
    _index: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)
    _by_vin: dict[str, list[int]] = field(default_factory=dict, repr=False)
    _installed_at: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0), repr=False)
    _failed_at: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0), repr=False)
    _wave: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64), repr=False)

    def __post_init__(self) -> None:
        m = self.members
        self._index = {
            (v, h): i
            for i, (v, h) in enumerate(
                zip(m["vin"].to_list(), m["hardware_id"].to_list(), strict=True)
            )
        }
        self._by_vin = {}
        for (v, _h), i in self._index.items():
            self._by_vin.setdefault(v, []).append(i)
        self._wave = m["wave"].to_numpy().astype(np.int64)
        self._installed_at = m["installed_at"].fill_null(np.nan).to_numpy().astype(np.float64)
        self._failed_at = m["failed_at"].fill_null(np.nan).to_numpy().astype(np.float64)

    # -- creation ----------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        name: str,
        release: Release,
        cohort: CohortSpec,
        vehicles: pa.Table | pl.DataFrame,
        ecus: pa.Table | pl.DataFrame,
        *,
        waves: tuple[Wave, ...] = DEFAULT_WAVES,
        policy: HaltPolicy | None = None,
        seed: int = 0,
        actor: str = "system",
        time: datetime | float | None = None,
        campaign_id: str | None = None,
    ) -> Campaign:
        """Select the cohort, shuffle it into waves, and return a draft campaign."""
        if not name.strip():
            raise ValidationError("a campaign needs a name")
        if not waves or not math.isclose(waves[-1].share, 1.0):
            raise ValidationError("the last wave must reach the whole cohort (share 1.0)")
        if any(b.share <= a.share for a, b in itertools.pairwise(waves)):
            raise ValidationError("wave shares must increase")
        members = select_cohort(vehicles, ecus, cohort, sorted(release.images))
        # ECUs already on the release's image are not part of the rollout.
        target_version = pl.col("hardware_id").replace_strict(
            {h: i.version for h, i in release.images.items()}, default=None
        )
        members = members.filter(pl.col("software_version") != target_version)
        if members.is_empty():
            raise ValidationError(
                "the cohort is empty: every matching ECU already runs the release"
            )
        n = members.height
        rank = np.empty(n, dtype=np.int64)
        rank[np.random.default_rng(seed).permutation(n)] = np.arange(n)
        bounds = np.array([max(1, math.ceil(w.share * n)) for w in waves])
        wave = np.searchsorted(bounds, rank, side="right").astype(np.int64)
        members = members.with_columns(
            pl.Series("wave", wave, pl.Int64),
            pl.lit(None, pl.Float64).alias("installed_at"),
            pl.lit(None, pl.Float64).alias("failed_at"),
            pl.lit(None, pl.String).alias("serial"),
        )
        t = _epoch(time)
        campaign = cls(
            campaign_id=campaign_id or f"cmp-{uuid.uuid4().hex[:12]}",
            name=name,
            release=release,
            cohort=cohort,
            waves=waves,
            policy=policy or HaltPolicy(),
            seed=seed,
            created=t,
            members=members,
        )
        campaign.transitions.append(
            {
                "time": _iso(t),
                "epoch": t,
                "from": None,
                "to": State.DRAFT.value,
                "actor": actor,
                "reason": f"created for {n} ECUs ({cohort.describe()})",
            }
        )
        return campaign

    # -- the assignment protocol (the director asks this per ECU at check-in) -----------

    def assignment(
        self, vin: str, ecu_serial: str, hardware_id: str, installed: str | None
    ) -> str | None:
        """The target name this ECU should install now, or None.

        Running: members of the released waves get the release's image (None once it is
        installed, or after a failed install). Rolled back: ECUs that run the release get
        the previous image. Every other state assigns nothing.
        """
        i = self._index.get((vin, hardware_id))
        if i is None:
            return None
        image = self.release.images[hardware_id]
        if self.state is State.RUNNING:
            if self._wave[i] >= self.released_waves or not math.isnan(self._failed_at[i]):
                return None
            if installed == image.name:
                return None
            return image.name
        if self.state is State.ROLLED_BACK:
            back = self.release.rollback.get(hardware_id)
            if back is not None and (
                installed == image.name or not math.isnan(self._installed_at[i])
            ):
                return None if installed == back.name else back.name
        return None

    def record_install(
        self, vin: str, ecu_serial: str, result: str | bool, time: datetime | float | None = None
    ) -> None:
        """An ECU reports the outcome of an install (``success`` / ``failure`` or a bool)."""
        ok = _result(result)
        rows = self._by_vin.get(vin, [])
        if not rows:
            raise ValidationError(f"{vin} is not part of campaign {self.campaign_id}")
        serials = self.members["serial"]
        pick = [i for i in rows if serials[i] in (None, ecu_serial)]
        i = pick[0] if pick else rows[0]
        t = _epoch(time)
        if ok:
            self._installed_at[i] = t
            self._failed_at[i] = np.nan
        else:
            self._failed_at[i] = t
        self.members = self.members.with_columns(
            pl.Series("installed_at", self._installed_at, pl.Float64).fill_nan(None),
            pl.Series("failed_at", self._failed_at, pl.Float64).fill_nan(None),
            serials.scatter(i, ecu_serial),
        )
        self.installs.append(
            {
                "vin": vin,
                "ecu_serial": ecu_serial,
                "hardware_id": self.members["hardware_id"][i],
                "result": "success" if ok else "failure",
                "time": t,
                "wave": int(self._wave[i]),
                "rollback": self.state is State.ROLLED_BACK,
            }
        )

    def record_installs(
        self,
        index: npt.NDArray[np.int64],
        ok: npt.NDArray[np.bool_],
        times: npt.NDArray[np.float64],
    ) -> None:
        """Many outcomes at once, by member row (what the rollout simulation reports)."""
        self._installed_at[index[ok]] = times[ok]
        self._failed_at[index[~ok]] = times[~ok]
        vins = self.members["vin"].to_list()
        hws = self.members["hardware_id"].to_list()
        for i, good, t in zip(index.tolist(), ok.tolist(), times.tolist(), strict=True):
            self.installs.append(
                {
                    "vin": vins[i],
                    "ecu_serial": None,
                    "hardware_id": hws[i],
                    "result": "success" if good else "failure",
                    "time": t,
                    "wave": int(self._wave[i]),
                    "rollback": False,
                }
            )
        self._sync()

    def _sync(self) -> None:
        self.members = self.members.with_columns(
            pl.Series("installed_at", self._installed_at, pl.Float64).fill_nan(None),
            pl.Series("failed_at", self._failed_at, pl.Float64).fill_nan(None),
        )

    # -- transitions ---------------------------------------------------------------------

    def _move(
        self,
        to: State,
        actor: str,
        reason: str,
        time: datetime | float | None,
        evidence: dict[str, Any] | None = None,
    ) -> None:
        if to not in _ALLOWED[self.state]:
            raise TransitionError(
                f"campaign {self.campaign_id} is {self.state.value}: cannot go to {to.value}"
            )
        if not reason.strip():
            raise ValidationError("every transition needs a reason")
        t = _epoch(time)
        record: dict[str, Any] = {
            "time": _iso(t),
            "epoch": t,
            "from": self.state.value,
            "to": to.value,
            "actor": actor,
            "reason": reason,
        }
        if evidence is not None:
            record["evidence"] = evidence
        self.transitions.append(record)
        self.state = to

    def start(
        self, actor: str, reason: str = "start", time: datetime | float | None = None
    ) -> None:
        """Release wave 1 (refused when the virtual-fleet test blocked the release)."""
        if self.state is not State.DRAFT:
            raise TransitionError(
                f"campaign {self.campaign_id} is {self.state.value}: only a draft starts (resume instead)"
            )
        if self.virtual_test is not None and self.virtual_test.get("verdict") == "blocked":
            raise TransitionError(
                f"campaign {self.campaign_id}: the virtual-fleet test blocked this release "
                f"({self.virtual_test.get('reason', 'regression')})"
            )
        self._move(State.RUNNING, actor, reason, time)
        t = _epoch(time)
        self.started_at = t
        self.released_waves = 1
        self.wave_released_at = [t]

    def pause(self, actor: str, reason: str, time: datetime | float | None = None) -> None:
        self._move(State.PAUSED, actor, reason, time)

    def resume(
        self,
        actor: str,
        reason: str,
        time: datetime | float | None = None,
        *,
        waive_power_gate: bool = False,
    ) -> None:
        """Run again; the power gate's wait restarts, or with ``waive_power_gate`` the
        current wave is released at the next look without the power."""
        if self.state not in (State.PAUSED, State.HALTED):
            raise TransitionError(
                f"campaign {self.campaign_id} is {self.state.value}: only paused or halted resume"
            )
        if waive_power_gate:
            reason = f"{reason} (power gate waived for wave {self.current_wave})"
        self._move(State.RUNNING, actor, reason, time)
        if waive_power_gate:
            self.power_waived_wave = self.current_wave
        if self.power_gate is not None:
            self.power_gate["since"] = None

    def cancel(self, actor: str, reason: str, time: datetime | float | None = None) -> None:
        self._move(State.CANCELLED, actor, reason, time)

    def halt(
        self,
        actor: str,
        reason: str,
        evidence: dict[str, Any] | None = None,
        time: datetime | float | None = None,
    ) -> None:
        self._move(State.HALTED, actor, reason, time, evidence)

    def rollback(self, actor: str, reason: str, time: datetime | float | None = None) -> None:
        missing = sorted(set(self.release.images) - set(self.release.rollback))
        if missing:
            raise ValidationError(
                f"release {self.release.name!r} names no previous image for {missing}: "
                "nothing to roll back to"
            )
        self._move(State.ROLLED_BACK, actor, reason, time)

    # -- progress -------------------------------------------------------------------------

    @property
    def current_wave(self) -> int:
        """0-based index of the latest released wave (-1 before the start)."""
        return self.released_waves - 1

    @property
    def halt_evidence(self) -> dict[str, Any] | None:
        for t in reversed(self.transitions):
            if t["to"] == State.HALTED.value:
                ev: dict[str, Any] | None = t.get("evidence")
                return ev
        return None

    def wave_summary(self) -> pl.DataFrame:
        """Per wave: size, installed, failed, released when."""
        m = self.members.with_columns(
            pl.col("installed_at").is_not_null().alias("ok"),
            pl.col("failed_at").is_not_null().alias("failed"),
        )
        g = (
            m.group_by("wave")
            .agg(
                pl.len().alias("ecus"),
                pl.col("ok").sum().alias("installed"),
                pl.col("failed").sum(),
            )
            .sort("wave")
        )
        released = [
            _iso(self.wave_released_at[w]) if w < len(self.wave_released_at) else None
            for w in g["wave"].to_list()
        ]
        shares = [self.waves[w].share for w in g["wave"].to_list()]
        return g.with_columns(
            pl.Series("share", shares, pl.Float64), pl.Series("released", released, pl.String)
        ).select("wave", "share", "ecus", "installed", "failed", "released")

    def treated_count(self) -> int:
        """ECUs that run the release now."""
        return int(np.isfinite(self._installed_at).sum())

    def monitor(
        self,
        events: pl.DataFrame | None,
        now: datetime | float,
        *,
        risk: pl.DataFrame | None = None,
        actor: str = "auto-halt",
    ) -> HealthReport | None:
        """One look: compare updated and control vehicles; halt with evidence if a signal
        regressed; else release the next wave when the current one is done. Only a running
        campaign is judged (None otherwise)."""
        if self.state is not State.RUNNING or self.started_at is None:
            return None
        t = _epoch(now)
        if t <= self.started_at:
            return None
        self.looks += 1
        by_vin = self.members.group_by("vin").agg(pl.col("installed_at").min()).sort("vin")
        attempts, failures = self._install_counts()
        report = evaluate(
            vins=by_vin["vin"].to_numpy(),
            installed_at=by_vin["installed_at"].fill_null(np.nan).to_numpy().astype(np.float64),
            start=self.started_at,
            now=t,
            events=events,
            install_attempts=attempts,
            install_failures=failures,
            policy=self.policy,
            look=self.looks,
            risk=risk,
        )
        self.last_report = report.to_dict()
        if report.halt:
            worst = min(report.significant, key=lambda r: r.p_value)
            self.halt(
                actor,
                f"{worst.signal} regressed: {worst.treated_rate:.4g} vs {worst.control_rate:.4g} "
                f"(p={worst.p_value:.2g} < {worst.threshold:.2g})",
                self._evidence(report),
                t,
            )
            return report
        self._check_error_threshold(t, actor)
        if self.state is State.RUNNING:
            self._advance(t, actor, report)
        return report

    def _install_counts(self) -> tuple[int, int]:
        done = np.isfinite(self._installed_at) | np.isfinite(self._failed_at)
        return int(done.sum()), int(np.isfinite(self._failed_at).sum())

    def _evidence(self, report: HealthReport) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "release": self.release.name,
            "software_version": self.release.version,
            "wave": self.current_wave,
            "wave_share": self.waves[self.current_wave].share,
            "look": report.look,
            "alpha": self.policy.alpha,
            "alpha_look": report.alpha_look,
            "treated_vehicles": report.treated_vehicles,
            "control_vehicles": report.control_vehicles,
            "signals": [r.to_dict() for r in report.significant],
            "all_signals": [r.to_dict() for r in report.results],
        }

    def _check_error_threshold(self, t: float, actor: str) -> None:
        w = self.current_wave
        in_wave = self._wave == w
        size = int(in_wave.sum())
        failed = int(np.isfinite(self._failed_at[in_wave]).sum())
        limit = self.waves[w].error_threshold
        if size and failed / size > limit:
            self.halt(
                actor,
                f"wave {w}: {failed} of {size} installs failed, above the error threshold {limit:.0%}",
                {
                    "campaign_id": self.campaign_id,
                    "release": self.release.name,
                    "software_version": self.release.version,
                    "wave": w,
                    "signals": [
                        {
                            "signal": "install_error_threshold",
                            "kind": "health",
                            "treated_count": failed,
                            "treated_exposure": size,
                            "threshold": limit,
                        }
                    ],
                },
                t,
            )

    def _advance(self, t: float, actor: str, report: HealthReport) -> None:
        w = self.current_wave
        in_wave = self._wave == w
        size = int(in_wave.sum())
        ok = int(np.isfinite(self._installed_at[in_wave]).sum())
        spec = self.waves[w]
        soaked = t - self.wave_released_at[w] >= spec.min_soak_days * DAY_S
        if size and ok / size >= spec.success_threshold and soaked:
            if w + 1 < len(self.waves):
                if self._wait_for_power(report, t):
                    return
                self.released_waves += 1
                self.wave_released_at.append(t)
                self.transitions.append(
                    {
                        "time": _iso(t),
                        "epoch": t,
                        "from": self.state.value,
                        "to": self.state.value,
                        "actor": actor,
                        "reason": f"wave {w} reached {ok / size:.0%} installed: released wave {w + 1}"
                        + self._gate_note(w),
                    }
                )
            else:
                self._move(
                    State.COMPLETED, actor, f"last wave reached {ok / size:.0%} installed", t
                )

    def _gate_note(self, wave: int) -> str:
        if self.policy.power == 0:
            return ""
        if self.power_waived_wave == wave:
            return " (power gate waived)"
        return f" (power >= {self.policy.power:.0%} at the minimum effects)"

    def _wait_for_power(self, report: HealthReport, t: float) -> bool:
        """Whether the current wave must soak on (or the campaign was paused) because the
        look could not have caught a minimum effect of interest."""
        w = self.current_wave
        if self.policy.power == 0 or self.power_waived_wave == w:
            return False
        in_wave = self._wave == w
        tried = np.isfinite(self._installed_at) | np.isfinite(self._failed_at)
        checks = power_checks(
            report,
            self.policy,
            released_members=int(np.sum(self._wave < self.released_waves)),
            wave_attempts=int(tried[in_wave].sum()),
            wave_size=int(in_wave.sum()),
            error_threshold=self.waves[w].error_threshold,
        )
        short = [c for c in checks if not c.powered]
        prev = self.power_gate if self.power_gate and self.power_gate["wave"] == w else None
        gate: dict[str, Any] = {
            "wave": w,
            "time": t,
            "look": report.look,
            "power": self.policy.power,
            "checks": [c.to_dict() for c in checks],
        }
        if not short:
            self.power_gate = {**gate, "state": "powered", "since": None, "reason": "powered"}
            return False
        since = t if prev is None or prev.get("since") is None else float(prev["since"])
        reason = "waiting for power: " + "; ".join(c.describe() for c in short)
        self.power_gate = {**gate, "state": "waiting", "since": since, "reason": reason}
        if prev is None:
            # Logged once per wave; the daily figures live in power_gate.
            self.transitions.append(
                {
                    "time": _iso(t),
                    "epoch": t,
                    "from": self.state.value,
                    "to": self.state.value,
                    "actor": "power-gate",
                    "reason": f"wave {w} soaked, wave {w + 1} held: {reason}",
                }
            )
        stuck = [c for c in short if math.isinf(c.needed)]
        waited = (t - since) / DAY_S
        if stuck or waited >= self.policy.max_power_wait_days:
            why = (
                "soaking cannot reach the power"
                if stuck
                else f"still underpowered after {waited:.1f} days of waiting"
            )
            self.pause(
                "power-gate",
                f"wave {w}: {why} ({reason}); resume to soak on, or resume waiving the "
                f"power gate to release wave {w + 1}",
                t,
            )
            self.power_gate["state"] = "paused"
        return True

    # -- views ----------------------------------------------------------------------------

    def installs_frame(self) -> pl.DataFrame:
        """Install outcomes with the campaign and version (the closed loop's input)."""
        schema: dict[str, pl.DataType] = {
            "vin": pl.String(),
            "time": pl.Datetime("ms", "UTC"),
            "result": pl.String(),
            "campaign_id": pl.String(),
            "software_version": pl.String(),
            "wave": pl.Int64(),
        }
        if not self.installs:
            return pl.DataFrame(schema=schema)
        rows = [
            {
                "vin": r["vin"],
                "time": round(r["time"] * 1000),
                "result": r["result"],
                "campaign_id": self.campaign_id,
                "software_version": self.release.version,
                "wave": r["wave"],
            }
            for r in self.installs
        ]
        return (
            pl.DataFrame(rows)
            .with_columns(pl.from_epoch("time", time_unit="ms").dt.replace_time_zone("UTC"))
            .select(list(schema))
        )

    def to_dict(self) -> dict[str, Any]:
        self._sync()
        return {
            "campaign_id": self.campaign_id,
            "name": self.name,
            "release": self.release.to_dict(),
            "cohort": self.cohort.as_dict(),
            "waves": [
                [w.share, w.success_threshold, w.error_threshold, w.min_soak_days]
                for w in self.waves
            ],
            "policy": self.policy.to_dict(),
            "seed": self.seed,
            "created": self.created,
            "state": self.state.value,
            "released_waves": self.released_waves,
            "wave_released_at": self.wave_released_at,
            "started_at": self.started_at,
            "looks": self.looks,
            "transitions": self.transitions,
            "installs": self.installs,
            "last_report": self.last_report,
            "virtual_test": self.virtual_test,
            "power_gate": self.power_gate,
            "power_waived_wave": self.power_waived_wave,
            "members": self.members.to_dict(as_series=False),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Campaign:
        schema: dict[str, pl.DataType] = {
            "vin": pl.String(),
            "ecu": pl.String(),
            "hardware_id": pl.String(),
            "software_version": pl.String(),
            "model": pl.String(),
            "model_year": pl.Int64(),
            "region": pl.String(),
            "wave": pl.Int64(),
            "installed_at": pl.Float64(),
            "failed_at": pl.Float64(),
            "serial": pl.String(),
        }
        members = pl.DataFrame(d["members"], schema=schema)
        return cls(
            campaign_id=d["campaign_id"],
            name=d["name"],
            release=Release.from_dict(d["release"]),
            cohort=CohortSpec.from_dict(d["cohort"]),
            waves=tuple(Wave(*w) for w in d["waves"]),
            policy=HaltPolicy.from_dict(d["policy"]),
            seed=int(d["seed"]),
            created=float(d["created"]),
            members=members,
            state=State(d["state"]),
            released_waves=int(d["released_waves"]),
            wave_released_at=[float(x) for x in d["wave_released_at"]],
            started_at=d["started_at"],
            looks=int(d["looks"]),
            transitions=list(d["transitions"]),
            installs=list(d["installs"]),
            last_report=d.get("last_report"),
            virtual_test=d.get("virtual_test"),
            power_gate=d.get("power_gate"),
            power_waived_wave=d.get("power_waived_wave"),
        )


def _result(result: str | bool) -> bool:
    if isinstance(result, bool):
        return result
    value = result.strip().lower()
    if value in ("success", "ok", "succeeded", "installed"):
        return True
    if value in ("failure", "failed", "error"):
        return False
    raise ValidationError(f"install result {result!r} is neither success nor failure")
