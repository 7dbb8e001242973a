"""The notebook API: the CLI's operations as functions returning Arrow / Polars."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa

import fleetops
from fleetops.sim.can import simulate_can
from fleetops.telemetry.canlog import write_can_log


def test_simulate_ingest_query_round_trip(tmp_path: Path) -> None:
    sim = fleetops.simulate("smoke", days=1, lake=tmp_path / "direct")
    stats = fleetops.ingest(sim.messages(), lake=tmp_path / "ingested")
    assert stats["values"] == sim.value_count and stats["dead_letters"] == 0
    frame = fleetops.query("SELECT count(*) AS n FROM signals", lake=tmp_path / "ingested")
    assert isinstance(frame, pl.DataFrame) and frame["n"][0] == sim.value_count
    direct = fleetops.query(
        "SELECT count(*) AS n FROM signals", lake=tmp_path / "direct", arrow=True
    )
    assert isinstance(direct, pa.Table) and direct.to_pylist() == [{"n": sim.value_count}]


def test_decode_can_log(tmp_path: Path) -> None:
    log = write_can_log(simulate_can({"duration_s": 5}).frames, tmp_path / "bus.log")
    decoded = fleetops.decode_can(log)
    assert decoded.num_rows > 1000 and "Vehicle.Speed" in set(decoded.column("signal").to_pylist())
