"""Predictions and work orders served from in-memory copies: the same answers as SQL over
the lake tables, and a new maintenance run shows on the very next request."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from fleetops.api.fleet import _LATEST, WORK_ORDERS, FleetData, MaintenanceData
from fleetops.core.lake import Lake
from tests.api.helpers import Console

actions = pytest.importorskip("fleetops.maintenance.actions")  # the tables' own writer

T0 = datetime(2026, 1, 6, 12, tzinfo=UTC)
COMPONENTS = ["lv_battery", "brake_pads", "coolant_pump"]

# What the console ran per request before the copies (a count and a page of each).
LATEST_SQL = (
    "SELECT vin, component, horizon_h, arg_max(p_fail, ts) AS p_fail, "
    "arg_max(alert, ts) AS alert, max(ts) AS ts FROM rul_predictions "
    "GROUP BY vin, component, horizon_h"
)


def _sql_predictions(lake: Lake, where: str, params: list[Any], offset: int, limit: int) -> Any:
    total = lake.query(f"SELECT count(*) AS n FROM ({LATEST_SQL}) WHERE {where}", params)
    rows = lake.query(
        f"SELECT * FROM ({LATEST_SQL}) WHERE {where} "
        "ORDER BY p_fail DESC, vin, component, horizon_h LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )
    return total.to_pylist()[0]["n"], rows.to_pylist()


def _sql_at_risk(lake: Lake) -> dict[str, int]:
    alerts = lake.query(
        f"SELECT component, count(DISTINCT vin) AS n FROM ({LATEST_SQL}) WHERE alert "
        "GROUP BY component"
    )
    return {r["component"]: r["n"] for r in alerts.to_pylist()}


def _scores(vins: list[str], run: int, rng: np.random.Generator) -> pl.DataFrame:
    """One run's scores: every vehicle, component and horizon over a few buckets (distinct
    bucket ends per run, as each run scores newer data)."""
    keys = [(v, c, h) for v in vins for c in COMPONENTS for h in (24.0, 72.0)]
    buckets = [T0 + timedelta(hours=4 * (3 * run + b)) for b in range(3)]
    n = len(keys) * len(buckets)
    p = np.round(rng.random(n), 3)  # rounded: ties in p_fail, ordered by the key
    return pl.DataFrame(
        {
            "vin": [k[0] for k in keys for _ in buckets],
            "t_end": [t for _ in keys for t in buckets],
            "component": [k[1] for k in keys for _ in buckets],
            "horizon_h": [k[2] for k in keys for _ in buckets],
            "p_fail": p,
            "alert": p > 0.7,
        }
    )


def _orders(vins: list[str], created: datetime) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "rank": pl.Series(range(1, len(vins) + 1), dtype=pl.Int32),
            "vin": vins,
            "component": [COMPONENTS[i % 3] for i in range(len(vins))],
            "due_by": [created + timedelta(hours=i) for i in range(len(vins))],
            "confidence": [0.9 - 0.01 * i for i in range(len(vins))],
            "evidence": [f"order {i} of {created:%H:%M}" for i in range(len(vins))],
            "created": [created] * len(vins),
        }
    )


@pytest.fixture
def lake(tmp_path: Path, console: Console) -> Lake:
    copy = Lake(tmp_path / "lake")
    shutil.copytree(console.lake.root, copy.root)
    return copy


def _vins(lake: Lake) -> list[str]:
    return [r["vin"] for r in lake.query("SELECT vin FROM vehicles ORDER BY vin").to_pylist()]


def test_predictions_and_work_orders_match_sql(lake: Lake) -> None:
    vins, rng = _vins(lake), np.random.default_rng(7)
    care = MaintenanceData(FleetData(lake, refresh_s=0))
    assert care.predictions() == (0, []) and care.work_orders() == (0, [])
    assert care.at_risk() == {}
    for run in range(3):  # appended, as `fleetops maintenance predict` does
        actions.write_to_lake(
            lake, _scores(vins, run, rng), _orders(vins[::2], T0), f"2026-01-0{run + 1}"
        )
    asks: list[tuple[dict[str, Any], str, list[Any]]] = [
        ({}, "TRUE", []),
        ({"alerts_only": True}, "alert", []),
        ({"component": "brake_pads"}, "component = ?", ["brake_pads"]),
        ({"vin": vins[3].lower()}, "vin = ?", [vins[3]]),
        ({"vin": vins[5], "alerts_only": True}, "vin = ? AND alert", [vins[5]]),
        ({"vin": "Z" * 17}, "vin = ?", ["Z" * 17]),
    ]
    for kwargs, where, params in asks:
        for offset, limit in ((0, 50), (7, 13), (0, 1000), (10_000, 50)):
            got = care.predictions(**kwargs, offset=offset, limit=limit)
            assert got == _sql_predictions(lake, where, params, offset, limit), (kwargs, offset)
    assert care.at_risk() == _sql_at_risk(lake)
    for vin, offset, limit in ((None, 0, 50), (None, 3, 4), (vins[2], 0, 20), (vins[1], 0, 20)):
        where, params = ("WHERE vin = ?", [vin]) if vin is not None else ("", [])
        rows = lake.query(
            f"SELECT * FROM work_orders {where} ORDER BY rank LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ).to_pylist()
        total = lake.query(f"SELECT count(*) AS n FROM work_orders {where}", params)
        got = care.work_orders(vin=vin, offset=offset, limit=limit)
        assert got == (total.to_pylist()[0]["n"], rows)


def test_a_new_run_shows_on_the_next_request(lake: Lake) -> None:
    vins = _vins(lake)
    care = MaintenanceData(FleetData(lake, refresh_s=3600))  # snapshot kept: copies still follow
    scores = _scores(vins[:2], 0, np.random.default_rng(1))
    actions.write_to_lake(lake, scores, _orders(vins[:2], T0), "2026-01-01")
    total, rows = care.predictions(vin=vins[0])
    assert total == 6 and all(r["ts"] == T0 + timedelta(hours=8) for r in rows)
    assert [o["vin"] for o in care.work_orders()[1]] == vins[:2]
    newer = scores.with_columns(
        pl.col("t_end") + timedelta(hours=4),
        pl.lit(0.99).alias("p_fail"),
        pl.lit(True).alias("alert"),
    ).filter(pl.col("vin") == vins[0])
    actions.write_to_lake(lake, newer, _orders(vins[2:5], T0 + timedelta(hours=1)), "2026-01-02")
    total, rows = care.predictions(vin=vins[0])
    assert total == 6 and {(r["p_fail"], r["alert"]) for r in rows} == {(0.99, True)}
    assert care.at_risk() == _sql_at_risk(lake)
    total, orders = care.work_orders()  # replaced whole: the old list is gone
    assert total == 3 and [o["vin"] for o in orders] == vins[2:5]


def test_same_bucket_scored_twice_the_newer_model_wins(lake: Lake) -> None:
    vin = _vins(lake)[0]
    care = MaintenanceData(FleetData(lake, refresh_s=0))
    one = pl.DataFrame(
        {
            "vin": [vin],
            "t_end": [T0],
            "component": ["tyre_leak"],
            "horizon_h": [24.0],
            "p_fail": [0.2],
            "alert": [False],
        }
    )
    empty = _orders([], T0)
    actions.write_to_lake(lake, one, empty, "2026-01-02T00:00:00+00:00")
    again = one.with_columns(pl.lit(0.8).alias("p_fail"), pl.lit(True).alias("alert"))
    actions.write_to_lake(lake, again, empty, "2026-01-03T00:00:00+00:00")
    actions.write_to_lake(lake, one, empty, "2026-01-01T00:00:00+00:00")  # older model, later
    _, rows = care.predictions()
    assert [(r["p_fail"], r["alert"]) for r in rows] == [(0.8, True)]  # one row, not a mix


def test_console_schemas_follow_the_writer() -> None:
    written = actions.RUL_PREDICTIONS
    assert all(written.field(f.name).type == f.type for f in _LATEST)
    assert [(f.name, f.type) for f in WORK_ORDERS] == [
        (f.name, f.type) for f in actions.WORK_ORDERS
    ]
