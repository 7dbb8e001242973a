"""The rollout rows of ``bench/ota.py``: halt wave, who got a faulty release, clean runs."""

from __future__ import annotations

from fleetops.ota.rollout.release_model import PRESETS
from fleetops.ota.rollout.rollout_sim import simulate_rollout

FAULTY = ("faulty-dtc", "faulty-boot", "faulty-can", "faulty-install")


def bench_rows(fleets: tuple[int, ...] = (10_000, 3_000), seeds: int = 10) -> list[dict[str, str]]:
    """Rows ``what``, ``ours``, ``baseline``, ``ratio_or_goal`` (strings, for one table):
    per fleet size, where each faulty preset halts (seed 0) and the clean release over
    ``seeds`` seeds (false halts, days to complete)."""
    rows: list[dict[str, str]] = []
    for vehicles in fleets:
        for name in FAULTY:
            r = simulate_rollout(PRESETS[name], vehicles=vehicles, seed=0)
            canary = r.wave_sizes[0]
            where = f"wave {r.halt_wave}, day {r.halt_day}" if r.halted else r.final_state
            rows.append(
                {
                    "what": f"rollout halt, {name} release ({vehicles} vehicles, cohort {r.cohort})",
                    "ours": f"{where}; {r.received} ECUs got it",
                    "baseline": f"no halt: {r.cohort} ECUs get it",
                    "ratio_or_goal": (
                        f"{r.received / r.cohort:.1%} of cohort; goal: canary only (≤ {canary})"
                        + (" ✓" if r.halted and r.halt_wave == 0 and r.received <= canary else " ✗")
                    ),
                }
            )
        false_halts = paused = 0
        days: list[int] = []
        canary_days: list[float] = []
        for seed in range(seeds):
            r = simulate_rollout(PRESETS["clean"], vehicles=vehicles, seed=100 + seed)
            false_halts += r.halted
            paused += r.final_state == "paused"
            if r.completed_day is not None:
                days.append(r.completed_day)
            if len(r.wave_days) > 1:
                canary_days.append(r.wave_days[1])
        rows.append(
            {
                "what": f"rollout, clean release ({seeds} seeds × {vehicles} vehicles)",
                "ours": f"{false_halts}/{seeds} halted, {paused} paused; completed in "
                f"{min(days, default=0)}–{max(days, default=0)} days (canary soaked "
                f"{min(canary_days, default=0):g}–{max(canary_days, default=0):g})",
                "baseline": "design bound α = 0.05 per campaign",
                "ratio_or_goal": f"{false_halts / seeds:.0%} false halts; goal ≤ 5 %",
            }
        )
    return rows
