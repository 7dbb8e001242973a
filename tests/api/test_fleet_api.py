"""Fleet, vehicle, signal and DTC endpoints against SQL over the same simulated lake."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from fleetops.api.app import create_app
from fleetops.core.lake import Lake
from tests.api.helpers import Console


def _get(c: TestClient, console: Console, path: str, **params: object) -> object:
    r = c.get(path, params=params, headers=console.auth("viewer"))
    assert r.status_code == 200, r.text
    return r.json()


def test_vehicle_list_pages_through_the_whole_fleet(client: TestClient, console: Console) -> None:
    lake_vins = {r["vin"] for r in console.lake.query("SELECT vin FROM vehicles").to_pylist()}
    seen: list[str] = []
    offset = 0
    while True:
        page = _get(client, console, "/api/v1/vehicles", limit=3, offset=offset)
        assert isinstance(page, dict)
        assert page["total"] == len(lake_vins)
        seen += [v["vin"] for v in page["items"]]
        offset += 3
        if offset >= page["total"]:
            break
    assert sorted(seen) == sorted(lake_vins)  # no duplicate, none missing


def test_vehicle_filters_match_sql(client: TestClient, console: Console) -> None:
    expected = console.lake.query(
        "SELECT vin FROM vehicles WHERE region = 'madrid' AND model = 'Aurora' ORDER BY vin"
    ).to_pylist()
    page = _get(client, console, "/api/v1/vehicles", region="madrid", model="Aurora", limit=100)
    assert isinstance(page, dict)
    assert [v["vin"] for v in page["items"]] == [r["vin"] for r in expected]
    ranked = _get(client, console, "/api/v1/vehicles", sort="dtcs", descending=True, limit=100)
    assert isinstance(ranked, dict)
    counts = [v["dtcs"] for v in ranked["items"]]
    assert counts == sorted(counts, reverse=True)
    lake_counts = console.lake.query("SELECT vin, count(*) AS n FROM dtcs GROUP BY vin").to_pylist()
    assert {r["vin"]: r["n"] for r in lake_counts} == {
        v["vin"]: v["dtcs"] for v in ranked["items"] if v["dtcs"]
    }


def test_health_follows_the_documented_rule(client: TestClient, console: Console) -> None:
    as_of = console.lake.query("SELECT max(ts) AS t FROM signals").to_pylist()[0]["t"]
    recent = console.lake.query(
        "SELECT DISTINCT vin FROM dtcs WHERE ts > ?::TIMESTAMPTZ - INTERVAL 24 HOUR", [as_of]
    ).to_pylist()
    page = _get(client, console, "/api/v1/vehicles", health="fault", limit=100)
    assert isinstance(page, dict)
    assert {v["vin"] for v in page["items"]} == {r["vin"] for r in recent}
    assert recent  # the smoke scenario has faults within the last day
    summary = _get(client, console, "/api/v1/fleet/summary")
    assert isinstance(summary, dict)
    assert sum(summary["health"].values()) == summary["vehicles"]
    by_region = console.lake.query(
        "SELECT region, count(*) AS n FROM vehicles GROUP BY 1"
    ).to_pylist()
    assert {r["region"]: r["vehicles"] for r in summary["regions"]} == {
        r["region"]: r["n"] for r in by_region
    }
    assert sum(b["vehicles"] for b in summary["positions"]) == summary["vehicles"]


def test_vehicle_detail_lists_its_ecus(client: TestClient, console: Console) -> None:
    detail = _get(client, console, f"/api/v1/vehicles/{console.vin}")
    assert isinstance(detail, dict)
    ecus = console.lake.query(
        "SELECT ecu, software_version FROM ecus WHERE vin = ? ORDER BY ecu", [console.vin]
    ).to_pylist()
    assert [(e["ecu"], e["software_version"]) for e in detail["ecus"]] == [
        (e["ecu"], e["software_version"]) for e in ecus
    ]
    assert detail["soc"] is not None and 0 <= detail["soc"] <= 100


def test_series_is_downsampled_without_losing_samples(client: TestClient, console: Console) -> None:
    signal = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"
    window = console.lake.query(
        "SELECT min(ts) AS a, max(ts) AS b FROM signals WHERE vin = ? AND signal = ?",
        [console.vin, signal],
    ).to_pylist()[0]
    start, end = window["a"], window["b"] + timedelta(seconds=1)
    series = _get(
        client,
        console,
        f"/api/v1/vehicles/{console.vin}/series",
        signal=signal,
        start=start.isoformat(),
        end=end.isoformat(),
        points=50,
    )
    assert isinstance(series, dict)
    points = series["points"]
    assert 0 < len(points) <= 51
    stats = console.lake.query(
        "SELECT count(*) AS n, min(value) AS lo, max(value) AS hi FROM signals "
        "WHERE vin = ? AND signal = ?",
        [console.vin, signal],
    ).to_pylist()[0]
    assert sum(p["n"] for p in points) == stats["n"]
    assert min(p["min"] for p in points) == stats["lo"]
    assert max(p["max"] for p in points) == stats["hi"]
    assert all(p["min"] <= p["mean"] <= p["max"] for p in points)
    times = [datetime.fromisoformat(p["t"]) for p in points]
    assert times == sorted(times)


def test_dtcs_filter_and_page(client: TestClient, console: Console) -> None:
    total = console.lake.query("SELECT count(*) AS n FROM dtcs").to_pylist()[0]["n"]
    page = _get(client, console, "/api/v1/dtcs", limit=2)
    assert isinstance(page, dict)
    assert page["total"] == total and len(page["items"]) == min(2, total)
    some = page["items"][0]["vin"]
    own = _get(client, console, "/api/v1/dtcs", vin=some, limit=100)
    assert isinstance(own, dict)
    assert own["items"] and {d["vin"] for d in own["items"]} == {some}


def test_errors_share_one_body(client: TestClient, console: Console) -> None:
    missing = client.get("/api/v1/vehicles/WFE00000000000000", headers=console.auth("viewer"))
    invalid = client.get("/api/v1/vehicles/not-a-vin", headers=console.auth("viewer"))
    naive = client.get(
        f"/api/v1/vehicles/{console.vin}/series",
        params={"signal": "Vehicle.Speed", "start": "2026-01-05T00:00:00"},
        headers=console.auth("viewer"),
    )
    anonymous = client.get("/api/v1/vehicles")
    for response, status, code in [
        (missing, 404, "not_found"),
        (invalid, 422, "invalid_request"),
        (naive, 400, "bad_request"),
        (anonymous, 401, "unauthenticated"),
    ]:
        assert response.status_code == status
        body = response.json()
        assert set(body) == {"error"} and body["error"]["code"] == code
        assert body["error"]["message"]


def test_footprint_plan_reads_the_planner_output(client: TestClient, console: Console) -> None:
    plans = _get(client, console, "/api/v1/footprint/plans")
    assert isinstance(plans, list) and [p["name"] for p in plans] == [console.plan]
    plan = _get(client, console, f"/api/v1/footprint/plans/{console.plan}")
    assert isinstance(plan, dict)
    assert len(plan["hosts"]) == plan["hosts_used"]
    assert sum(h["workloads"] for h in plan["hosts"]) == 40
    assert all(h["cpu_used"] <= h["cpu_capacity"] for h in plan["hosts"])


def test_maintenance_predictions_and_work_orders(tmp_path: Path, console: Console) -> None:
    """Tables written by the maintenance package's own writer come back through the API
    (on a copy of the lake, so the shared one stays as simulated)."""
    actions = pytest.importorskip("fleetops.maintenance.actions")
    lake = Lake(tmp_path / "lake")
    shutil.copytree(console.lake.root, lake.root)
    t = datetime(2026, 1, 6, 12, tzinfo=UTC)
    scores = pl.DataFrame(
        {
            "vin": [console.vin, console.vin, console.vin],
            "t_end": [t, t + timedelta(hours=1), t],
            "component": ["lv_battery", "lv_battery", "brake_pads"],
            "horizon_h": [48.0, 48.0, 48.0],
            "p_fail": [0.2, 0.9, 0.1],
            "alert": [False, True, False],
        }
    )
    orders = pl.DataFrame(
        {
            "rank": [1],
            "vin": [console.vin],
            "component": ["lv_battery"],
            "due_by": [t + timedelta(days=1)],
            "confidence": [0.9],
            "evidence": ["12 V resting voltage 0.4 V below the fleet"],
            "created": [t],
        }
    )
    actions.write_to_lake(lake, scores, orders, "2026-01-06")
    app = create_app(replace(console.settings, lake=lake.root), store=console.store)
    with TestClient(app) as c:
        preds = c.get("/api/v1/maintenance/predictions", headers=console.auth("viewer")).json()
        work = c.get("/api/v1/maintenance/work-orders", headers=console.auth("viewer")).json()
        page = c.get(f"/vehicles/{console.vin}", headers=console.auth("viewer"))
    assert preds["total"] == 2  # the latest per (vehicle, component, horizon)
    assert preds["items"][0]["component"] == "lv_battery" and preds["items"][0]["p_fail"] == 0.9
    assert work["items"][0]["evidence"].startswith("12 V resting voltage")
    assert "Predicted failures" in page.text and "below the fleet" in page.text


def test_series_and_signals_see_files_that_just_landed(tmp_path: Path, console: Console) -> None:
    """The per-vehicle row index never hides new data: a file published after the index
    was built (same day, and a new day) is read by the very next request."""
    lake = Lake(tmp_path / "lake")
    shutil.copytree(console.lake.root, lake.root)
    app = create_app(replace(console.settings, lake=lake.root), store=console.store)
    signal = "Vehicle.Speed"
    last = lake.query("SELECT max(ts) AS t FROM signals").to_pylist()[0]["t"]
    start, end = last - timedelta(hours=6), last + timedelta(days=1, hours=6)
    window = {"signal": signal, "start": start.isoformat(), "end": end.isoformat(), "points": 20}
    path = f"/api/v1/vehicles/{console.vin}/series"
    with TestClient(app) as c:
        before = c.get(path, params=window, headers=console.auth("viewer")).json()["points"]
        latest = c.get(f"/api/v1/vehicles/{console.vin}/signals", headers=console.auth("viewer"))
        assert before and "Vehicle.Custom.Probe" not in {s["signal"] for s in latest.json()}
        other = lake.query("SELECT vin FROM vehicles WHERE vin <> ? LIMIT 1", [console.vin])
        stamps = [last - timedelta(minutes=1), last + timedelta(hours=12)]  # today, a new day
        rows = [  # interleaved with another vehicle, so the VIN's rows are not one block
            (vin, ts, name, value)
            for ts in stamps
            for vin, name, value in [
                (console.vin, signal, 999.0),
                (other.to_pylist()[0]["vin"], signal, 1.0),
                (console.vin, "Vehicle.Custom.Probe", 7.0),
            ]
        ]
        columns = zip(*rows, strict=True)
        lake.write(
            "signals", pa.table(dict(zip(["vin", "ts", "signal", "value"], columns, strict=True)))
        )
        after = c.get(path, params=window, headers=console.auth("viewer")).json()["points"]
        latest = c.get(f"/api/v1/vehicles/{console.vin}/signals", headers=console.auth("viewer"))
    assert sum(p["n"] for p in after) == sum(p["n"] for p in before) + 2
    assert max(p["max"] for p in after) == 999.0
    assert datetime.fromisoformat(after[-1]["t"]) > last  # the new day partition is read
    probe = [s for s in latest.json() if s["signal"] == "Vehicle.Custom.Probe"]
    assert probe == [
        {"signal": "Vehicle.Custom.Probe", "value": 7.0, "ts": probe[0]["ts"], "samples": 2}
    ]


def test_dtc_page_sees_files_that_just_landed(tmp_path: Path, console: Console) -> None:
    """The in-memory copy of ``dtcs`` is reloaded as soon as a new file is in the lake."""
    lake = Lake(tmp_path / "lake")
    shutil.copytree(console.lake.root, lake.root)
    app = create_app(replace(console.settings, lake=lake.root), store=console.store)
    with TestClient(app) as c:
        before = c.get("/api/v1/dtcs", params={"limit": 1}, headers=console.auth("viewer")).json()
        newest = datetime.fromisoformat(before["items"][0]["ts"]) + timedelta(days=1)
        row = {"vin": [console.vin], "ts": [newest], "ecu": ["BMS"], "code": ["P0A7F"]}
        lake.write("dtcs", pa.table(row | {"description": ["Hybrid battery pack deterioration"]}))
        after = c.get("/api/v1/dtcs", params={"limit": 1}, headers=console.auth("viewer")).json()
    assert after["total"] == before["total"] + 1
    assert after["items"][0]["vin"] == console.vin and after["items"][0]["code"] == "P0A7F"
