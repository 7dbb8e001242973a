"""The row index and the slice cache: what they find, what they keep, under threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from fleetops.api.fleet import FleetData
from fleetops.api.lake_index import RowIndex, SliceCache, TableCopy
from fleetops.core.lake import Lake
from tests.api.helpers import Console

T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)


def _signals(rows: list[tuple[str, int, float]]) -> pa.Table:
    """(vin, minutes after T0, value) rows of one signal."""
    vins, minutes, values = zip(*rows, strict=True)
    return pa.table(
        {
            "vin": list(vins),
            "ts": [T0 + timedelta(minutes=m) for m in minutes],
            "signal": ["Vehicle.Speed"] * len(rows),
            "value": list(values),
        }
    )


def test_row_ranges_cover_every_row_of_a_vehicle(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    a, b, c = "A" * 17, "B" * 17, "C" * 17
    lake.write("signals", _signals([(b, 0, 1.0), (a, 1, 2.0), (b, 2, 3.0), (c, 3, 4.0)]))
    lake.write("signals", _signals([(a, 60 * 24, 5.0)]))  # the next day
    index, con = RowIndex(tmp_path / "signals"), duckdb.connect()
    assert index.days() == ["2026-01-05", "2026-01-06"]
    slices = index.locate(con, b, None, None)
    assert [(s.lo, s.hi) for s in slices] == [(0, 3)]  # interleaved: the span, A included
    assert len(index.locate(con, a, None, None)) == 2
    assert index.locate(con, "Z" * 17, None, None) == []
    assert len(index.locate(con, a, date(2026, 1, 6), None)) == 1  # days outside are not read
    cache = SliceCache(max_rows=2)
    rows = cache.rows(con, index.locate(con, a, None, None))
    assert sorted(rows.column("value").to_pylist()) == [2.0, 5.0]  # only A's rows
    cache.rows(con, index.locate(con, b, None, None))  # 2 more rows: A's are dropped
    assert cache.held == (1, 2)  # (slices, rows)


def test_concurrent_vehicle_reads_match_sequential_ones(console: Console) -> None:
    """Each request registers its vehicle's rows on its own cursor: no crosstalk."""
    data = FleetData(console.lake)
    vins = console.lake.query("SELECT vin FROM vehicles ORDER BY vin LIMIT 6").column(0)
    asks = [(v, s) for v in vins.to_pylist() for s in ("Vehicle.Speed", "Vehicle.TraveledDistance")]
    expected = [data.series(v, s, points=40) for v, s in asks]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            assert list(pool.map(lambda a: data.series(*a, points=40), asks)) == expected
            assert list(pool.map(data.signals, vins.to_pylist())) == [
                data.signals(v) for v in vins.to_pylist()
            ]


def test_table_copy_lists_again_when_a_listed_file_was_replaced(tmp_path: Path) -> None:
    """A table replaced whole between the copy's listing and its read: the removed file is
    not an error, the copy reads the new file set."""
    lake = Lake(tmp_path)
    lake.replace("things", pa.table({"x": [1, 2]}))
    copy = TableCopy(tmp_path / "things", pa.schema([("x", pa.int64())]), "SELECT x FROM {table}")
    listed = copy._files()
    lake.replace("things", pa.table({"x": [3]}))
    stale = [listed]  # the first listing comes from before the replace

    def listing() -> dict[str, tuple[int, int]]:
        return stale.pop() if stale else TableCopy._files(copy)

    copy._files = listing  # type: ignore[method-assign]
    con = duckdb.connect()
    assert copy.frame(con).get_column("x").to_list() == [3]
    assert copy.frame(con).get_column("x").to_list() == [3]
