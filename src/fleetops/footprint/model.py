"""Data model of the footprint planner: hosts, workloads, target types and plans.

Units everywhere: CPU in cores, memory and storage in GB (GiB where the source is binary),
power in watts, prices per month, time in Unix seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fleetops.core.errors import ValidationError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

HOURS = 24  # time-aware buckets: hour of day (daily cycles dominate data-centre load)


class InfeasibleError(ValidationError):
    """No plan can satisfy the constraints; ``reasons`` names each one that cannot be met."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        more = f"; and {len(reasons) - 10} more" if len(reasons) > 10 else ""
        super().__init__("infeasible: " + "; ".join(reasons[:10]) + more)


@dataclass(frozen=True)
class Host:
    """An existing physical host (or a target host the plan creates)."""

    name: str
    cpu: float
    memory_gb: float
    storage_gb: float = 0.0  # 0 = storage not limited on the host (SAN)
    power_w: float = 0.0
    rack: str = ""
    site: str = ""
    type: str = ""
    licences: frozenset[str] = frozenset()
    cost_per_month: float = 0.0


@dataclass(frozen=True)
class TargetType:
    """A host type or cloud VM size the plan may buy as many of as it needs."""

    name: str
    cpu: float
    memory_gb: float
    storage_gb: float = 0.0
    power_w: float = 0.0
    price_per_month: float = 0.0
    kind: str = "host"  # "host" or "vm"
    licences: frozenset[str] = frozenset()
    hosts_per_rack: int = 20


@dataclass
class Series:
    """Measured demand of one workload: samples with their hour of day."""

    hour: IntArray
    cpu: FloatArray  # cores
    memory_gb: FloatArray


@dataclass
class Workload:
    """A VM or container to place, with its demand and its constraints."""

    name: str
    series: Series | None = None
    # Demand given directly (inventories without series): percentile -> value; key 0 means
    # "this value at every percentile" (requests, or a plain ``cpu`` column).
    cpu_pct: dict[float, float] = field(default_factory=dict)
    memory_pct: dict[float, float] = field(default_factory=dict)
    storage_gb: float = 0.0
    site: str = ""  # data residency: "" = may run at any site
    app_group: str = ""
    current_host: str = ""
    pin_host: str = ""
    licences: frozenset[str] = frozenset()
    affinity: str = ""
    anti_affinity: frozenset[str] = frozenset()
    cpu_alloc: float = 0.0  # provisioned size, for the allocation-based baseline
    memory_alloc_gb: float = 0.0


@dataclass
class Inventory:
    """What an importer read: nothing is dropped without a note here."""

    source: str
    hosts: list[Host] = field(default_factory=list)
    workloads: list[Workload] = field(default_factory=list)
    targets: list[TargetType] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Demand:
    """Demand exactly as the solver uses it: ``values[i, d, t]``, d = cpu, memory, storage."""

    names: list[str]
    values: FloatArray  # shape (n, 3, T)
    definition: str
    time_aware: bool
    percentile: float

    @property
    def buckets(self) -> int:
        return int(self.values.shape[2])

    def peak(self) -> FloatArray:
        """Per workload and dimension, the largest bucket value (n, 3)."""
        return np.asarray(self.values.max(axis=2), dtype=np.float64)


@dataclass
class Plan:
    """A placement and how it was found."""

    assignment: dict[str, str]  # workload -> host
    hosts: dict[str, Host]  # hosts used
    headroom: float
    lower_bound: int
    ffd_hosts: int
    solve_seconds: float
    optimal: bool = False
    log: list[str] = field(default_factory=list)

    @property
    def hosts_used(self) -> int:
        return len(self.hosts)

    @property
    def gap(self) -> float:
        """(hosts used - lower bound) / lower bound; 0 means proven optimal."""
        return (self.hosts_used - self.lower_bound) / max(self.lower_bound, 1)
