"""Simulation speed: fleetops' simulate_can vs encoding the same frames with cantools.

simulate_can builds an hour of the fleetops EV bus (drive, encoding, counters, CRCs, bus
timing, attacks); the baseline is cantools' ``encode_message`` per frame on a random subset
of those frames (payload encoding only, no CRC, no timing), its rate taken per frame.
Run: ``.venv/bin/python bench/can_sim.py``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from fleetops.core.dbc import load_dbc
from fleetops.sim.can import CanScenario, simulate_can

BASELINE_FRAMES = 20_000
REPEATS = 3
SCENARIO: dict[str, Any] = {
    "duration_s": 3600.0,
    "seed": 7,
    "profile": "mixed",
    "attacks": [
        {"type": "flooding", "start_s": 600, "duration_s": 10},
        {
            "type": "spoofing",
            "start_s": 900,
            "duration_s": 60,
            "signal": "Vehicle.Speed",
            "value": 0,
        },
        {
            "type": "masquerade",
            "start_s": 1500,
            "duration_s": 60,
            "message": "MCU_Status",
            "signal": "MotorSpeed",
            "shape": "continuous",
            "drift_per_s": 50,
        },
        {"type": "replay", "start_s": 2000, "duration_s": 30, "message": "EPS_Steering"},
        {"type": "suppression", "start_s": 2500, "duration_s": 30, "message": "BMS_PackStatus"},
        {"type": "fuzzing", "start_s": 3000, "duration_s": 30},
    ],
}


def main() -> None:
    db = load_dbc()
    scenario = CanScenario.from_dict(SCENARIO)
    best, sim = float("inf"), None
    for _ in range(REPEATS):
        start = time.perf_counter()
        sim = simulate_can(scenario, db)
        best = min(best, time.perf_counter() - start)
    assert sim is not None
    frames = sim.frames
    n = len(frames)

    assert frames.label is not None
    normal = np.flatnonzero(frames.label == "")
    subset = np.sort(np.random.default_rng(0).choice(normal, BASELINE_FRAMES, replace=False))
    jobs = []
    for i in subset:  # the values each frame carries, to encode again (not timed)
        frame_id = int(frames.arbitration_id[i])
        payload = frames.data[i, : frames.dlc[i]].tobytes()
        jobs.append((frame_id, db.decode_message(frame_id, payload, decode_choices=False)))
    start = time.perf_counter()
    for frame_id, values in jobs:
        db.encode_message(frame_id, values, strict=False)
    base_s = time.perf_counter() - start
    base_rate = len(jobs) / base_s
    rate = n / best

    table = Table(
        title=f"CAN simulation, one core: 1 h of the fleetops EV bus ({n:,} frames)",
        caption=(
            f"cantools on a random subset of {len(jobs):,} normal frames, rate per frame; "
            f"simulate_can best of {REPEATS}, {len(SCENARIO['attacks'])} attacks included"
        ),
    )
    for column in ("method", "frames", "seconds", "frames/s", "vs cantools"):
        table.add_column(column, justify="left" if column == "method" else "right")
    table.add_row(
        "cantools encode_message (per frame)",
        f"{len(jobs):,}",
        f"{base_s:.3f}",
        f"{base_rate:,.0f}",
        "1.0×",
    )
    table.add_row(
        "simulate_can (drive + encode + E2E + bus)",
        f"{n:,}",
        f"{best:.3f}",
        f"{rate:,.0f}",
        f"{rate / base_rate:,.0f}×",
    )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
