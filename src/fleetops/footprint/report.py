"""Plan folder: workloads.csv, hosts.csv, placement.csv, summary.json and report.html."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: reports are rendered on servers
import matplotlib.pyplot as plt
import numpy as np

from fleetops.core.errors import ConfigError
from fleetops.footprint.model import Demand, Plan
from fleetops.footprint.summary import Summary


def write_plan(out: Path, plan: Plan, demand: Demand, summary: Summary, notes: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "workloads.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        extra = [f"cpu_h{t:02d}" for t in range(demand.buckets)] if demand.time_aware else []
        w.writerow(["workload", "cpu_demand", "memory_demand", "storage_demand", *extra])
        for i, name in enumerate(demand.names):
            v = demand.values[i]
            w.writerow(
                [
                    name,
                    f"{v[0].max():.6g}",
                    f"{v[1].max():.6g}",
                    f"{v[2].max():.6g}",
                    *(f"{x:.6g}" for x in v[0]),
                ]
                if extra
                else [name, f"{v[0].max():.6g}", f"{v[1].max():.6g}", f"{v[2].max():.6g}"]
            )
    with (out / "hosts.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["host", "cpu_capacity", "memory_capacity", "site", "type", "headroom"])
        for h in plan.hosts.values():
            w.writerow(
                [h.name, f"{h.cpu:g}", f"{h.memory_gb:g}", h.site, h.type, f"{plan.headroom:g}"]
            )
    with (out / "placement.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["workload", "host"])
        for name in demand.names:
            w.writerow([name, plan.assignment[name]])
    meta = {
        "hosts_used": plan.hosts_used,
        "lower_bound": plan.lower_bound,
        "gap": plan.gap,
        "ffd_hosts": plan.ffd_hosts,
        "optimal": plan.optimal,
        "solve_seconds": plan.solve_seconds,
        "headroom": plan.headroom,
        "demand_definition": demand.definition,
        "log": plan.log,
        "notes": notes,
        "summary": asdict(summary),
    }
    (out / "summary.json").write_text(json.dumps(meta, indent=2))
    render(out)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def render(out: Path) -> Path:
    """(Re-)render ``report.html`` from the CSVs and summary.json in a plan folder."""
    try:
        meta = json.loads((out / "summary.json").read_text())
        with (out / "workloads.csv").open() as fh:
            demand = {
                r["workload"]: (float(r["cpu_demand"]), float(r["memory_demand"]))
                for r in csv.DictReader(fh)
            }
        with (out / "hosts.csv").open() as fh:
            hosts = {
                r["host"]: (float(r["cpu_capacity"]), float(r["memory_capacity"]))
                for r in csv.DictReader(fh)
            }
        with (out / "placement.csv").open() as fh:
            placement = [(r["workload"], r["host"]) for r in csv.DictReader(fh)]
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{out}: not a readable plan folder ({exc})") from None
    used = {h: np.zeros(2) for h in hosts}
    for wname, h in placement:
        used[h] += demand[wname]
    fill = (
        np.array([used[h] / np.maximum(hosts[h], 1e-12) for h in hosts])
        if hosts
        else np.zeros((0, 2))
    )
    fig, ax = plt.subplots(figsize=(8, 3))
    if len(fill):
        order = np.argsort(-fill[:, 0])
        ax.plot(fill[order, 0] * 100, label="CPU")
        ax.plot(fill[order, 1] * 100, label="memory")
    ax.axhline(meta["headroom"] * 100, color="k", ls="--", lw=1, label="headroom")
    ax.set_xlabel("host (sorted by CPU)")
    ax.set_ylabel("% of capacity (peak demand)")
    ax.legend()
    fill_png = _png(fig)
    s = meta["summary"]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(
        ["baseline", "FFD", "plan", "lower bound"],
        [s["baseline_hosts"], meta["ffd_hosts"], meta["hosts_used"], meta["lower_bound"]],
    )
    ax.set_ylabel("hosts")
    hosts_png = _png(fig)
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in [
            ("hosts used", meta["hosts_used"]),
            ("lower bound", meta["lower_bound"]),
            ("gap vs lower bound", f"{meta['gap']:.1%}"),
            ("first-fit-decreasing", meta["ffd_hosts"]),
            ("baseline", f"{s['baseline_hosts']} ({s['baseline_definition']})"),
            ("reduction vs baseline", f"{s['reduction']:.1%}"),
            (
                "vs target reduction",
                f"{s['reduction'] - s['target_reduction']:+.1%} (target {s['target_reduction']:.0%})",
            ),
            ("hosts freed", s["hosts_freed"]),
            ("racks before / after", f"{s['racks_before']} / {s['racks_after']}"),
            ("power before / after (W)", f"{s['power_before_w']:g} / {s['power_after_w']:g}"),
            ("cost after per month", f"{s['cost_after_per_month']:g}"),
            ("demand definition", meta["demand_definition"]),
            ("solve time (s)", f"{meta['solve_seconds']:.2f}"),
        ]
    )
    waves = "".join(
        f"<li>{html.escape(', '.join(w[:20]))}{' …' if len(w) > 20 else ''}</li>"
        for w in s["waves"]
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in [*meta["notes"], *meta["log"]])
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Footprint plan</title></head><body>"
        f"<h1>Footprint plan</h1><table>{rows}</table>"
        f"<h2>Hosts</h2><img src='data:image/png;base64,{hosts_png}'>"
        f"<h2>Host fill</h2><img src='data:image/png;base64,{fill_png}'>"
        f"<h2>Migration waves ({len(s['waves'])})</h2><ol>{waves}</ol>"
        f"<h2>Notes</h2><ul>{notes}</ul></body></html>"
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
