"""Virtual-fleet testing: run a release on the digital twin before wave 1 reaches a car.

The simulator (``fleetops.sim``) is used from outside, through its public API:

1. :func:`~fleetops.sim.simulate_fleet` gives the baseline fleet: telemetry, DTCs.
2. The *same* fleet with the release applied: the release's extra DTCs at random awake
   samples of each vehicle, failed boots per vehicle-day, installs that may fail.
3. CAN: short drives of a sample of vehicles are simulated (``fleetops.sim.can``), the
   release's CAN changes applied, and both buses scored by the in-vehicle IDS
   (``fleetops.security.ids``) trained on clean traffic of other drives.

Both fleets are compared with the statistics of the automatic halt (:mod:`.stats`,
Holm across signals, one look at ``alpha``). The design is paired — the release fleet is
the baseline fleet plus the release's effects — which makes the independent-cohort tests
conservative (the shared background only dilutes the difference), never anti-conservative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import polars as pl

from fleetops.ota.rollout import stats
from fleetops.ota.rollout.health import DAY_S, HaltPolicy
from fleetops.ota.rollout.release_model import ReleaseBehaviour, apply_can_effects

PROFILES = ("mixed", "urban", "highway")


@dataclass(frozen=True, slots=True)
class VirtualTestResult:
    """The verdict (``passed`` or ``blocked``) and the evidence per signal."""

    release: str
    verdict: str
    reason: str
    vehicles: int
    days: int
    can_hours: float
    signals: tuple[dict[str, Any], ...]

    @property
    def blocked(self) -> bool:
        return self.verdict == "blocked"

    def to_dict(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "verdict": self.verdict,
            "reason": self.reason,
            "vehicles": self.vehicles,
            "days": self.days,
            "can_hours": self.can_hours,
            "signals": list(self.signals),
        }


@lru_cache(maxsize=4)
def _ids_model(seconds: float) -> Any:
    from fleetops.security.ids import train
    from fleetops.sim import simulate_can

    clean = [
        simulate_can({"duration_s": seconds, "seed": 10_000 + k, "profile": p}).frames
        for k, p in enumerate(PROFILES)
    ]
    return train(clean)


def ids_alerts(
    behaviour: ReleaseBehaviour, captures: int = 12, seconds: float = 60.0, seed: int = 0
) -> tuple[int, int, float]:
    """IDS incidents on ``captures`` simulated drives without and with the release, and the
    bus hours of each side."""
    from fleetops.security.ids import alerts_from_scores, score_frames
    from fleetops.sim import simulate_can

    model = _ids_model(120.0)
    base = rel = 0
    for k in range(captures):
        frames = simulate_can(
            {"duration_s": seconds, "seed": seed * 1000 + k, "profile": PROFILES[k % 3]}
        ).frames
        base += len(alerts_from_scores(model, frames, score_frames(model, frames)))
        changed = apply_can_effects(frames, behaviour.can_effects, np.random.default_rng([seed, k]))
        rel += len(alerts_from_scores(model, changed, score_frames(model, changed)))
    return base, rel, captures * seconds / 3600.0


def test_release(
    behaviour: ReleaseBehaviour,
    *,
    scenario: str = "demo",
    vehicles: int = 150,
    days: int = 4,
    seed: int = 1,
    captures: int = 12,
    capture_s: float = 60.0,
    policy: HaltPolicy | None = None,
) -> VirtualTestResult:
    """Run ``behaviour`` on a simulated fleet and block it if any signal regresses."""
    from fleetops.sim import load_scenario, simulate_fleet

    pol = policy or HaltPolicy()
    sim = simulate_fleet(
        load_scenario(scenario).with_overrides(vehicles=vehicles, days=days, seed=seed)
    )
    rng = np.random.default_rng([seed, 77])
    n = len(sim.vehicles)
    exposure = n * days  # vehicle-days on each side (the same fleet, same days)
    dtcs = pl.from_arrow(sim.dtcs)
    assert isinstance(dtcs, pl.DataFrame)
    base_dtc = dtcs.height
    base_ecu = dtcs.filter(pl.col("ecu") == behaviour.ecu).height
    # the release's DTCs at awake samples of each vehicle
    extra = rng.poisson(behaviour.dtc_rate_per_day * days, n)
    starts = np.searchsorted(sim.sample_vehicle, np.arange(n), side="left")
    ends = np.searchsorted(sim.sample_vehicle, np.arange(n), side="right")
    extra = np.where(ends > starts, extra, 0)
    rel_dtc = base_dtc + int(extra.sum())
    rel_ecu = base_ecu + int(extra.sum())
    # failed boots: the simulator's cars always boot; the release's fail per vehicle-day
    days_awake = np.array(
        [
            np.unique(sim.sample_ts_s[a:b] // int(DAY_S)).size if b > a else 0
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
        ]
    )
    boot_fail = int(rng.binomial(days_awake, min(1.0, behaviour.boot_failure_per_day)).sum())
    installs_failed = int(rng.binomial(n, behaviour.install_failure_prob))
    ids_base, ids_rel, hours = ids_alerts(behaviour, captures, capture_s, seed)

    rows: list[dict[str, Any]] = []

    def rate(signal: str, kind: str, base: int, rel: int, exp_: float, unit: str) -> None:
        res = stats.rate_test(rel, exp_, base, exp_, pol.rate_margin)
        rows.append(
            {
                "signal": signal,
                "kind": kind,
                "baseline_count": base,
                "release_count": rel,
                "exposure": exp_,
                "unit": unit,
                "ratio": None if math.isinf(res.statistic) else res.statistic,
                "p_value": res.p_value,
                "method": res.method,
            }
        )

    rate("dtc", "health", base_dtc, rel_dtc, exposure, "vehicle-days")
    rate("dtc_target_ecu", "health", base_ecu, rel_ecu, exposure, "vehicle-days")
    rate("boot_failure", "health", 0, boot_fail, exposure, "vehicle-days")
    rate("ids_alert", "security", ids_base, ids_rel, hours, "bus-hours")
    inst = stats.failure_test(
        installs_failed, n, pol.acceptable_install_failure, pol.install_reference
    )
    rows.append(
        {
            "signal": "install_failure",
            "kind": "health",
            "baseline_count": pol.acceptable_install_failure,
            "release_count": installs_failed,
            "exposure": n,
            "unit": "installs",
            "ratio": inst.statistic,
            "p_value": inst.p_value,
            "method": inst.method,
        }
    )
    rejected, thresholds = stats.holm([r["p_value"] for r in rows], pol.alpha)
    for r, rej, thr in zip(rows, rejected, thresholds, strict=True):
        r["threshold"] = thr
        r["significant"] = rej
    bad = [r for r in rows if r["significant"]]
    reason = (
        "; ".join(
            f"{r['signal']}: {r['release_count']} vs {r['baseline_count']} "
            f"(p={r['p_value']:.2g} < {r['threshold']:.2g})"
            for r in bad
        )
        if bad
        else "no signal regressed beyond its margin"
    )
    return VirtualTestResult(
        release=behaviour.name,
        verdict="blocked" if bad else "passed",
        reason=reason,
        vehicles=n,
        days=days,
        can_hours=hours,
        signals=tuple(rows),
    )


def ids_rates_per_hour(behaviour: ReleaseBehaviour, captures: int = 12) -> tuple[float, float]:
    """Baseline and release IDS incidents per bus-hour (for the rollout simulation)."""
    return _ids_rates(behaviour, captures)


@lru_cache(maxsize=16)
def _ids_rates(behaviour: ReleaseBehaviour, captures: int) -> tuple[float, float]:
    base, rel, hours = ids_alerts(behaviour, captures)
    return base / hours, rel / hours
