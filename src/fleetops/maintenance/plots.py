"""Plots of the maintenance models (PNG files, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt
import polars as pl
from matplotlib.figure import Figure

from fleetops.core.errors import ConfigError


def save(fig: Figure, path: Path | str) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=96, bbox_inches="tight")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write ({exc.strerror})") from None
    finally:
        plt.close(fig)
    return path


def reliability_figure(table: pl.DataFrame, title: str = "") -> Figure:
    """Observed failure rate against mean forecast per bin; the diagonal is perfect."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    ax.plot(table["mean_forecast"], table["observed"], marker="o", label="model")
    for x, y, n in zip(table["mean_forecast"], table["observed"], table["count"], strict=True):
        ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("forecast probability of failure")
    ax.set_ylabel("observed failure rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title or "reliability")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def reliability_plot(table: pl.DataFrame, path: Path | str, title: str = "") -> Path:
    return save(reliability_figure(table, title), path)


def waterfall_figure(
    labels: Sequence[str], contributions: Sequence[float], bias: float, title: str, unit: str
) -> Figure:
    """Waterfall: from the model's base value, each driver's push, to the prediction."""
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) + 1.6))
    running = bias
    ys = list(range(len(labels) + 1, -1, -1))
    ax.barh(ys[0], bias, color="#bbbbbb")
    names = ["base value (fleet average)"]
    for y, label, c in zip(ys[1:-1], labels, contributions, strict=True):
        ax.barh(y, c, left=running, color="#C44E52" if c > 0 else "#4C72B0")
        running += c
        names.append(label)
    ax.barh(ys[-1], running, color="#55A868")
    names.append("prediction")
    ax.set_yticks(ys, names, fontsize=8)
    ax.set_xlabel(unit)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    return fig
