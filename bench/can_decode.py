"""Decoding speed: fleetops' vectorised CanDecoder vs cantools' per-frame decode_message.

Both decode the same simulated hour of the fleetops EV bus (one core). cantools runs on a
random subset and its rate is taken per frame. Run: ``.venv/bin/python bench/can_decode.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from fleetops.core.dbc import load_dbc
from fleetops.sim.can import simulate_can
from fleetops.telemetry.can_decode import CanDecoder

DURATION_S = 3600.0
BASELINE_FRAMES = 20_000
REPEATS = 3
VIN = "WVWZZZ1JZXW000001"


def best_of(repeats: int, run: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    pa.set_cpu_count(1)  # one core for both sides
    pa.set_io_thread_count(1)
    db = load_dbc()
    frames = simulate_can(
        {
            "duration_s": DURATION_S,
            "seed": 1,
            "profile": "mixed",
            "attacks": [
                {"type": "flooding", "start_s": 600, "duration_s": 10},
                {"type": "fuzzing", "start_s": 1200, "duration_s": 30},
            ],
        },
        db,
    ).frames
    n = len(frames)

    compile_s, decoder = best_of(1, lambda: CanDecoder(db))
    rows: list[tuple[str, int, int, float]] = []
    for label, run in (
        ("CanDecoder.decode (long, all signals)", lambda: decoder.decode(frames)),
        ("CanDecoder.decode_wide (per message)", lambda: decoder.decode_wide(frames)),
        ("CanDecoder.to_signals (VSS, lake schema)", lambda: decoder.to_signals(frames, VIN)),
    ):
        seconds, out = best_of(REPEATS, run)
        produced = sum(t.num_rows for t in out.values()) if isinstance(out, dict) else out.num_rows
        rows.append((label, n, produced, seconds))

    subset = np.sort(np.random.default_rng(0).choice(n, BASELINE_FRAMES, replace=False))
    payloads = [
        (int(frames.arbitration_id[i]), frames.data[i, : frames.dlc[i]].tobytes()) for i in subset
    ]
    known = {m.frame_id for m in db.messages}

    def cantools_decode() -> int:
        values = 0
        for frame_id, payload in payloads:
            if frame_id in known:  # unknown ids are skipped, as the decoder counts them
                decoded = db.decode_message(
                    frame_id, payload, decode_choices=False, allow_truncated=True
                )
                values += len(decoded)
        return values

    base_s, base_values = best_of(REPEATS, cantools_decode)
    base_rate = len(payloads) / base_s

    table = Table(
        title=f"CAN decoding, one core: {n:,} simulated frames (1 h, 16 messages)",
        caption=(
            f"cantools on a random subset of {len(payloads):,} of the frames, rate per frame; "
            f"all best of {REPEATS}; compiling the decoder took {compile_s * 1000:.1f} ms (once)"
        ),
    )
    for column in ("method", "frames", "values out", "seconds", "frames/s", "vs cantools"):
        table.add_column(column, justify="left" if column == "method" else "right")
    table.add_row(
        "cantools decode_message (per frame)",
        f"{len(payloads):,}",
        f"{base_values:,}",
        f"{base_s:.3f}",
        f"{base_rate:,.0f}",
        "1.0×",
    )
    for label, count, produced, seconds in rows:
        rate = count / seconds
        table.add_row(
            label,
            f"{count:,}",
            f"{produced:,}",
            f"{seconds:.3f}",
            f"{rate:,.0f}",
            f"{rate / base_rate:,.0f}×",
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
