"""The end-to-end demo: simulate a fleet, ingest it, query it, report on it — no server.

It goes through the same code paths as production: vehicles' messages are encoded as
they would be published, then validated, de-duplicated and committed by the same
:class:`~fleetops.telemetry.ingest.Ingestor` that ``fleetops ingest --broker`` uses; the
CAN part simulates one vehicle's bus with attacks and decodes it with the shipped DBC.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import pyarrow as pa

from fleetops.core.dbc import load_dbc
from fleetops.core.lake import Lake
from fleetops.core.types import CanFrames
from fleetops.report import write_report
from fleetops.security import ids
from fleetops.sim.can import simulate_can
from fleetops.sim.fleet import simulate_fleet
from fleetops.sim.scenario import load_scenario
from fleetops.telemetry.can_decode import CanDecoder
from fleetops.telemetry.ingest import Ingestor, RawMessage

Step = Callable[[str, int], Callable[[int], None]]  # (description, total) -> advance


@dataclass
class DemoResult:
    lake: Lake
    report: Path
    summary: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def _batches(items: Iterator[tuple[str, bytes]], size: int) -> Iterator[list[RawMessage]]:
    while batch := [RawMessage(p, f"sim/{vin}", vin) for vin, p in islice(items, size)]:
        yield batch


def run_demo(
    out_dir: Path,
    *,
    scenario: str = "demo",
    vehicles: int | None = None,
    days: int | None = None,
    step: Step | None = None,
) -> DemoResult:
    """Run the demo into ``out_dir`` (its ``lake/`` is recreated) and write the report."""
    track: Step = step or (lambda description, total: lambda advance: None)
    plan = load_scenario(scenario).with_overrides(vehicles=vehicles, days=days)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    sim = simulate_fleet(plan, progress=track("simulating the fleet", plan.vehicle_days))
    timings["simulate"] = time.perf_counter() - start

    lake_dir = out_dir / "lake"
    if lake_dir.exists():
        shutil.rmtree(lake_dir)
    lake = Lake(lake_dir)
    start = time.perf_counter()
    ingestor = Ingestor(lake, consumer="demo")
    per_message = 60
    advance = track("ingesting vehicle messages", -(-sim.sample_count // per_message))
    for batch in _batches(sim.messages(per_message), 2000):
        ingestor.ingest(batch)
        advance(len(batch))
    ingestor.close()
    lake.replace("vehicles", sim.vehicles_table())
    lake.replace("ecus", sim.ecus_table())
    lake.replace("failures", sim.failures)
    lake.write("dtcs", sim.dtcs)
    timings["ingest"] = time.perf_counter() - start

    start = time.perf_counter()
    can = _can_part(lake, plan.can, track)
    timings["can"] = time.perf_counter() - start

    start = time.perf_counter()
    summary = {
        **_lake_summary(lake),
        "ingest_values_per_s": round(ingestor.stats.values / max(timings["ingest"], 1e-9)),
        "dead_letters": ingestor.stats.dead_letters,
        **can,
    }
    report = write_report(lake, out_dir / "report.html", title=f"fleetops demo — {plan.name}")
    timings["report"] = time.perf_counter() - start
    return DemoResult(lake, report, summary, timings)


def _can_part(lake: Lake, section: dict[str, Any], track: Step) -> dict[str, Any]:
    """One test vehicle's CAN bus with attacks, into the lake, scored by the intrusion detector."""
    advance = track("simulating, decoding and watching a CAN bus", 3)
    sim = simulate_can(section)
    advance(1)
    decoder = CanDecoder()
    start = time.perf_counter()
    decoded = decoder.decode(sim.frames)
    decode_s = time.perf_counter() - start
    lake.write("can_frames", sim.frames.to_arrow())
    lake.replace("can_attacks", sim.attacks)
    advance(1)
    alerts = watch_can_bus(section, sim.frames)
    lake.replace("ids_alerts", alerts)
    advance(1)
    detected = (
        lake.query(
            """
            SELECT count(DISTINCT a.start) AS n FROM can_attacks a JOIN ids_alerts i
              ON i.time <= a."end" + INTERVAL 1 SECOND AND i.last_time >= a.start
            """
        ).to_pylist()[0]["n"]
        if {"can_attacks", "ids_alerts"} <= set(lake.tables())
        else 0  # a scenario without attacks, or a quiet bus: empty tables are not written
    )
    return {
        "can_frames": len(sim.frames),
        "can_attack_frames": int((sim.attack_index >= 0).sum()),
        "can_attacks": sim.attacks.num_rows,
        "can_decoded_values": decoded.num_rows,
        "can_decode_frames_per_s": round(len(sim.frames) / max(decode_s, 1e-9)),
        "ids_alerts": alerts.num_rows,
        "ids_attacks_detected": f"{detected}/{sim.attacks.num_rows}",
    }


def watch_can_bus(section: dict[str, Any], frames: CanFrames) -> pa.Table:
    """The intrusion detector, trained with the shipped DBC on three attack-free drives of the
    same car (other seeds, other profiles), scores the attacked bus."""
    clean = {key: value for key, value in section.items() if key != "attacks"}
    seed = int(section.get("seed", 0))
    drives = [
        simulate_can({**clean, "seed": seed + 1000 + k, "profile": profile}).frames
        for k, profile in enumerate(("urban", "highway", "mixed"))
    ]
    model = ids.train(drives, dbc=load_dbc())
    alerts = ids.alerts_from_scores(model, frames, ids.score_frames(model, frames))
    return pa.table(
        {
            "time": _utc([a.time for a in alerts]),
            "last_time": _utc([a.last_time for a in alerts]),
            "attack": pa.array([a.attack for a in alerts], pa.string()),
            "arbitration_id": pa.array([a.arbitration_id for a in alerts], pa.int64()),
            "signal": pa.array([a.signal for a in alerts], pa.string()),
            "score": pa.array([a.score for a in alerts], pa.float64()),
            "frames": pa.array([a.frames for a in alerts], pa.int64()),
        }
    )


def _utc(seconds: list[float]) -> pa.Array:
    """Epoch seconds (the bus clock) as lake timestamps."""
    return pa.array([round(s * 1e6) for s in seconds], pa.int64()).cast(
        pa.timestamp("us", tz="UTC")
    )


def _lake_summary(lake: Lake) -> dict[str, Any]:
    row = lake.query(
        """
        SELECT (SELECT count(*) FROM vehicles) AS vehicles,
               (SELECT count(*) FROM signals) AS signal_values,
               (SELECT count(DISTINCT signal) FROM signals) AS signals,
               (SELECT count(DISTINCT date) FROM signals) AS days,
               (SELECT count(*) FROM failures) AS faults,
               (SELECT count(failure_ts) FROM failures) AS failures,
               (SELECT count(*) FROM dtcs) AS dtcs
        """
    ).to_pylist()[0]
    return dict(row)
