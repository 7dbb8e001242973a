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

from fleetops.core.lake import Lake
from fleetops.report import write_report
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
    """One test vehicle's CAN bus with attacks, kept in the lake for the IDS to come."""
    advance = track("simulating and decoding a CAN bus", 2)
    sim = simulate_can(section)
    advance(1)
    decoder = CanDecoder()
    start = time.perf_counter()
    decoded = decoder.decode(sim.frames)
    decode_s = time.perf_counter() - start
    lake.write("can_frames", sim.frames.to_arrow())
    lake.replace("can_attacks", sim.attacks)
    advance(1)
    return {
        "can_frames": len(sim.frames),
        "can_attack_frames": int((sim.attack_index >= 0).sum()),
        "can_attacks": sim.attacks.num_rows,
        "can_decoded_values": decoded.num_rows,
        "can_decode_frames_per_s": round(len(sim.frames) / max(decode_s, 1e-9)),
    }


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
