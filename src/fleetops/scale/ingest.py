"""Horizontally scaled ingest: several workers behind one MQTT 5 shared subscription.

Each worker is an ordinary ingest process with

* a worker name, unique in its group: its MQTT client id (``fleetops-<group>-<worker>``,
  so its persistent session — and the messages the broker keeps for it — survives a
  restart), its commit log ``<lake>/_ingest/<group>/<worker>/`` and its file names
  ``part-<group>.<worker>-…``;
* the subscription ``$share/<group>/<prefix>/+/signals``: the broker gives each message to
  one worker of the group;
* the group's shared seq index (:class:`~fleetops.telemetry.ingest.Ingestor` with
  ``group``): a message already committed by *any* worker of the group is dropped, also
  when the broker redelivers it to another worker than the one that committed it.

docs/scale.md states the guarantee and what the broker must do for it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fleetops.core.lake import Lake
from fleetops.telemetry.ingest import Ingestor, IngestStats
from fleetops.telemetry.mqtt import DEFAULT_PREFIX, MqttIngest


def client_id(group: str, worker: str) -> str:
    return f"fleetops-{group}-{worker}"


def shared_worker(
    broker: str,
    lake: Lake | Path | str,
    *,
    group: str,
    worker: str,
    prefix: str = DEFAULT_PREFIX,
    batch_messages: int = 5000,
) -> MqttIngest:
    """An ingest worker of ``group``; call ``run(...)`` on it (it blocks until stopped)."""
    store = lake if isinstance(lake, Lake) else Lake(lake)
    ingestor = Ingestor(store, consumer=worker, group=group)
    return MqttIngest(
        broker,
        ingestor,
        prefix=prefix,
        client_id=client_id(group, worker),
        batch_messages=batch_messages,
        share_group=group,
    )


def run_worker(
    broker: str,
    lake: Lake | Path | str,
    *,
    group: str,
    worker: str,
    prefix: str = DEFAULT_PREFIX,
    batch_messages: int = 5000,
    idle_timeout: float | None = None,
    max_messages: int | None = None,
    on_batch: Callable[[IngestStats], None] | None = None,
    handle_signals: bool = False,
    retire: bool = False,
) -> IngestStats:
    """Run one worker until stopped (SIGTERM with ``handle_signals``), idle or done;
    ``retire`` takes it out of the group for good (see ``MqttIngest.run``)."""
    source = shared_worker(
        broker, lake, group=group, worker=worker, prefix=prefix, batch_messages=batch_messages
    )
    return source.run(
        idle_timeout=idle_timeout,
        max_messages=max_messages,
        on_batch=on_batch,
        handle_signals=handle_signals,
        retire=retire,
    )
