"""Footprint plans as ``fleetops footprint plan --out DIR`` writes them, read for the console.

A plan is a folder under the plans root holding ``summary.json``, ``hosts.csv`` and
``placement.csv`` (and ``workloads.csv``); see :mod:`fleetops.footprint.report`.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from fleetops.core.errors import ConfigError

_PLAN_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class FootprintPlans:
    def __init__(self, root: Path) -> None:
        self.root = root

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and _PLAN_NAME.match(p.name) and (p / "summary.json").is_file()
        )

    def _folder(self, name: str) -> Path | None:
        if not _PLAN_NAME.match(name) or name.startswith("."):
            return None
        folder = self.root / name
        return folder if (folder / "summary.json").is_file() else None

    def summary(self, name: str) -> dict[str, Any] | None:
        folder = self._folder(name)
        if folder is None:
            return None
        try:
            meta = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"footprint plan {folder} is unreadable: {exc}") from exc
        s = meta.get("summary") or {}
        return {
            "name": name,
            "hosts_used": int(meta["hosts_used"]),
            "lower_bound": int(meta["lower_bound"]),
            "ffd_hosts": int(meta["ffd_hosts"]),
            "gap": float(meta["gap"]),
            "optimal": bool(meta.get("optimal", False)),
            "headroom": float(meta["headroom"]),
            "demand_definition": str(meta.get("demand_definition", "")),
            "baseline_hosts": s.get("baseline_hosts"),
            "reduction": s.get("reduction"),
            "summary": s,
            "notes": [str(n) for n in [*meta.get("notes", []), *meta.get("log", [])]],
        }

    def detail(self, name: str) -> dict[str, Any] | None:
        plan = self.summary(name)
        if plan is None:
            return None
        folder = self.root / name
        try:
            with (folder / "workloads.csv").open(newline="") as fh:
                demand = {
                    r["workload"]: (float(r["cpu_demand"]), float(r["memory_demand"]))
                    for r in csv.DictReader(fh)
                }
            with (folder / "hosts.csv").open(newline="") as fh:
                hosts = {
                    r["host"]: [float(r["cpu_capacity"]), float(r["memory_capacity"]), 0.0, 0.0, 0]
                    for r in csv.DictReader(fh)
                }
            with (folder / "placement.csv").open(newline="") as fh:
                for r in csv.DictReader(fh):
                    cpu, mem = demand[r["workload"]]
                    entry = hosts[r["host"]]
                    entry[2] += cpu
                    entry[3] += mem
                    entry[4] += 1
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"footprint plan {folder} is unreadable: {exc}") from exc
        plan["hosts"] = [
            {
                "host": h,
                "cpu_capacity": v[0],
                "memory_capacity": v[1],
                "cpu_used": v[2],
                "memory_used": v[3],
                "workloads": v[4],
            }
            for h, v in hosts.items()
            if v[4] > 0
        ]
        return plan
