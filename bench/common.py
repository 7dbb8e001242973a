"""What every benchmark shares: repeated timing and one rich table of results."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """Fastest wall time of ``repeat`` runs (the least disturbed by a noisy machine)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@dataclass
class Row:
    case: str
    ours: float  # work units per second
    baseline: float
    unit: str
    goal: float | None = None  # minimum ratio ours / baseline, where the issue sets one

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline


def print_table(title: str, rows: list[Row], ours_label: str, baseline_label: str) -> None:
    table = Table(title=title)
    table.add_column("case")
    table.add_column(f"ours ({ours_label})", justify="right")
    table.add_column(f"baseline ({baseline_label})", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("goal", justify="right")
    for row in rows:
        goal = "" if row.goal is None else f"≥ {row.goal:g} {'✓' if row.ratio >= row.goal else '✗'}"
        table.add_row(
            row.case,
            f"{row.ours:,.0f} {row.unit}",
            f"{row.baseline:,.0f} {row.unit}",
            f"{row.ratio:.2f}",
            goal,
        )
    Console(width=120).print(table)
