"""Turn measured or declared usage into the demand the solver packs.

Percentile mode: one value per workload and dimension, the p-th percentile of all its
samples. Time-aware mode: 24 values, the p-th percentile of the samples in each hour of
the day, so two workloads whose busy hours differ can share a host. Storage is constant.
"""

from __future__ import annotations

import numpy as np

from fleetops.core.errors import ValidationError
from fleetops.footprint.model import HOURS, Demand, FloatArray, Series, Workload


def _bucket_percentiles(hour: np.ndarray, values: FloatArray, q: float) -> FloatArray:
    counts = np.bincount(hour, minlength=HOURS)
    overall = float(np.percentile(values, q))
    if counts.min() > 0 and (counts == counts[0]).all():
        # Regular grid (the common case): one vectorised call instead of 24.
        order = np.argsort(hour, kind="stable")
        grid = values[order].reshape(HOURS, int(counts[0]))
        return np.asarray(np.percentile(grid, q, axis=1), dtype=np.float64)
    out = np.full(HOURS, overall)
    for h in np.nonzero(counts)[0]:
        out[h] = np.percentile(values[hour == h], q)
    # An hour with no samples gets the overall percentile: unknown is not zero.
    return out


def _series_demand(series: Series, q: float, time_aware: bool) -> tuple[FloatArray, FloatArray]:
    if time_aware:
        return (
            _bucket_percentiles(series.hour, series.cpu, q),
            _bucket_percentiles(series.hour, series.memory_gb, q),
        )
    return (
        np.array([np.percentile(series.cpu, q)]),
        np.array([np.percentile(series.memory_gb, q)]),
    )


def _declared(values: dict[float, float], q: float, name: str, what: str) -> float:
    if q in values:
        return values[q]
    if 0.0 in values:
        return values[0.0]
    have = ", ".join(f"p{k:g}" for k in sorted(values)) or "none"
    raise ValidationError(
        f"workload {name!r}: no {what} demand at percentile {q:g} and no time series "
        f"(declared: {have})"
    )


def build_demand(workloads: list[Workload], percentile: float, time_aware: bool) -> Demand:
    """Demand of every workload as the solver will use it (see the module docstring)."""
    if not 0 < percentile <= 100:
        raise ValidationError(f"percentile must be in (0, 100], got {percentile:g}")
    buckets = HOURS if time_aware else 1
    values = np.zeros((len(workloads), 3, buckets))
    for i, w in enumerate(workloads):
        if w.series is not None and len(w.series.cpu) > 0:
            cpu, mem = _series_demand(w.series, percentile, time_aware)
        else:
            cpu = np.full(buckets, _declared(w.cpu_pct, percentile, w.name, "CPU"))
            mem = np.full(buckets, _declared(w.memory_pct, percentile, w.name, "memory"))
        values[i, 0] = cpu
        values[i, 1] = mem
        values[i, 2] = w.storage_gb
    if time_aware:
        definition = (
            f"p{percentile:g} of each workload's samples within each hour of the day (UTC), "
            "24 values per resource; a host must hold the sum in every hour"
        )
    else:
        definition = f"p{percentile:g} of each workload's samples over the whole trace"
    definition += "; CPU in cores, memory in GB; storage as declared (constant)"
    return Demand(
        names=[w.name for w in workloads],
        values=values,
        definition=definition,
        time_aware=time_aware,
        percentile=percentile,
    )
