"""A real local Ray cluster for the scale tests: a head without CPUs and two 1-CPU worker
nodes (separate raylets and worker processes), started once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fleetops.scale.backend import RayBackend

OBJECT_STORE = 100 * 1024 * 1024


@pytest.fixture(scope="session")
def ray_backend() -> Iterator[RayBackend]:
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "object_store_memory": OBJECT_STORE},
    )
    for _ in range(2):
        cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
    cluster.wait_for_nodes()
    backend = RayBackend(cluster.address)
    try:
        assert backend.workers == 2
        yield backend
    finally:
        backend.close()
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]
