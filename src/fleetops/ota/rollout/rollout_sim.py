"""The rollout simulation: a campaign run wave by wave on a simulated fleet, day by day.

The fleet's inventory (VINs, models, regions, ECUs with hardware ids and software
versions) comes from the simulator (``fleetops.sim.vehicles.build_fleet``), at the scale of
a real campaign (10 000 vehicles and more). Simulating every vehicle's telemetry for weeks
would take hours, so the daily signals are drawn from per-vehicle rates instead:

* baseline rates (DTCs of every ECU and of the updated ECU, failed boots, IDS incidents per
  vehicle-day) — :meth:`BaselineRates.from_simulation` measures the DTC rates on a
  :func:`~fleetops.sim.simulate_fleet` run; each vehicle's rates are scaled by a gamma
  frailty (mean 1), so that some cars report more than others, as real fleets do;
* after a vehicle installs, the release's :class:`~.release_model.ReleaseBehaviour` adds its
  DTCs and failed boots, and its CAN changes add IDS incidents at the rate the real IDS
  gives on simulated drives with those changes (:func:`.virtual_fleet.ids_rates_per_hour`);
* each day a vehicle of a released wave checks in with probability ``checkin_per_day``,
  installs at a random time of that day, and the install fails with the release's
  probability.

At the end of each day the campaign looks at its signals (:meth:`Campaign.monitor`): it
halts itself with evidence, or releases the next wave when the current one is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from fleetops.core.errors import ValidationError
from fleetops.ota.rollout.campaign import DEFAULT_WAVES, Campaign, Image, Release, State, Wave
from fleetops.ota.rollout.cohort import CohortSpec
from fleetops.ota.rollout.health import DAY_S, HaltPolicy
from fleetops.ota.rollout.release_model import ReleaseBehaviour


@dataclass(frozen=True, slots=True)
class BaselineRates:
    """Per vehicle-day rates of the fleet before the release (defaults: measured on the demo
    scenario, see docs/ota-rollout.md)."""

    dtc_per_day: float = 0.13  # every ECU
    target_ecu_dtc_per_day: float = 0.012  # of these, the updated ECU's
    boot_failure_per_day: float = 0.0005
    ids_alert_per_day: float = 0.01  # benign IDS incidents that reach the SOC
    frailty_shape: float = 2.0  # gamma shape of the per-vehicle rate multiplier
    checkin_per_day: float = 0.6
    awake_hours_per_day: float = 1.5  # bus time per day over which CAN changes show

    @classmethod
    def from_simulation(cls, sim: Any, ecu: str, **overrides: Any) -> BaselineRates:
        """DTC rates measured on a :class:`~fleetops.sim.FleetSimulation`."""
        vd = len(sim.vehicles) * sim.scenario.days
        if vd == 0:
            raise ValidationError("the simulation has no vehicle-days")
        dtcs = sim.dtcs
        ecus = dtcs.column("ecu").to_pylist()
        return cls(
            dtc_per_day=dtcs.num_rows / vd,
            target_ecu_dtc_per_day=sum(1 for e in ecus if e == ecu) / vd,
            **overrides,
        )


@dataclass
class RolloutResult:
    """What happened: where it halted, who got the release, and every daily look."""

    release: str
    vehicles: int
    cohort: int
    wave_sizes: list[int]
    halted: bool
    halt_wave: int | None
    halt_day: int | None
    received: int  # ECUs that installed the release before the halt (or ever)
    completed_day: int | None
    final_state: str
    wave_days: list[float]  # day of the campaign each released wave went out
    evidence: dict[str, Any] | None
    looks: list[dict[str, Any]] = field(default_factory=list)
    campaign: Campaign | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "vehicles": self.vehicles,
            "cohort": self.cohort,
            "wave_sizes": self.wave_sizes,
            "halted": self.halted,
            "halt_wave": self.halt_wave,
            "halt_day": self.halt_day,
            "received": self.received,
            "completed_day": self.completed_day,
            "final_state": self.final_state,
            "wave_days": self.wave_days,
        }


def simulated_inventory(
    vehicles: int, seed: int, scenario: str = "demo"
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Vehicles and ECUs tables (lake schemas) of a simulated fleet, without telemetry."""
    from fleetops.sim import build_fleet, load_scenario

    sc = load_scenario(scenario).with_overrides(vehicles=vehicles, seed=seed)
    fleet, _ = build_fleet(sc, np.random.default_rng([seed, 0]))
    veh = pl.DataFrame(
        {
            "vin": [v.vin for v in fleet],
            "model": [v.model for v in fleet],
            "model_year": [v.model_year for v in fleet],
            "region": [v.region for v in fleet],
        }
    )
    rows = [(v.vin, e.name, e.hardware_id, e.software_version) for v in fleet for e in v.ecus]
    ecus = pl.DataFrame(
        rows, schema=["vin", "ecu", "hardware_id", "software_version"], orient="row"
    )
    return veh, ecus


def default_release(ecus: pl.DataFrame, ecu: str = "BMS", version: str = "3.1.0") -> Release:
    """One image per hardware revision B and C of ``ecu`` (revision A cannot take it)."""
    hws = sorted(
        h
        for h in ecus.filter(pl.col("ecu") == ecu)["hardware_id"].unique().to_list()
        if not h.endswith("-A")
    )
    return Release(
        f"{ecu} {version}",
        {h: Image(f"{h}-{version}.bin", version) for h in hws},
        {h: Image(f"{h}-3.0.0.bin", "3.0.0") for h in hws},
    )


def simulate_rollout(
    behaviour: ReleaseBehaviour,
    *,
    vehicles: int = 10_000,
    days: int = 40,
    seed: int = 0,
    rates: BaselineRates | None = None,
    policy: HaltPolicy | None = None,
    waves: tuple[Wave, ...] = DEFAULT_WAVES,
    ecu: str = "BMS",
    start: datetime = datetime(2026, 3, 2, tzinfo=UTC),
    ids_rates: tuple[float, float] | None = None,
) -> RolloutResult:
    """Run a campaign for ``behaviour`` on a simulated fleet until it halts, completes or
    ``days`` pass. ``ids_rates``: baseline and release IDS incidents per bus-hour (measured
    with the real IDS when not given)."""
    if vehicles < 100 or days < 1:
        raise ValidationError("simulate at least 100 vehicles for at least a day")
    r = rates or BaselineRates()
    veh, ecus = simulated_inventory(vehicles, seed)
    release = default_release(ecus, ecu)
    campaign = Campaign.create(
        f"{behaviour.name} rollout",
        release,
        CohortSpec.of(ecu=ecu),
        veh,
        ecus,
        waves=waves,
        policy=policy,
        seed=seed,
        time=start,
        campaign_id=f"sim-{behaviour.name}-{seed}",
    )
    if behaviour.can_effects:
        if ids_rates is None:
            from fleetops.ota.rollout.virtual_fleet import ids_rates_per_hour

            ids_rates = ids_rates_per_hour(behaviour)
        ids_extra = max(0.0, ids_rates[1] - ids_rates[0]) * r.awake_hours_per_day
    else:
        ids_extra = 0.0
    members = campaign.members
    n = members.height
    vins = members["vin"].to_numpy()
    rng = np.random.default_rng([seed, 5])
    frailty = rng.gamma(r.frailty_shape, 1.0 / r.frailty_shape, n)
    other_rate = max(0.0, r.dtc_per_day - r.target_ecu_dtc_per_day)
    t0 = start.timestamp()
    campaign.start("rollout-sim", "simulated rollout", t0)
    chunks: list[pl.DataFrame] = []
    looks: list[dict[str, Any]] = []
    halt_day: int | None = None
    completed_day: int | None = None
    for d in range(days):
        day0 = t0 + d * DAY_S
        if campaign.state is State.RUNNING:
            inst = campaign._installed_at
            failed = campaign._failed_at
            open_ = (campaign._wave < campaign.released_waves) & np.isnan(inst) & np.isnan(failed)
            come = open_ & (rng.random(n) < r.checkin_per_day)
            idx = np.flatnonzero(come)
            if idx.size:
                times = day0 + rng.uniform(0.0, DAY_S, idx.size)
                ok = rng.random(idx.size) >= behaviour.install_failure_prob
                campaign.record_installs(idx, ok, times)
        inst = campaign._installed_at
        post = np.clip((day0 + DAY_S - np.nan_to_num(inst, nan=np.inf)) / DAY_S, 0.0, 1.0)
        pre = 1.0 - post
        cut = np.where(np.isfinite(inst), np.clip(inst, day0, day0 + DAY_S), day0 + DAY_S)
        parts: list[tuple[str, np.ndarray, np.ndarray]] = []
        base_tgt = [rng.poisson(frailty * r.target_ecu_dtc_per_day * f) for f in (pre, post)]
        base_other = [rng.poisson(frailty * other_rate * f) for f in (pre, post)]
        extra = rng.poisson(behaviour.dtc_rate_per_day * post)
        boots = [
            rng.poisson(frailty * r.boot_failure_per_day * pre),
            rng.poisson((frailty * r.boot_failure_per_day + behaviour.boot_failure_per_day) * post),
        ]
        ids = [
            rng.poisson(r.ids_alert_per_day * pre),
            rng.poisson((r.ids_alert_per_day + ids_extra) * post),
        ]
        for side, f in ((0, pre), (1, post)):
            add = extra if side == 1 else 0
            parts.append(("dtc_target_ecu", base_tgt[side] + add, f))
            parts.append(("dtc", base_tgt[side] + base_other[side] + add, f))
            parts.append(("boot_failure", boots[side], f))
            parts.append(("ids_alert", ids[side], f))
        for k, (signal, counts, _f) in enumerate(parts):
            side = (k // 4) % 2
            ts = (day0 + cut) / 2.0 if side == 0 else (cut + day0 + DAY_S) / 2.0
            hit = np.flatnonzero(counts > 0)
            if hit.size:
                chunks.append(
                    pl.DataFrame(
                        {
                            "vin": vins[hit],
                            "ts": ts[hit],
                            "signal": [signal] * hit.size,
                            "count": counts[hit].astype(np.float64),
                        }
                    )
                )
        events = pl.concat(chunks) if chunks else None
        wave_before = campaign.current_wave
        report = campaign.monitor(events, day0 + DAY_S)
        if report is not None:
            looks.append(
                {
                    "day": d + 1,
                    "wave": wave_before,
                    "treated": report.treated_vehicles,
                    **{
                        f"{x.signal}:{side}": rate
                        for x in report.results
                        for side, rate in (("treated", x.treated_rate), ("control", x.control_rate))
                    },
                }
            )
        if campaign.state is State.HALTED:
            halt_day = d + 1
            break
        if campaign.state is State.COMPLETED:
            completed_day = d + 1
            break
        if campaign.state is State.PAUSED:  # the power gate wants a human: none here
            break
    wave_sizes = [int(np.sum(campaign._wave == w)) for w in range(len(waves))]
    evidence = campaign.halt_evidence
    return RolloutResult(
        release=behaviour.name,
        vehicles=vehicles,
        cohort=n,
        wave_sizes=wave_sizes,
        halted=campaign.state is State.HALTED,
        halt_wave=evidence["wave"] if evidence else None,
        halt_day=halt_day,
        received=campaign.treated_count(),
        completed_day=completed_day,
        final_state=campaign.state.value,
        wave_days=[round((x - t0) / DAY_S, 2) for x in campaign.wave_released_at],
        evidence=evidence,
        looks=looks,
        campaign=campaign,
    )


def plot_rollout(result: RolloutResult, path: str) -> None:
    """Per-day treated and control rates of each signal, waves shaded, the halt marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not result.looks:
        raise ValidationError("the rollout made no look: nothing to plot")
    frame = pl.DataFrame(result.looks)
    signals = ["dtc", "dtc_target_ecu", "boot_failure", "ids_alert"]
    fig, axes = plt.subplots(len(signals), 1, figsize=(9, 2.2 * len(signals)), sharex=True)
    day = frame["day"].to_numpy()
    for ax, s in zip(axes, signals, strict=True):
        for side, style in (("treated", "-"), ("control", "--")):
            col = f"{s}:{side}"
            if col in frame.columns:
                ax.plot(day, frame[col].cast(pl.Float64).to_numpy(), style, label=side)
        ax.set_ylabel(f"{s}\nper vehicle-day", fontsize=8)
        for w in frame["wave"].unique().to_list():
            d = frame.filter(pl.col("wave") == w)["day"]
            lo, hi = d.cast(pl.Float64).min(), d.cast(pl.Float64).max()
            assert isinstance(lo, float) and isinstance(hi, float)
            ax.axvspan(lo - 0.5, hi + 0.5, alpha=0.06 * (w + 1), color="C2")
        if result.halt_day is not None:
            ax.axvline(result.halt_day, color="red", lw=1)
    axes[0].legend(fontsize=8)
    axes[0].set_title(
        f"{result.release}: "
        + (
            f"halted in wave {result.halt_wave} on day {result.halt_day}, {result.received} ECUs updated"
            if result.halted
            else f"{result.final_state}, {result.received} ECUs updated"
        ),
        fontsize=10,
    )
    axes[-1].set_xlabel("day of the campaign")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
