"""fleetops: operate a connected, software-defined vehicle fleet.

The notebook-facing API: the CLI's operations as functions that return Arrow or Polars
tables. Each capability lives in its own sub-package (``fleetops.telemetry``,
``fleetops.sim``, …) on the shared core (``fleetops.core``).

>>> import fleetops
>>> sim = fleetops.simulate("smoke", lake="fleetops-data/lake")           # doctest: +SKIP
>>> fleetops.query("SELECT signal, avg(value) FROM signals GROUP BY 1")   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from fleetops import config
from fleetops.core.lake import Lake
from fleetops.core.types import CanFrames, Ecu, Vehicle
from fleetops.core.vss import SignalCatalog, SignalSpec, default_catalog

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from fleetops.sim.fleet import FleetSimulation

__version__ = "0.1.0"

LakeLike = Lake | str | os.PathLike[str] | None


def open_lake(lake: LakeLike = None) -> Lake:
    """A :class:`Lake` from a path (default: ``$FLEETOPS_LAKE`` or ./fleetops-data/lake)."""
    if isinstance(lake, Lake):
        return lake
    return Lake(config.lake_dir() if lake is None else Path(lake))


def simulate(
    scenario: str | os.PathLike[str] = "demo",
    *,
    vehicles: int | None = None,
    days: int | None = None,
    seed: int | None = None,
    lake: LakeLike = None,
    write: bool = True,
) -> FleetSimulation:
    """Simulate a fleet from a shipped scenario name or YAML file; write it to ``lake``."""
    from fleetops.sim.fleet import simulate_fleet
    from fleetops.sim.scenario import load_scenario

    plan = load_scenario(scenario).with_overrides(vehicles=vehicles, days=days, seed=seed)
    sim = simulate_fleet(plan)
    if write:
        sim.write_to(open_lake(lake))
    return sim


def ingest(
    source: str | os.PathLike[str] | Iterable[tuple[str, bytes]],
    *,
    lake: LakeLike = None,
    consumer: str = "ingest",
    idle_timeout: float | None = 5.0,
    max_messages: int | None = None,
) -> dict[str, object]:
    """Ingest vehicle messages exactly once; returns the ingest counters.

    ``source`` is an MQTT URL (``mqtt://host:1883``), a ``.jsonl`` message file, or
    ``(vin, payload)`` pairs (e.g. ``fleetops.simulate(..., write=False).messages()``).
    """
    from itertools import islice

    from fleetops.telemetry.ingest import Ingestor, RawMessage, read_message_file

    ingestor = Ingestor(open_lake(lake), consumer=consumer)
    if isinstance(source, str) and "://" in source:
        from fleetops.telemetry.mqtt import MqttIngest

        mqtt = MqttIngest(source, ingestor, client_id=f"fleetops-{consumer}")
        return mqtt.run(idle_timeout=idle_timeout, max_messages=max_messages).as_dict()
    if isinstance(source, str | os.PathLike):
        for batch in read_message_file(Path(source)):
            ingestor.ingest(batch)
    else:
        pairs = iter(source)
        while batch := [RawMessage(p, f"python/{vin}", vin) for vin, p in islice(pairs, 5000)]:
            ingestor.ingest(batch)
    ingestor.close()
    return ingestor.stats.as_dict()


def query(sql: str, *, lake: LakeLike = None, arrow: bool = False) -> pl.DataFrame | pa.Table:
    """SQL over the lake with DuckDB: a Polars frame (or an Arrow table with ``arrow``)."""
    store = open_lake(lake)
    return store.query(sql) if arrow else store.query_pl(sql)


def decode_can(
    log: str | os.PathLike[str], *, dbc: str | os.PathLike[str] | None = None
) -> pa.Table:
    """Decode a CAN log (candump, asc, blf, csv, trc) with a DBC into long signals."""
    from fleetops.core.dbc import load_dbc
    from fleetops.telemetry.can_decode import CanDecoder
    from fleetops.telemetry.canlog import read_can_log

    return CanDecoder(load_dbc(None if dbc is None else Path(dbc))).decode(read_can_log(Path(log)))


__all__ = [
    "CanFrames",
    "Ecu",
    "Lake",
    "SignalCatalog",
    "SignalSpec",
    "Vehicle",
    "__version__",
    "decode_can",
    "default_catalog",
    "ingest",
    "open_lake",
    "query",
    "simulate",
]
