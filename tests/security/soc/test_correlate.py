"""Correlation: scenarios into one incident each, benign into none, duplicates, hubs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import polars as pl
import pytest

from fleetops.core.ocsf import findings_from_records
from fleetops.security.soc.anomaly import score_all
from fleetops.security.soc.correlate import Correlator, correlate, kill_chain, tactic_of
from fleetops.security.soc.scenarios import SCENARIOS, generate

T0 = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp() * 1000)
MIN = 60_000


def _f(i: int, t: int, rule: str = "r1", sev: int = 3, **entities: Any) -> dict[str, Any]:
    return {
        "time": T0 + t * MIN,
        "finding_uid": f"f{i:03d}",
        "source": "sigma",
        "rule_id": rule,
        "title": rule,
        "severity_id": sev,
        "techniques": ["T1110"],
        "domain": "it",
        "source_file": "x.log",
        "record_index": i,
        "evidence": "{}",
        **entities,
    }


@pytest.fixture(scope="module")
def scenario_run() -> tuple[pl.DataFrame, pl.DataFrame, list[Any]]:
    data = generate(40_000, seed=21)
    events = data.events(scenario_column=True)
    history = events.filter(pl.col("time") < data.history_end)
    recent = events.filter(pl.col("time") >= data.history_end)
    findings = score_all(history, recent)
    return recent, findings, correlate(findings, recent)


def test_each_scenario_is_exactly_one_incident(
    scenario_run: tuple[pl.DataFrame, pl.DataFrame, list[Any]],
) -> None:
    events, findings, incidents = scenario_run
    truth = events.select("source_file", "record_index", "scenario")
    labelled = findings.join(truth, on=["source_file", "record_index"], how="left")
    assert set(labelled["scenario"]) >= set(SCENARIOS)
    per_incident = []
    for inc in incidents:
        got = inc.findings.join(truth, on=["source_file", "record_index"], how="left")
        scenarios = set(got["scenario"]) - {""}
        assert len(scenarios) == 1, (inc.title, scenarios)  # no incident mixes two attacks
        per_incident.append(scenarios.pop())
    assert sorted(per_incident) == sorted(SCENARIOS)  # one each, no benign incident
    for scenario in SCENARIOS:  # the incident holds all of its scenario's findings
        inc = incidents[per_incident.index(scenario)]
        mine = set(labelled.filter(pl.col("scenario") == scenario)["finding_uid"])
        assert mine <= set(inc.finding_uids), scenario


def test_incident_contents(scenario_run: tuple[pl.DataFrame, pl.DataFrame, list[Any]]) -> None:
    _, findings, incidents = scenario_run
    ota = next(
        i
        for i in incidents
        if "campaign_id" in i.entities and "CMP-2026-0457" in i.entities["campaign_id"]
    )
    assert {"it", "service", "vehicle"} <= set(ota.domains)
    assert ota.entities["user"] == ["julia.berger"]
    tactics = [stage["tactic"] for stage in ota.kill_chain]
    assert tactics[0] == "initial-access"
    assert tactics == sorted(
        tactics,
        key=[  # ATT&CK order
            "initial-access",
            "execution",
            "persistence",
            "defense-evasion",
            "collection",
            "command-and-control",
            "impact",
        ].index,
    )
    assert ota.priority_label == "P1"
    plc = next(i for i in incidents if "device" in i.entities)
    assert {"T0843", "T0858"} <= {t for s in plc.kill_chain for t in s["techniques"]}
    # deterministic: the same findings give the same ids
    again = correlate(findings.sample(fraction=1.0, shuffle=True, seed=3))
    assert sorted(i.incident_id for i in again) == sorted(i.incident_id for i in incidents)
    timeline = ota.timeline()
    assert [e["time"] for e in timeline] == sorted(e["time"] for e in timeline)


def test_benign_traffic_makes_no_incident() -> None:
    data = generate(40_000, seed=22, attacks=False)
    events = data.events()
    history = events.filter(pl.col("time") < data.history_end)
    recent = events.filter(pl.col("time") >= data.history_end)
    assert correlate(score_all(history, recent), recent) == []


def test_duplicates_are_suppressed_with_a_tally() -> None:
    rows = [_f(i, i * 5, user="bob", src_ip="192.0.2.1") for i in range(6)]  # within 1 h
    rows.append(_f(10, 200, user="bob", src_ip="192.0.2.1"))  # a new burst later
    kept = Correlator().suppress(findings_from_records(rows))
    assert kept["duplicates"].to_list() == [6, 1]
    assert kept["member_uids"].to_list()[0] == [f"f{i:03d}" for i in range(6)]


def test_links_need_shared_entity_and_time_proximity() -> None:
    rows = [
        _f(1, 0, "a", 4, user="alice"),
        _f(2, 30, "b", 3, user="alice", src_ip="198.51.100.1"),
        _f(3, 60, "c", 3, src_ip="198.51.100.1"),
        _f(4, 60 * 40, "d", 4, user="alice"),  # same user, 40 h later: its own incident
        _f(5, 10, "e", 4, user="carol"),  # nothing shared
    ]
    incidents = correlate(findings_from_records(rows))
    groups = sorted(sorted(i.findings["finding_uid"].to_list()) for i in incidents)
    assert groups == [["f001", "f002", "f003"], ["f004"], ["f005"]]


def test_ubiquitous_entities_do_not_link() -> None:
    # 60 unrelated users' findings on one server: the server is not a common cause
    rows = [_f(i, i, f"r{i % 3}", 4, user=f"u{i}", host="web01") for i in range(60)]
    assert len(correlate(findings_from_records(rows))) == 60
    # ... and with a lower hub_min the server does not glue them either way
    assert len(correlate(findings_from_records(rows), hub_min=5)) == 60
    # an entity that is in most events is a hub even among few findings
    few = findings_from_records([_f(1, 0, "a", 4, host="web01"), _f(2, 1, "b", 4, host="web01")])
    events = pl.DataFrame({"host": ["web01"] * 90 + [f"h{i}" for i in range(10)]})
    assert len(correlate(few)) == 1
    assert len(correlate(few, events)) == 2


def test_ecu_links_only_within_its_vehicle_and_related_entities_link() -> None:
    rows = [
        _f(1, 0, "a", 4, vin="V1", ecu="TCU"),
        _f(2, 5, "b", 4, vin="V2", ecu="TCU"),
        _f(3, 9, "c", 4, campaign_id="CMP-1"),
    ]
    assert len(correlate(findings_from_records(rows))) == 3
    rows[2]["evidence"] = orjson.dumps({"related": {"vin": ["V1", "V2"]}}).decode()
    assert len(correlate(findings_from_records(rows))) == 1


def test_low_severity_alone_is_no_incident() -> None:
    single = findings_from_records([_f(1, 0, "a", 3, user="x")])
    assert correlate(single) == []
    two_rules = findings_from_records([_f(1, 0, "a", 3, user="x"), _f(2, 1, "b", 3, user="x")])
    assert correlate(two_rules) == []  # 3 + 3 < 8
    assert len(correlate(two_rules, min_total_severity=6)) == 1


def test_tactics() -> None:
    assert tactic_of("T1110.004") == "credential-access"
    assert tactic_of("t0843") == "lateral-movement"
    assert tactic_of("T9999") is None
    chain = kill_chain(
        findings_from_records(
            [
                {"time": T0 + 5, "techniques": ["T1486"]},
                {"time": T0, "techniques": ["T1566.001", "T1059"]},
                {"time": T0 + 1, "techniques": ["T9999"]},
            ]
        )
    )
    assert [s["tactic"] for s in chain] == ["initial-access", "execution", "impact", "unmapped"]


def test_empty() -> None:
    assert correlate(findings_from_records([])) == []
