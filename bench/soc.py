"""Cyber defence centre end to end: detection on the scenarios, false incidents, speed, Modbus.

    .venv/bin/python -m bench.soc [--benign 1000000] [--seed 7] [--quick]

One table:

* **scenarios**: :func:`fleetops.security.soc.scenarios.generate` writes three days of
  benign traffic of the four domains as raw log lines (``--benign`` events in the two live
  days, half as many in the day of history before) plus the four attacks. The live files
  are parsed, the starter rule pack and the anomaly models (fitted on the parsed history
  files) run over them, and the findings are correlated. Per scenario: the incidents
  holding its findings (goal: exactly 1), recall (share of its records that incident
  accounts for: same entity, within its time span ± 1 h) and purity (share of the
  incident's findings that are the scenario's). Then false incidents (no scenario finding)
  per 10⁶ benign events (goal ≤ 1).
* **parsing**: events/s per format on the scenario files and on the public samples
  (``bench_parsers``, per wall and per CPU second); no baseline.
* **parse + Sigma**: the real web access log and loghub Linux + OpenSSH logs, repeated,
  parsed and run through SigmaHQ's web + linux rules and the pack (``bench_end_to_end``),
  events per CPU-second, against the same parse + the naive per-event matcher of the same
  rules on the same parsed events; goal ≥ 400 k events/s/core (floor 100 k).
* **Sigma**: the columnar engine with SigmaHQ's rules + the pack against a naive per-event
  Python matcher of the same rules on the same events (``bench_sigma``); goal ≥ 400 k
  events/s (floor 100 k) on one core.
* **Modbus**: per capture of ``ot_modbus``, packet precision / recall of OT detection (the
  PLC model, fitted on the benign packets of the other captures, + the pack's OT rules)
  against the per-packet labels.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from fleetops.config import shared_data_dir
from fleetops.core.ocsf import EventBatch
from fleetops.security.soc.anomaly import PlcModel
from fleetops.security.soc.correlate import correlate
from fleetops.security.soc.parsers import bench_end_to_end, bench_parsers, parse_file
from fleetops.security.soc.pipeline import evaluate_incidents, load_ruleset, run_models
from fleetops.security.soc.scenarios import FILE_FORMATS, generate
from fleetops.security.soc.sigma.bench import bench_sigma

PACK = Path(__file__).resolve().parents[1] / "src" / "fleetops" / "security" / "soc" / "rules"
Row = tuple[str, str, str, str, str]  # case, ours, baseline, ratio, goal


def _parse_all(paths: dict[str, Path], speeds: dict[str, list[float]]) -> EventBatch:
    batches = []
    for name, path in paths.items():
        start, cpu = time.perf_counter(), time.process_time()
        batch = parse_file(path, FILE_FORMATS[name])
        speed = speeds.setdefault(FILE_FORMATS[name], [0.0, 0.0, 0.0])
        speed[0] += batch.parsed
        speed[1] += time.perf_counter() - start
        speed[2] += time.process_time() - cpu
        batches.append(batch)
    return EventBatch.concat(batches)


def scenario_rows(benign: int, seed: int, console: Console) -> tuple[list[Row], dict[str, Any]]:
    total = int(benign * 1.5)  # 3 days: 1 of history, 2 live
    start = time.perf_counter()
    data = generate(total, seed=seed, days=3, history_days=1)
    history, live = data.split()
    timings: dict[str, float] = {"generate": time.perf_counter() - start}
    speeds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        hist_paths = history.write(Path(tmp) / "history")
        live_paths = live.write(Path(tmp) / "live")
        console.print(f"generated {total:,} benign + attack records in {timings['generate']:.1f} s")
        start = time.perf_counter()
        hist = _parse_all(hist_paths, speeds)
        batch = _parse_all(live_paths, speeds)
        timings["parse"] = time.perf_counter() - start
        rules = load_ruleset([PACK])
        start = time.perf_counter()
        sigma = rules.evaluate(batch)
        timings["sigma"] = time.perf_counter() - start
        start = time.perf_counter()
        models = run_models(hist.events, batch.events)
        timings["models"] = time.perf_counter() - start
        findings = pl.concat([sigma, models], how="vertical")
        start = time.perf_counter()
        incidents = correlate(findings, batch.events)
        timings["correlate"] = time.perf_counter() - start
        result = evaluate_incidents(batch.events, live.truth(live_paths), findings, incidents)
    rows: list[Row] = []
    for s in result["scenarios"]:
        rows.append(
            (
                f"scenario {s['scenario']} ({s['records']:,} records, {s['findings']} flagged)",
                f"{s['incidents']} incident, recall {s['recall']:.2f}, purity {s['purity']:.2f}",
                "",
                "",
                "1 incident " + ("✓" if s["incidents"] == 1 else "✗"),
            )
        )
    per_m = result["false_per_million"]
    rows.append(
        (
            f"false incidents ({result['benign_events']:,} benign live events, "
            f"{findings.height:,} findings, {len(incidents)} incidents)",
            f"{result['false_incidents']} = {per_m:.2f} per 10⁶",
            "",
            "",
            "≤ 1 per 10⁶ " + ("✓" if per_m <= 1 else "✗"),
        )
    )
    for fmt, (events, seconds, cpu) in sorted(speeds.items()):
        rows.append(
            (
                f"parse {fmt} (scenario files)",
                f"{events / seconds:,.0f} events/s ({events / cpu:,.0f} per CPU-s)",
                "",
                "",
                "",
            )
        )
    timings["rules"] = len(rules.rules)
    return rows, timings


def parser_rows(shared: Path) -> list[Row]:
    return [
        (
            f"parse {r['format']} (public sample, {r['events']:,} events)",
            f"{r['events_per_s']:,} events/s ({r['events_per_cpu_s']:,} per CPU-s)",
            "",
            "",
            "",
        )
        for r in bench_parsers(shared)
    ]


def sigma_rows(shared: Path, quick: bool) -> list[Row]:
    got = bench_sigma(shared, copies=3 if quick else 10, naive_events=5_000 if quick else 20_000)
    fast, naive = got[0], got[1]
    ratio = fast["events_per_s"] / max(naive["events_per_s"], 1)
    per_cpu = fast.get("events_per_cpu_s") or fast["events_per_s"]
    goal = "≥ 400 k/s/core " + (
        "✓" if per_cpu >= 400_000 else ("floor 100 k ✓" if per_cpu >= 100_000 else "✗")
    )
    return [
        (
            f"Sigma {fast['rules']} rules ({fast['refused']} refused), {fast['events']:,} events",
            f"{fast['events_per_s']:,} events/s ({per_cpu:,} per CPU-s)",
            f"naive {naive['events_per_s']:,} events/s",
            f"{ratio:.1f}",
            goal,
        )
    ]


def end_to_end_rows(shared: Path, quick: bool) -> list[Row]:
    got = bench_end_to_end(
        shared, copies=3 if quick else 10, naive_events=4_000 if quick else 10_000
    )
    if got is None:
        return [("parse + Sigma (web access + loghub Linux/OpenSSH)", "absent", "", "", "")]
    per_cpu = got["events_per_cpu_s"]
    goal = "≥ 400 k/s/core " + (
        "✓" if per_cpu >= 400_000 else ("✗, floor 100 k ✓" if per_cpu >= 100_000 else "✗")
    )
    return [
        (
            f"parse + Sigma {got['rules']} rules ({got['refused']} refused), web access + "
            f"Linux/OpenSSH, {got['events']:,} events",
            f"{per_cpu:,} events/CPU-s (parse {got['parse_events_per_cpu_s']:,}, "
            f"Sigma {got['sigma_events_per_cpu_s']:,})",
            f"parse + naive {got['naive_events_per_cpu_s']:,} events/CPU-s"
            + ("" if got["agrees_with_columnar"] else " (DISAGREES)"),
            f"{got['ratio']:.1f}",
            goal,
        )
    ]


def modbus_rows(shared: Path) -> list[Row]:
    root = shared / "ot_modbus"
    captures = sorted(
        p.stem for p in root.glob("*.pcap") if (root / f"{p.stem}_labeled.csv").is_file()
    )
    if not captures:
        return [("Modbus captures", "absent", "", "", "")]
    rules = load_ruleset([PACK])
    data = {}
    for c in captures:
        batch = parse_file(root / f"{c}.pcap", "modbus-pcap")
        labels = pl.read_csv(
            root / f"{c}_labeled.csv",
            has_header=False,
            separator=";",
            new_columns=["record_index", "label"],
        )
        y = batch.events.join(labels, on="record_index", how="left")["label"].fill_null(0)
        data[c] = (batch, y.to_numpy() == 1)
    rows: list[Row] = []
    for c in captures:
        train = pl.concat(
            [data[o][0].events.filter(pl.Series(~data[o][1])) for o in captures if o != c]
        )
        batch, y = data[c]
        model = PlcModel().fit(train).flag_events(batch.events).to_numpy()
        hits = rules.evaluate(batch)["record_index"].unique()
        sigma = batch.events["record_index"].is_in(hits.implode()).to_numpy()
        flagged = model | sigma
        tp = int((flagged & y).sum())
        precision = tp / max(int(flagged.sum()), 1)
        recall = tp / max(int(y.sum()), 1)
        m_tp = int((model & y).sum())
        rows.append(
            (
                f"Modbus {c} ({len(y):,} packets, {int(y.sum()):,} attack)",
                f"P {precision:.3f} R {recall:.3f}",
                f"model alone P {m_tp / max(int(model.sum()), 1):.3f} R {m_tp / max(int(y.sum()), 1):.3f}",
                "",
                "",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benign", type=int, default=1_000_000, help="benign live events")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="100 k benign events, fewer copies")
    args = parser.parse_args()
    benign = 100_000 if args.quick else args.benign
    console = Console(width=160)
    shared = shared_data_dir()
    rows, timings = scenario_rows(benign, args.seed, console)
    if shared.is_dir():
        rows += parser_rows(shared)
        rows += sigma_rows(shared, args.quick)
        rows += end_to_end_rows(shared, args.quick)
        rows += modbus_rows(shared)
    else:
        console.print(f"[yellow]{shared} is absent: public-data rows skipped")
    table = Table(title=f"cyber defence centre (seed {args.seed})")
    for name in ("case", "ours", "baseline", "ratio", "goal"):
        table.add_column(name, justify="left" if name in ("case", "goal") else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(
        "time: "
        + ", ".join(
            f"{k} {v:.1f} s" if isinstance(v, float) else f"{k} {v}" for k, v in timings.items()
        ),
        highlight=False,
    )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
