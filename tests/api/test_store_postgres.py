"""The console's store on a real PostgreSQL (the same SQL as SQLite), in a schema of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from fleetops.api.app import create_app
from fleetops.api.store import Store
from fleetops.core.errors import ConfigError
from tests.api.helpers import ADMIN_PASSWORD, Console
from tests.conftest import postgres_dsn


@pytest.fixture
def pg_store() -> Iterator[tuple[Store, str, str]]:
    dsn = postgres_dsn()
    schema = f"fleetops_api_{uuid.uuid4().hex[:10]}"
    store = Store(dsn, schema=schema)
    yield store, dsn, schema
    store.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_console_runs_on_postgres(pg_store: tuple[Store, str, str], console: Console) -> None:
    store, dsn, schema = pg_store
    app = create_app(console.settings, store=store)  # creates admin in the empty PG store
    with TestClient(app) as c:
        login = c.post("/api/v1/session", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert login.status_code == 200
        csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
        made = c.post("/api/v1/users", json={"username": "pg-user", "role": "viewer"}, headers=csrf)
        assert made.status_code == 201
        token = c.post("/api/v1/me/tokens", json={"name": "pg"}, headers=csrf).json()["token"]
        me = c.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["user"]["username"] == "admin"
        log = c.get("/api/v1/audit").json()
    assert {"user.create", "login", "token.create"} <= {e["action"] for e in log["items"]}
    assert store.verify_audit() == store.audit_count() >= 4
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE audit SET actor = 'mallory'")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM audit")
        rows = conn.execute("SELECT token_hash FROM tokens").fetchall()
    assert rows and all(not r[0].startswith("fo_") for r in rows)


def test_postgres_store_rejects_a_bad_schema_name() -> None:
    with pytest.raises(ConfigError, match="schema name"):
        Store(postgres_dsn(), schema="bad; drop")
