"""Execution backends: where the parts of a job run.

A job is a list of *parts* (a shard of vehicles, one input file, …) and one top-level
function that turns a part into a small result (counts, the path it wrote). Both backends
call the same function on the same parts; only the place differs:

* :class:`LocalBackend` — in this process, in order (or on a few threads);
* :class:`RayBackend` — Ray tasks on a cluster (``ray.init(address=…)``) or a Ray instance
  it starts on this machine; a part whose worker dies is run again (``max_retries``), and
  row-local batch functions over Parquet files go through Ray Data (:meth:`map_batches`).

Results come back in the order of the parts, so what a job assembles from them does not
depend on the backend or on which worker finished first.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import pyarrow as pa

from fleetops.core.errors import ConfigError, FleetopsError, ServiceUnavailableError

P = TypeVar("P")
R = TypeVar("R")

BACKEND_ENV = "FLEETOPS_BACKEND"
RAY_ADDRESS_ENV = "FLEETOPS_RAY_ADDRESS"
RAY_CPUS_ENV = "FLEETOPS_RAY_CPUS"
DEFAULT_RETRIES = 3
DEFAULT_OBJECT_STORE = 200 * 1024 * 1024

Progress = Callable[[int, int], None]  # (parts done, parts in all)


class WorkerLostError(FleetopsError):
    """A part of a distributed job could not complete: its worker died beyond the retries."""

    exit_code = 3


@dataclass
class JobSummary:
    """What one distributed job did: shown by the CLI, returned to notebooks."""

    job: str
    backend: str
    workers: int
    parts: int
    seconds: float
    rows_in: int = 0
    rows_out: int = 0
    output: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows_in / max(self.seconds, 1e-9)

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "backend": self.backend,
            "workers": self.workers,
            "parts": self.parts,
            "seconds": round(self.seconds, 3),
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_per_s": round(self.rows_per_s),
            "output": self.output,
            **self.extra,
        }


class Backend(Protocol):
    """Runs the parts of a job; see the module docstring."""

    name: str

    @property
    def workers(self) -> int:
        """How many parts can run at once."""
        ...

    def map_parts(
        self,
        fn: Callable[[P], R],
        parts: Sequence[P],
        *,
        job: str = "job",
        progress: Progress | None = None,
    ) -> list[R]:
        """``[fn(p) for p in parts]``, possibly in parallel; results in the order of ``parts``."""
        ...

    def map_batches(
        self,
        fn: Callable[[pa.Table], pa.Table],
        files: Sequence[str],
        *,
        job: str = "job",
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """``fn`` over record batches of Parquet ``files``, concatenated.

        ``fn`` must be row-local (a batch may hold any rows of any file) and the order of
        the result is unspecified: callers sort by their own keys.
        """
        ...

    def close(self) -> None: ...


class LocalBackend:
    """The embedded default: parts run in this process (``threads`` at a time)."""

    name = "local"

    def __init__(self, threads: int = 1) -> None:
        if threads < 1:
            raise ConfigError("the local backend needs at least one thread")
        self.threads = threads

    @property
    def workers(self) -> int:
        return self.threads

    def map_parts(
        self,
        fn: Callable[[P], R],
        parts: Sequence[P],
        *,
        job: str = "job",
        progress: Progress | None = None,
    ) -> list[R]:
        results: list[R] = []
        if self.threads == 1:
            for part in parts:
                results.append(fn(part))
                if progress is not None:
                    progress(len(results), len(parts))
            return results
        with ThreadPoolExecutor(self.threads, thread_name_prefix=f"fleetops-{job}") as pool:
            for result in pool.map(fn, parts):
                results.append(result)
                if progress is not None:
                    progress(len(results), len(parts))
        return results

    def map_batches(
        self,
        fn: Callable[[pa.Table], pa.Table],
        files: Sequence[str],
        *,
        job: str = "job",
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        from fleetops.scale.storage import read_parquet

        outputs = self.map_parts(lambda path: fn(read_parquet(path, columns)), files, job=job)
        return _concat(outputs)

    def close(self) -> None:
        pass


class RayBackend:
    """Ray tasks on a cluster given by ``address`` (``host:port``, ``ray://host:port`` or
    ``auto``), or on a Ray instance started here with ``num_cpus`` when ``address`` is None.

    A part whose worker process or node dies is run again, up to ``max_retries`` times;
    beyond that the job stops with :class:`WorkerLostError`. An address that does not
    answer is a :class:`ServiceUnavailableError` at once (Ray itself would retry for
    minutes). When Ray is already initialised in this process (a notebook, the tests),
    that connection is used and left open by :meth:`close`.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        max_retries: int = DEFAULT_RETRIES,
        object_store_memory: int = DEFAULT_OBJECT_STORE,
    ) -> None:
        import ray

        self.address = address
        self.max_retries = max_retries
        self._started = False
        if not ray.is_initialized():
            if address is not None and address != "auto":
                _check_reachable(address)
            try:
                if address is None:
                    ray.init(
                        num_cpus=num_cpus,
                        include_dashboard=False,
                        object_store_memory=object_store_memory,
                        log_to_driver=False,
                        configure_logging=False,
                    )
                else:
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, TimeoutError) as exc:
                raise ServiceUnavailableError(
                    f"cannot reach the Ray cluster at {address or 'a local instance'}: {exc}"
                ) from exc
            self._started = True
        self._remote_cache: dict[int, Any] = {}

    @property
    def workers(self) -> int:
        import ray

        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        return max(1, int(resources.get("CPU", 1)))

    def map_parts(
        self,
        fn: Callable[[P], R],
        parts: Sequence[P],
        *,
        job: str = "job",
        progress: Progress | None = None,
    ) -> list[R]:
        import ray
        from ray.exceptions import (
            NodeDiedError,
            ObjectLostError,
            OutOfMemoryError,
            RayTaskError,
            WorkerCrashedError,
        )

        task: Any = ray.remote(num_cpus=1, max_retries=self.max_retries, retry_exceptions=False)(
            _call
        ).options(name=f"fleetops-{job}")
        fn_ref = ray.put(fn)
        pending = {task.remote(fn_ref, part): i for i, part in enumerate(parts)}
        results: list[Any] = [None] * len(parts)
        done = 0
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    index = pending.pop(ref)
                    try:
                        results[index] = ray.get(ref)
                    except RayTaskError as exc:
                        cause = getattr(exc, "cause", None)
                        if isinstance(cause, FleetopsError):
                            raise cause from None
                        raise FleetopsError(f"{job}: part {index} failed: {cause or exc}") from exc
                    except (WorkerCrashedError, NodeDiedError, ObjectLostError) as exc:
                        raise WorkerLostError(
                            f"{job}: part {index} lost its worker {self.max_retries + 1} times "
                            f"(retries exhausted): {type(exc).__name__}"
                        ) from exc
                    except OutOfMemoryError as exc:
                        raise WorkerLostError(f"{job}: part {index} ran out of memory") from exc
                    done += 1
                    if progress is not None:
                        progress(done, len(parts))
        finally:
            if pending:  # a part failed: stop the others before the caller cleans up
                for ref in pending:
                    ray.cancel(ref, force=True)
                ray.wait(list(pending), num_returns=len(pending), timeout=30)
        return results

    def map_batches(
        self,
        fn: Callable[[pa.Table], pa.Table],
        files: Sequence[str],
        *,
        job: str = "job",
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        if not files:
            return _concat([])
        import ray.data

        # One row per file; each worker reads its files with the same reader as the local
        # backend (local paths or fsspec URLs), so both see the same rows.
        dataset = ray.data.from_items(
            [{"path": str(f)} for f in files], override_num_blocks=len(files)
        )
        mapped = dataset.map_batches(
            _ReadAndApply(fn, None if columns is None else list(columns)),
            batch_format="pyarrow",
            batch_size=1,
            max_retries=self.max_retries,
        )
        return _concat(list(mapped.iter_batches(batch_format="pyarrow", batch_size=None)))

    def close(self) -> None:
        import ray

        if self._started and ray.is_initialized():
            ray.shutdown()
        self._started = False


class _ReadAndApply:
    """A Ray Data batch of file paths → ``fn`` over each file's rows."""

    def __init__(self, fn: Callable[[pa.Table], pa.Table], columns: list[str] | None) -> None:
        self.fn = fn
        self.columns = columns

    def __call__(self, batch: pa.Table) -> pa.Table:
        from fleetops.scale.storage import read_parquet

        return _concat([self.fn(read_parquet(p, self.columns)) for p in batch["path"].to_pylist()])


def _call(fn: Callable[[P], R], part: P) -> R:
    return fn(part)


def _concat(tables: Sequence[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t is not None]
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="default")


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    bare = address.removeprefix("ray://")
    host, _, port = bare.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address {address!r}: expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ServiceUnavailableError(f"cannot reach the Ray cluster at {address}: {exc}") from exc


def backend_from_config(
    name: str | None = None,
    *,
    address: str | None = None,
    workers: int | None = None,
) -> Backend:
    """The backend the configuration names: ``name`` or ``$FLEETOPS_BACKEND`` (default
    ``local``); for ``ray`` the cluster ``address`` or ``$FLEETOPS_RAY_ADDRESS`` (none: a
    Ray instance on this machine with ``workers`` or ``$FLEETOPS_RAY_CPUS`` CPUs)."""
    chosen = (name or os.environ.get(BACKEND_ENV) or "local").strip().lower()
    if chosen == "local":
        return LocalBackend(threads=workers or 1)
    if chosen == "ray":
        cpus = workers or (int(os.environ[RAY_CPUS_ENV]) if os.environ.get(RAY_CPUS_ENV) else None)
        return RayBackend(address or os.environ.get(RAY_ADDRESS_ENV) or None, num_cpus=cpus)
    raise ConfigError(f"backend {chosen!r}: choose local or ray (${BACKEND_ENV})")


def timed() -> Callable[[], float]:
    """A stopwatch: call the returned function for the seconds since this call."""
    start = time.perf_counter()
    return lambda: time.perf_counter() - start
