"""Scale-out: the same pipelines on a Ray cluster, and horizontally scaled ingest.

>>> from fleetops.scale import backend_from_config, jobs        # doctest: +SKIP
>>> backend = backend_from_config("ray", address="head:6379")   # doctest: +SKIP
>>> jobs.simulate(backend, scenario, "lake-big", vehicles=100_000)  # doctest: +SKIP

See docs/scale.md.
"""

from fleetops.scale.backend import (
    BACKEND_ENV,
    RAY_ADDRESS_ENV,
    Backend,
    JobSummary,
    LocalBackend,
    RayBackend,
    WorkerLostError,
    backend_from_config,
)

__all__ = [
    "BACKEND_ENV",
    "RAY_ADDRESS_ENV",
    "Backend",
    "JobSummary",
    "LocalBackend",
    "RayBackend",
    "WorkerLostError",
    "backend_from_config",
]
