"""Scale-out: each distributed job at 1×, 4× and 16× data on the local backend and on Ray
with 1 and 2 workers, in one run; plus shared-subscription ingest with 1 and 2 workers.

    .venv/bin/python -m bench.scale [--scales 1,4,16] [--out results.json]

Jobs and their 1× data (16× is sixteen times the parts, each part the same size):

* ``simulate``      — 16 vehicles × 2 days in shards of 8 (unit: vehicle-days);
* ``training-data`` — 2 Parquet files × 40 C-MAPSS-shaped units (unit: rows);
* ``rul-score``     — the same files, a saved RulRegressor (unit: rows);
* ``fleet-risk``    — a lake of 16 vehicles × 2 days (the maintenance risk scenario), in
  4 VIN shards: signals scanned into indicator buckets per shard, fleet features,
  calibrated FleetRiskModel risks (unit: vehicle samples scanned);
* ``ids-score``     — 2 candump logs of a 20 s drive with an attack (unit: CAN frames);
* ``sigma-hunt``    — 2 event files of the SOC scenario (syslog, access logs, OT and
  vehicle JSON in turn; 20,000 benign events over its five sources) against the SOC's
  shipped Sigma rules (unit: events);
* ``ingest``        — messages queued on a private Mosquitto for the group's persistent
  sessions, then drained by 1 or 2 ``fleetops scale ingest`` worker processes sharing
  ``$share/<group>/…`` (unit: signal values; 1× = 500 messages × 60 samples × 4
  signals), timed from the workers' start to their last commit. In this row "local" is
  one plain ``fleetops ingest`` process (no group) and "Ray 1"/"Ray 2" are 1 and 2
  group workers (ingest does not run on Ray: the broker spreads the stream).

The baseline is the local backend (one process, one thread) in the same run. "Ray 1" is
a Ray instance with one worker CPU, "Ray 2" with two: on this 2-core machine Ray 2 is the
most it can show, and the driver, the raylet and the GCS share those two cores. Each
figure is one timed run after a 1× warm-up on the same backend. Generators of the inputs
are the test suite's (``tests/scale/data.py``), so the bench and the tests use one data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from tests.scale.data import can_archive, rul_model, units_frame
from tests.telemetry.helpers import SIGNALS, make_vin

from fleetops.core.envelope import encode_message
from fleetops.core.lake import Lake
from fleetops.scale import LocalBackend, RayBackend, jobs
from fleetops.scale.backend import Backend, JobSummary
from fleetops.sim.scenario import Scenario
from fleetops.telemetry.broker import LocalMosquitto
from fleetops.telemetry.mqtt import publish_messages

REPO = Path(__file__).resolve().parents[1]
SCENARIO = Scenario(days=2)


@dataclass
class Case:
    job: str
    unit: str
    run: Callable[[Backend, int, Path], JobSummary]  # (backend, scale, output folder)


class Inputs:
    """Inputs of every job at every scale, built once (outside the timings)."""

    def __init__(self, root: Path, scales: list[int]) -> None:
        self.root = root
        most = max(scales)
        units = root / "units"
        units.mkdir()
        for i in range(2 * most):
            frame = units_frame(range(1 + i * 40, 1 + (i + 1) * 40), seed=i)
            frame.write_parquet(units / f"units-{i:04d}.parquet")
        self.model = rul_model(root / "model")
        logs, self.ids_model = can_archive(root / "can", logs=2)
        self.logs = [str(root / "can" / f"log-{i:04d}.log") for i in range(2 * most)]
        for i, target in enumerate(self.logs):
            shutil.copy(logs[i % 2], target)
        self.sigma = _sigma_inputs(root / "events", 2 * most)  # 2 files per 1×
        self.risk_lake, self.risk_model = _risk_inputs(root / "risk", scales)

    def units(self, scale: int) -> str:
        """A folder of ``2 × scale`` unit files (links into the full set)."""
        folder = self.root / f"units-{scale}x"
        if not folder.exists():
            folder.mkdir()
            for i in range(2 * scale):
                name = f"units-{i:04d}.parquet"
                os.link(self.root / "units" / name, folder / name)
        return str(folder)


def _sigma_inputs(folder: Path, files: int) -> tuple[list[str], list[Path]] | None:
    try:
        from tests.scale.data import event_archive

        return event_archive(folder, files, events=20_000)
    except ImportError:  # the SOC modules are not installed
        return None


def _risk_inputs(folder: Path, scales: list[int]) -> tuple[dict[int, Path], Path]:
    """A lake per scale (16 vehicles × 2 days per 1×, the risk scenario's faults) and a
    FleetRiskModel trained on a separate fleet."""
    from fleetops.maintenance.fleet import FleetRiskModel, risk_scenario
    from fleetops.sim.fleet import simulate_fleet

    lakes = {}
    for scale in sorted({1, *scales}):
        lake = Lake(folder / f"lake-{scale}x")
        simulate_fleet(risk_scenario(vehicles=16 * scale, days=2, seed=3)).write_to(lake)
        lakes[scale] = lake.root
    train = Lake(folder / "train")
    simulate_fleet(risk_scenario(vehicles=20, days=6, seed=1, fault_rate=0.5)).write_to(train)
    model = FleetRiskModel(components=("tyre_leak",), horizons_h=(72.0,), n_estimators=50)
    model.fit(train).save(folder / "model")
    return lakes, folder / "model"


def cases(inputs: Inputs) -> list[Case]:
    out = [
        Case(
            "simulate",
            "vehicle-days",
            lambda b, s, o: jobs.simulate(b, SCENARIO, str(o), vehicles=16 * s, shard_size=8),
        ),
        Case(
            "training-data",
            "rows",
            lambda b, s, o: jobs.prepare_training(b, inputs.units(s), str(o)),
        ),
        Case(
            "rul-score",
            "rows",
            lambda b, s, o: jobs.score_rul(b, inputs.units(s), inputs.model, str(o)),
        ),
        Case(
            "fleet-risk",
            "samples",
            lambda b, s, o: jobs.fleet_risk(
                b, inputs.risk_lake[s], str(o), model=inputs.risk_model, shards=4
            ),
        ),
        Case(
            "ids-score",
            "frames",
            lambda b, s, o: jobs.ids_score(b, inputs.logs[: 2 * s], inputs.ids_model, str(o)),
        ),
    ]
    if inputs.sigma is not None:
        files, rules = inputs.sigma
        out.append(
            Case(
                "sigma-hunt",
                "events",
                lambda b, s, o: jobs.sigma_hunt(b, files[: 2 * s], [str(r) for r in rules], str(o)),
            )
        )
    return out


def run_backend(
    label: str, backend: Backend, job_cases: list[Case], scales: list[int], root: Path
) -> dict[tuple[str, int], float]:
    """Units per second of each (job, scale) on one backend."""
    rates: dict[tuple[str, int], float] = {}
    for case in job_cases:
        case.run(backend, 1, root / f"warm-{label}-{case.job}")  # imports, caches, pools
        for scale in scales:
            summary = case.run(backend, scale, root / f"out-{label}-{case.job}-{scale}")
            rates[case.job, scale] = summary.rows_in / summary.seconds
            print(
                f"  {label:6} {case.job:14} {scale:>3}×  {summary.rows_in:>10,} "
                f"{case.unit} in {summary.seconds:6.2f} s",
                file=sys.stderr,
            )
    return rates


# -- ingest ------------------------------------------------------------------------------------

MESSAGES_1X = 500
SAMPLES = 60


def _messages(count: int) -> list[tuple[str, bytes]]:
    out = []
    fleet = 50
    for n in range(count):
        vin_no, seq = n % fleet, n // fleet
        ts = 1_767_225_600_000 + (seq * SAMPLES + np.arange(SAMPLES)) * 1000
        sample = np.arange(SAMPLES)
        signals = {p: (vin_no + seq + sample + k) % 30 for k, p in enumerate(SIGNALS)}
        out.append((make_vin(vin_no), encode_message(make_vin(vin_no), seq, ts, signals)))
    return out


def _ingest_cmd(broker: str, lake: Path, group: str | None, worker: str) -> list[str]:
    common = ["--broker", broker, "--lake", str(lake), "--idle-timeout", "1.5"]
    if group is None:
        return [sys.executable, "-m", "fleetops", "ingest", *common, "--consumer", worker]
    return [
        sys.executable, "-m", "fleetops.scale", "ingest", *common,
        "--group", group, "--worker", worker,
    ]  # fmt: skip


def ingest_rate(broker: str, root: Path, workers: int, scale: int, tag: str) -> float:
    """Values per second drained by ``workers`` processes (0: one plain ingest process)."""
    lake = root / f"lake-{tag}"
    group = None if workers == 0 else f"g{tag}"
    names = ["w0"] if workers == 0 else [f"w{i}" for i in range(workers)]
    # sessions first (persistent), so the broker queues what is published meanwhile
    for name in names:
        subprocess.run(
            _ingest_cmd(broker, lake, group, name), check=True, capture_output=True, timeout=60
        )
    count = MESSAGES_1X * scale
    publish_messages(broker, iter(_messages(count)))
    start_wall = time.time()
    procs = [
        subprocess.Popen(_ingest_cmd(broker, lake, group, n), stdout=subprocess.DEVNULL)
        for n in names
    ]
    for proc in procs:
        if proc.wait(600) != 0:
            raise RuntimeError(f"ingest worker failed ({proc.args!r})")
    # from the workers' start to the last commit (not the idle timeout that ended them)
    last_commit = max(p.stat().st_mtime for p in Lake(lake).files("signals"))
    elapsed = last_commit - start_wall
    values = int(Lake(lake).query("SELECT count(*) AS n FROM signals").to_pylist()[0]["n"])
    if values != count * SAMPLES * len(SIGNALS):
        raise RuntimeError(f"ingest landed {values} values, expected {count * SAMPLES * 4}")
    return values / elapsed


# -- the report --------------------------------------------------------------------------------


def fleet_arithmetic(results: dict[str, Any]) -> list[str]:
    """The fleet a cluster of N such nodes carries, from the measured rates (at 16×)."""
    top = max(results["scales"])
    lines = []
    ingest = results["rates"].get(f"ingest/ray2/{top}")
    ingest1 = results["rates"].get(f"ingest/ray1/{top}")
    if ingest:
        per_vehicle = 300  # values/s: "a few hundred signals per second" per vehicle
        lines += [
            f"ingest: one 2-core node drains {ingest:,.0f} values/s with 2 workers "
            f"({ingest / ingest1:.2f}× one worker).",
            f"  vehicles per node = {ingest:,.0f} / {per_vehicle} values/s per vehicle "
            f"= {ingest / per_vehicle:,.0f} vehicles online at once;",
            f"  N nodes (one broker cluster in front, workers scale by share group) = "
            f"N × {ingest / per_vehicle:,.0f}; 1,000,000 vehicles online need "
            f"{1_000_000 * per_vehicle / ingest:,.0f} such nodes "
            f"({1_000_000 * per_vehicle * 1.5 / 24 / ingest:,.0f} if cars are online "
            "1.5 h a day on average).",
        ]
    ids = results["rates"].get(f"ids-score/ray2/{top}")
    if ids:
        frames_day = 3 * 2000 * 3600 * 1.5  # 3 buses × 2,000 frames/s × 1.5 h driving
        lines += [
            f"ids-score: {ids:,.0f} frames/s per node = {ids * 86400:,.3g} frames/day.",
            f"  one vehicle uploads 3 buses × 2,000 frames/s × 1.5 h = {frames_day:,.3g} "
            f"frames/day, so a node scores {ids * 86400 / frames_day:,.0f} vehicles' daily "
            f"logs; N nodes: N × {ids * 86400 / frames_day:,.0f}.",
        ]
    risk = results["rates"].get(f"fleet-risk/ray2/{top}")
    if risk:
        per_day = 5_500  # samples per vehicle-day: 1 Hz over 1.5 h of driving + heartbeats
        days = risk * 86400 / per_day
        lines.append(
            f"fleet-risk: {risk:,.0f} samples/s per node × 86,400 / {per_day:,} samples per "
            f"vehicle-day = {days:,.0f} vehicle-days per node-day; a 1,000,000-vehicle daily "
            f"run takes {24 * 1_000_000 / days:,.1f} h / N."
        )
    sim = results["rates"].get(f"simulate/ray2/{top}")
    if sim:
        lines.append(
            f"simulate: {sim:,.1f} vehicle-days/s per node: a 1,000,000-vehicle day takes "
            f"1,000,000 / ({sim:,.1f} × N) s = {1_000_000 / sim / 3600:,.1f} h / N."
        )
    return lines


def print_report(results: dict[str, Any], units: dict[str, str]) -> None:
    table = Table(title="scale-out: throughput per job (units/s), local backend vs Ray")
    for name in ("job", "data", "units", "local", "Ray 1", "Ray 2", "Ray 2 / Ray 1",
                 "Ray 2 / local", "local s/unit vs 1×"):  # fmt: skip
        table.add_column(name, justify="left" if name in ("job", "units") else "right")
    rates = results["rates"]
    for job in results["jobs"]:
        for scale in results["scales"]:
            local = rates.get(f"{job}/local/{scale}", float("nan"))
            one = rates.get(f"{job}/ray1/{scale}", float("nan"))
            two = rates.get(f"{job}/ray2/{scale}", float("nan"))
            base = rates.get(f"{job}/local/{results['scales'][0]}", float("nan"))
            table.add_row(
                job,
                f"{scale}×",
                units[job],
                f"{local:,.0f}",
                f"{one:,.0f}",
                f"{two:,.0f}",
                f"{two / one:.2f}",
                f"{two / local:.2f}",
                f"{base / local:.2f}",
            )
    console = Console(width=140)
    console.print(table)
    for line in fleet_arithmetic(results):
        console.print(line, highlight=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="1,4,16")
    parser.add_argument("--out", type=Path, default=None, help="Write the rates as JSON.")
    parser.add_argument("--no-ingest", action="store_true")
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    root = Path(tempfile.mkdtemp(prefix="fleetops-bench-scale-"))
    started = time.perf_counter()
    try:
        inputs = Inputs(root, scales)
        job_cases = cases(inputs)
        units = {c.job: c.unit for c in job_cases} | {"ingest": "values"}
        rates: dict[str, float] = {}
        print("local backend", file=sys.stderr)
        for (job, scale), rate in run_backend(
            "local", LocalBackend(), job_cases, scales, root
        ).items():
            rates[f"{job}/local/{scale}"] = rate
        for cpus in (1, 2):
            print(f"Ray, {cpus} worker(s)", file=sys.stderr)
            backend = RayBackend(num_cpus=cpus)
            try:
                measured = run_backend(f"ray{cpus}", backend, job_cases, scales, root)
            finally:
                backend.close()
            for (job, scale), rate in measured.items():
                rates[f"{job}/ray{cpus}/{scale}"] = rate
        jobs_run = [c.job for c in job_cases]
        if not args.no_ingest:
            print("ingest", file=sys.stderr)
            with LocalMosquitto(folder=root / "mosquitto") as broker:
                for scale in scales:
                    for workers, label in ((0, "local"), (1, "ray1"), (2, "ray2")):
                        rate = ingest_rate(broker.url, root, workers, scale, f"{label}{scale}")
                        rates[f"ingest/{label}/{scale}"] = rate
                        print(f"  ingest {label} {scale}× {rate:,.0f} values/s", file=sys.stderr)
            jobs_run.append("ingest")
        results = {
            "scales": scales,
            "jobs": jobs_run,
            "rates": rates,
            "seconds": round(time.perf_counter() - started, 1),
            "command": " ".join(["python -m bench.scale", *sys.argv[1:]]),
        }
        print_report(results, units)
        print(f"whole run: {results['seconds']} s", file=sys.stderr)
        if args.out is not None:
            args.out.write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
