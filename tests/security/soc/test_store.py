"""The incident store: the same round trip on embedded SQLite and on a real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from fleetops.core.errors import ConfigError, ServiceUnavailableError, ValidationError
from fleetops.core.ocsf import findings_from_records
from fleetops.security.soc.correlate import Incident, correlate
from fleetops.security.soc.store import IncidentStore

T0 = 1_772_409_600_000  # 2026-03-02


def _incidents(extra: int = 0) -> list[Incident]:
    rows: list[dict[str, Any]] = [
        {
            "time": T0 + i * 60_000,
            "finding_uid": f"u{i}",
            "source": "anomaly",
            "rule_id": f"r{i}",
            "title": f"finding {i}",
            "severity_id": 4,
            "techniques": ["T1078"],
            "domain": "it",
            "user": "alice",
            "src_ip": "203.0.113.9",
            "source_file": "auth.log",
            "record_index": i,
            "evidence": "{}",
        }
        for i in range(3 + extra)
    ]
    rows.append(
        {
            "time": T0,
            "finding_uid": "p1",
            "source": "anomaly",
            "rule_id": "anomaly.plc",
            "title": "plc",
            "severity_id": 5,
            "techniques": ["T0843"],
            "domain": "ot",
            "device": "plc-1",
            "evidence": "{}",
        }
    )
    return correlate(findings_from_records(rows))


def _pg_dsns() -> list[str]:
    if dsn := os.environ.get("FLEETOPS_TEST_PG_DSN"):
        return [dsn]
    return [f"postgresql://{user}@127.0.0.1:5432/test" for user in ("postgres", "root")]


@pytest.fixture(scope="module")
def pg_dsn() -> str:
    import psycopg

    errors = []
    for dsn in _pg_dsns():
        try:
            with psycopg.connect(dsn, connect_timeout=3):
                return dsn
        except psycopg.Error as exc:
            errors.append(f"{dsn}: {str(exc).strip().splitlines()[0]}")
    reason = "PostgreSQL is unreachable (" + "; ".join(errors) + ")"
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide PostgreSQL: {reason}")
    pytest.skip(reason)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IncidentStore]:
    if request.param == "sqlite":
        with IncidentStore.sqlite(tmp_path / "soc" / "incidents.sqlite") as s:
            yield s
        return
    import psycopg

    dsn = request.getfixturevalue("pg_dsn")
    schema = f"soc_test_{uuid.uuid4().hex[:12]}"  # a fresh schema per test run
    try:
        with IncidentStore.postgresql(dsn, schema=schema) as s:
            yield s
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_round_trip(store: IncidentStore) -> None:
    incidents = _incidents()
    assert store.save(incidents) == {"new": 2, "updated": 0, "alerts": 4}
    listed = store.incidents()
    assert [r["incident_id"] for r in listed] == [
        i.incident_id for i in sorted(incidents, key=lambda i: -i.priority)
    ]
    alice = next(i for i in incidents if "user" in i.entities)
    store.assign(alice.incident_id, "bob", actor="carol")
    store.set_status(alice.incident_id, "In Progress", actor="bob")
    store.comment(alice.incident_id, "new network for alice, calling her", author="bob")
    got = store.get(alice.incident_id)
    assert (got["status"], got["assignee"]) == ("in_progress", "bob")
    assert got["summary"]["entities"]["user"] == ["alice"]
    assert [a["finding_uid"] for a in got["alerts"]] == ["u0", "u1", "u2"]
    assert got["comments"][0]["body"] == "new network for alice, calling her"
    assert [h["action"] for h in got["history"]] == ["created", "assigned", "status", "comment"]
    assert got["history"][2]["old_value"] == "new"
    assert [r["incident_id"] for r in store.incidents(status="in_progress")] == [alice.incident_id]
    assert store.incidents(assignee="nobody") == []

    # detection runs again with one more finding: alerts grow, analyst's work stays
    again = _incidents(extra=1)
    assert store.save(again) == {"new": 0, "updated": 1, "alerts": 1}
    got = store.get(alice.incident_id)
    assert (got["status"], got["assignee"], len(got["alerts"])) == ("in_progress", "bob", 4)
    assert got["history"][-1]["action"] == "alerts"


def test_bad_requests(store: IncidentStore) -> None:
    store.save(_incidents())
    some = store.incidents()[0]["incident_id"]
    with pytest.raises(ValidationError, match="unknown status"):
        store.set_status(some, "done", actor="x")
    with pytest.raises(ValidationError, match="no incident"):
        store.assign("INC-NOPE", "bob", actor="x")
    with pytest.raises(ValidationError, match="empty"):
        store.comment(some, "  ", author="x")
    # a failed change leaves nothing behind
    assert [h["action"] for h in store.get(some)["history"]] == ["created"]


def test_open_picks_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLEETOPS_SOC_DSN", raising=False)
    monkeypatch.setenv("FLEETOPS_DATA", str(tmp_path))
    with IncidentStore.open() as s:
        assert s.dialect == "sqlite"
        assert Path(s.where) == tmp_path / "soc" / "incidents.sqlite"
    monkeypatch.setenv("FLEETOPS_SOC_DSN", "postgresql://nobody:secret@127.0.0.1:1/none")
    with pytest.raises(ServiceUnavailableError) as err:
        IncidentStore.open()
    assert "secret" not in str(err.value)
    with pytest.raises(ConfigError, match="schema"):
        IncidentStore.postgresql("postgresql://x@127.0.0.1:1/x", schema="Bad-Name")


def test_store_holds_incident_findings_frame() -> None:
    inc = _incidents()[0]
    assert isinstance(inc.findings, pl.DataFrame)
    assert inc.summary()["alerts"] == int(inc.findings["duplicates"].sum())
