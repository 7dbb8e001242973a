from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from fleetops.core.errors import ConfigError, ValidationError
from fleetops.core.lake import Lake
from fleetops.core.schema import SIGNALS

DAY_US = 86_400_000_000


def signals(ts_us: list[int]) -> pa.Table:
    n = len(ts_us)
    return pa.table(
        {
            "vin": ["1M8GDM9AXKP042788"] * n,
            "ts": pa.array(ts_us, pa.int64()).cast(SIGNALS.field("ts").type),
            "signal": ["Vehicle.Speed"] * n,
            "value": [float(i) for i in range(n)],
        }
    )


def test_time_series_are_partitioned_by_utc_day(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    base = 20_454 * DAY_US  # 2026-01-01
    lake.write("signals", signals([base + 5, base + DAY_US + 1, base + 7, base + 2 * DAY_US]))
    folders = sorted(p.name for p in (tmp_path / "signals").iterdir())
    assert folders == ["date=2026-01-01", "date=2026-01-02", "date=2026-01-03"]
    rows = lake.query("SELECT date, count(*) AS n FROM signals GROUP BY 1 ORDER BY 1").to_pylist()
    assert [r["n"] for r in rows] == [2, 1, 1]


def test_empty_core_tables_are_queryable(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    assert lake.query("SELECT count(*) AS n FROM dtcs").to_pylist() == [{"n": 0}]
    assert lake.read("failures").schema.names[:2] == ["vin", "component"]
    assert lake.tables() == []


def test_wrong_columns_are_a_validation_error(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    with pytest.raises(ValidationError, match="missing columns"):
        lake.write("signals", pa.table({"vin": ["x"]}))
    with pytest.raises(ValidationError, match="schema"):
        lake.write("signals", signals([0]).set_column(3, "value", pa.array(["fast"])))
    with pytest.raises(ValidationError, match="table name"):
        lake.write("Bad Name", pa.table({"a": [1]}))


def test_replace_swaps_the_whole_table(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    vehicles = pa.table({"vin": ["A"], "model": ["m"], "model_year": [2024], "region": ["EU"]})
    lake.write("vehicles", vehicles)
    lake.replace("vehicles", vehicles)
    assert lake.query("SELECT count(*) AS n FROM vehicles").to_pylist() == [{"n": 1}]


def test_staged_files_are_invisible_until_published(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    staged = lake.stage("signals", signals([0, 1]), writer="w1")
    assert lake.query("SELECT count(*) AS n FROM signals").to_pylist() == [{"n": 0}]
    assert staged[0].tmp_path.name.startswith("part-w1-")
    staged[0].publish()
    assert lake.query("SELECT count(*) AS n FROM signals").to_pylist() == [{"n": 2}]


def test_bad_sql_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="query failed"):
        Lake(tmp_path).query("SELECT nope FROM signals")
