"""Behavioural models on synthetic events and on the generated scenarios."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import polars as pl
import pytest

from fleetops.core.ocsf import FINDING_SCHEMA, EventClass, Status, events_from_records
from fleetops.security.soc.anomaly import (
    ApiClientModel,
    CredentialStuffing,
    LoginModel,
    PlcModel,
    VehicleModel,
    endpoint_template,
    network_of,
    poisson_tail_log10,
    robust_z,
    score_all,
)
from fleetops.security.soc.scenarios import generate

T0 = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000


def _login(t: int, user: str, ip: str, ok: bool = True) -> dict[str, Any]:
    return {
        "time": t,
        "class_uid": int(EventClass.AUTHENTICATION),
        "status_id": int(Status.SUCCESS if ok else Status.FAILURE),
        "user": user,
        "src_ip": ip,
        "host": "srv1",
        "domain": "it",
        "source_file": "auth.log",
        "record_index": t // 1000,
    }


def test_poisson_tail_bound_is_conservative() -> None:
    # exact P(X >= 5 | mu = 0.5) = 1.72e-4; the bound must not be smaller
    bound = float(poisson_tail_log10(5, 0.5))
    assert np.log10(1.72e-4) <= bound < -2.5
    assert float(poisson_tail_log10(1, 3.0)) == 0.0  # k below the mean: no evidence


def test_robust_z_ignores_outliers_in_the_reference() -> None:
    ref = np.concatenate([np.full(100, 10.0), [1e6]])
    assert robust_z([10.0], ref)[0] == pytest.approx(0.0)
    assert robust_z([20.0], ref)[0] > 50


def test_helpers() -> None:
    assert network_of("203.0.113.45") == "203.0.0.0/16"
    assert network_of("not-an-ip") is None
    urls = pl.DataFrame(
        {
            "u": [
                "/api/v1/vehicles/WFLEV100000000001/trips?page=3",
                "/api/v1/admin/campaigns/CMP-2026-0457/approve",
                "/x/123",
            ]
        }
    )
    got = urls.select(endpoint_template(pl.col("u")))["u"].to_list()
    assert got == [
        "/api/v1/vehicles/{vin}/trips?page=*",
        "/api/v1/admin/campaigns/{id}/approve",
        "/x/{n}",
    ]


def test_login_model_flags_new_network_at_night_not_usual_logins() -> None:
    history = [
        _login(T0 + d * 24 * HOUR + 9 * HOUR + u * 60_000, f"u{u}", f"10.1.0.{u}")
        for d in range(5)
        for u in range(20)
    ]
    model = LoginModel().fit(events_from_records(history))
    new = [
        _login(T0 + 6 * 24 * HOUR + 9 * HOUR, "u1", "10.1.0.1"),  # as usual
        _login(T0 + 6 * 24 * HOUR + 3 * HOUR - 60_000, "u2", "198.51.100.7", ok=False),
        _login(T0 + 6 * 24 * HOUR + 3 * HOUR, "u2", "198.51.100.7"),  # new net, night, failure
        _login(T0 + 6 * 24 * HOUR + 10 * HOUR, "stranger", "198.51.100.8"),  # no history
    ]
    found = model.score(events_from_records(new))
    assert found.schema == pl.Schema(FINDING_SCHEMA)
    assert found["user"].to_list() == ["u2"]
    assert found["severity_id"].to_list() == [4]
    assert found["techniques"].to_list() == [["T1078"]]
    assert "rare hour" in orjson.loads(found["evidence"][0])["why"][1]


def test_credential_stuffing_needs_many_accounts_from_few_sources() -> None:
    rng = np.random.default_rng(1)
    benign = [
        {
            "time": T0 + int(t),
            "http_method": "POST",
            "url": "/login",
            "src_ip": f"198.18.{i % 200}.{i % 7}",
            "user": f"c{i % 300}",
            "http_status": 401 if i % 20 == 0 else 200,
            "domain": "service",
        }
        for i, t in enumerate(rng.integers(0, 24 * HOUR, size=3000))
    ]
    model = CredentialStuffing().fit(events_from_records(benign))
    attack = [
        {
            "time": T0 + 30 * HOUR + i * 500,
            "http_method": "POST",
            "url": "/login",
            "src_ip": f"192.0.2.{i % 3}",
            "user": f"victim{i}",
            "http_status": 200 if i == 7 else 401,
            "domain": "service",
            "source_file": "a.log",
            "record_index": i + 1,
        }
        for i in range(200)
    ]
    found = model.score(events_from_records(benign[:500] + attack))
    assert found.height == 1
    evidence = orjson.loads(found["evidence"][0])
    assert evidence["sources"] == ["192.0.2.0", "192.0.2.1", "192.0.2.2"]
    assert evidence["taken_over"] == ["victim7"]
    assert "T1110.004" in found["techniques"][0]
    # the benign traffic alone: nothing
    assert model.score(events_from_records(benign)).height == 0


def test_plc_model_new_source_new_operation_and_write_burst() -> None:
    hist = [
        {
            "time": T0 + i * 60_000,
            "domain": "ot",
            "src_ip": "10.0.0.1",
            "device": f"plc{i % 3}",
            "ot_operation": "read_holding_registers" if i % 10 else "write_single_register",
        }
        for i in range(3000)
    ]
    model = PlcModel().fit(events_from_records(hist))
    t = T0 + 4 * 24 * HOUR
    normal = [{**h, "time": t + i * 60_000} for i, h in enumerate(hist[:200])]
    burst = [
        {
            "time": t + 3 * HOUR + i * 1000,
            "domain": "ot",
            "src_ip": "10.0.0.1",
            "device": "plc1",
            "ot_operation": "write_single_register",
        }
        for i in range(80)
    ]
    intruder = [
        {
            "time": t + 5 * HOUR + i * 1000,
            "domain": "ot",
            "src_ip": "10.9.9.9",
            "device": "plc2",
            "ot_operation": op,
        }
        for i, op in enumerate(["read_coils", "plc_stop", "program_download"])
    ]
    found = model.score(events_from_records(normal + burst + intruder))
    assert model.score(events_from_records(normal)).height == 0
    by_src = {r["src_ip"]: r for r in found.iter_rows(named=True)}
    assert set(by_src) == {"10.0.0.1", "10.9.9.9"}
    assert {"T0843", "T0858"} <= set(by_src["10.9.9.9"]["techniques"])
    assert "T0836" in by_src["10.0.0.1"]["techniques"]
    flags = model.flag_events(events_from_records(normal + intruder))
    assert flags.to_list() == [False] * len(normal) + [True] * 3


def test_api_client_model_scraping_and_new_endpoints() -> None:
    data = generate(20_000, seed=4)
    events = data.events(scenario_column=True)
    history = events.filter(pl.col("time") < data.history_end)
    model = ApiClientModel().fit(history)
    found = model.score(events.filter(pl.col("time") >= data.history_end))
    truth = events.select("source_file", "record_index", "scenario")
    labels = found.join(truth, on=["source_file", "record_index"], how="left")
    assert set(labels["scenario"]) == {"credential_stuffing", "ota_supply_chain"}
    stolen = labels.filter(pl.col("rule_id") == "anomaly.api_client.new_endpoints")
    assert stolen["user"].to_list() == ["julia.berger"]
    assert stolen["campaign_id"].to_list() == ["CMP-2026-0457"]


def test_vehicle_model_rate_cohort_and_unauthorised_software() -> None:
    data = generate(20_000, seed=6)
    events = data.events(scenario_column=True)
    history = events.filter(pl.col("time") < data.history_end)
    found = VehicleModel().fit(history).score(events.filter(pl.col("time") >= data.history_end))
    rules = set(found["rule_id"])
    assert {
        "anomaly.vehicle.alert_rate",
        "anomaly.vehicle.cohort",
        "anomaly.vehicle.unauthorised_software",
    } <= rules
    cohort = found.filter(pl.col("rule_id") == "anomaly.vehicle.cohort")
    assert cohort["campaign_id"].to_list() == ["CMP-2026-0457"]
    assert len(orjson.loads(cohort["evidence"][0])["related"]["vin"]) >= 20


@pytest.mark.parametrize("seed", [1, 9])
def test_all_models_on_benign_only_traffic_are_quiet(seed: int) -> None:
    data = generate(30_000, seed=seed, attacks=False)
    events = data.events()
    history = events.filter(pl.col("time") < data.history_end)
    recent = events.filter(pl.col("time") >= data.history_end)
    found = score_all(history, recent)
    assert found.filter(pl.col("severity_id") >= 4).height == 0, found.select("rule_id", "title")
    assert found.height <= 2


def test_models_tolerate_empty_input() -> None:
    empty = events_from_records([])
    for model in (LoginModel(), ApiClientModel(), CredentialStuffing(), PlcModel(), VehicleModel()):
        assert model.fit(empty).score(empty).height == 0
    assert score_all(empty, empty).columns == list(FINDING_SCHEMA)


def test_time_span_helper_edge() -> None:
    # one event: the rate models still fit (span floored to an hour)
    one = events_from_records(
        [
            {
                **_login(T0, "a", "10.0.0.1"),
                "domain": "vehicle",
                "vin": "V" * 17,
                "class_uid": int(EventClass.DETECTION_FINDING),
            }
        ]
    )
    model = VehicleModel().fit(one)
    assert model.fleet_rate_ > 0
    assert timedelta(hours=6) == model.window
