"""Access control: every route × every role × no credentials, CSRF, tokens, sessions, audit."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleetops.api.app import create_app
from fleetops.api.auth import route_keys as auth_route_keys
from fleetops.api.permissions import ROLE_PERMISSIONS, ROUTES, Perm, Role
from fleetops.api.settings import Settings
from fleetops.api.store import Store
from fleetops.core.errors import ValidationError
from tests.api.helpers import ADMIN_PASSWORD, PASSWORD, Console

ROLES: list[str | None] = [None, *(r.value for r in Role)]


def route_keys(app: FastAPI) -> list[str]:
    return auth_route_keys(app.routes)


def test_every_route_declares_a_permission(console: Console) -> None:
    keys = route_keys(console.app)
    assert "GET /api/v1/vehicles" in keys and "POST /campaigns/{campaign_id}/pause" in keys
    assert len(keys) >= 40  # included routers are walked, not skipped
    undeclared = [k for k in route_keys(console.app) if k not in ROUTES]
    assert not undeclared, f"routes without a permission in fleetops.api.permissions: {undeclared}"


def test_an_undeclared_route_is_denied_even_to_admin(console: Console) -> None:
    app = create_app(console.settings, store=console.store)

    @app.get("/api/v1/undeclared")
    def undeclared() -> dict[str, str]:
        return {"leak": "secret"}

    with TestClient(app) as c:
        r = c.get("/api/v1/undeclared", headers=console.auth("admin"))
    assert r.status_code == 403
    assert "leak" not in r.text


# -- the matrix -------------------------------------------------------------------------------

Request = dict[str, Any]


def _requests(console: Console) -> dict[str, Callable[[], Request]]:
    """How to call each route: path parameters filled with real ids, a valid body."""
    viewer = console.store.credentials("viewer")
    assert viewer is not None

    def fresh() -> str:
        return f"u{uuid.uuid4().hex[:10]}"

    login_form = {"username": "viewer", "password": PASSWORD, "login_token": "t", "next": "/"}
    return {
        "POST /api/v1/session": lambda: {"json": {"username": "viewer", "password": PASSWORD}},
        "PUT /api/v1/me/password": lambda: {
            "json": {"current_password": "wrong-password", "new_password": "x" * 16}
        },
        "POST /api/v1/me/tokens": lambda: {"json": {"name": "matrix"}},
        "POST /api/v1/users": lambda: {"json": {"username": fresh(), "role": "viewer"}},
        "PATCH /api/v1/users/{user_id}": lambda: {"json": {"role": "viewer"}},
        "GET /api/v1/vehicles/{vin}/series": lambda: {"params": {"signal": "Vehicle.Speed"}},
        "POST /api/v1/campaigns/{campaign_id}/pause": lambda: {"json": {"reason": "matrix"}},
        "POST /api/v1/campaigns/{campaign_id}/resume": lambda: {"json": {"reason": "matrix"}},
        "POST /api/v1/incidents/{incident_id}/status": lambda: {"json": {"status": "in_progress"}},
        "POST /api/v1/incidents/{incident_id}/assign": lambda: {"json": {"assignee": "alice"}},
        "POST /api/v1/incidents/{incident_id}/comments": lambda: {"json": {"body": "matrix"}},
        "POST /incidents/{incident_id}/status": lambda: {"data": {"status": "in_progress"}},
        "POST /incidents/{incident_id}/comments": lambda: {"data": {"body": "matrix"}},
        "POST /login": lambda: {"data": login_form, "cookies": {"fleetops_login": "t"}},
        "POST /campaigns/{campaign_id}/pause": lambda: {"data": {"reason": "matrix"}},
        "POST /campaigns/{campaign_id}/resume": lambda: {"data": {"reason": "matrix"}},
    }


def _path(console: Console, template: str, token_id: int) -> str:
    viewer = console.store.credentials("viewer")
    assert viewer is not None
    values = {
        "vin": console.vin,
        "campaign_id": console.campaign_id or "none",
        "plan": console.plan or "none",
        "token_id": str(token_id),
        "user_id": str(viewer[0].id),
        "incident_id": str(console.extra.get("incident_id", "none")),
    }
    return template.format(**values)


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "anonymous")
def test_authorisation_matrix(console: Console, role: str | None) -> None:
    """Each route, with this role's bearer token (or none): 401 without credentials (a
    redirect to sign in for dashboard pages), 403 without the permission, never either
    with it; and every accepted change adds an audit entry."""
    specs = _requests(console)
    owner = console.store.credentials("admin")
    assert owner is not None
    token = console.store.create_token(owner[0].id, "matrix-target", f"fo_{uuid.uuid4().hex}", None)
    checked = 0
    with TestClient(console.app, follow_redirects=False) as c:
        for key in route_keys(console.app):
            method, template = key.split(" ", 1)
            perm = ROUTES[key]
            kwargs = specs.get(key, lambda: {})()
            cookies = kwargs.pop("cookies", None)
            c.cookies.clear()
            if cookies:
                c.cookies.update(cookies)
            before = console.store.audit_count()
            r = c.request(
                method, _path(console, template, token.id), headers=console.auth(role), **kwargs
            )
            where = f"{role or 'anonymous'} {key} → {r.status_code} {r.text[:200]}"
            if perm is Perm.PUBLIC:
                assert r.status_code not in (401, 403), where
            elif role is None:
                if template.startswith("/api/") or method != "GET":
                    assert r.status_code == 401, where
                else:
                    assert r.status_code == 303, where
                    assert r.headers["location"].startswith("/login"), where
            elif perm in ROLE_PERMISSIONS[Role(role)]:
                assert r.status_code not in (401, 403), where
                assert r.status_code < 500, where
            else:
                assert r.status_code == 403, where
            if method != "GET" and r.status_code < 400 and perm is not Perm.PUBLIC:
                assert console.store.audit_count() > before, f"not audited: {where}"
            checked += 1
    assert checked == len(route_keys(console.app))


# -- credentials and CSRF ---------------------------------------------------------------------


def _login(c: TestClient, username: str, password: str) -> str:
    r = c.post("/api/v1/session", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    token: str = r.json()["csrf_token"]
    return token


def test_session_needs_csrf_token_on_unsafe_requests(console: Console) -> None:
    with TestClient(console.app) as c:
        csrf = _login(c, "viewer", PASSWORD)
        assert c.get("/api/v1/me").json()["via"] == "session"
        refused = c.post("/api/v1/me/tokens", json={"name": "no-csrf"})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "csrf"
        wrong = c.post("/api/v1/me/tokens", json={"name": "x"}, headers={"X-CSRF-Token": "nope"})
        assert wrong.status_code == 403
        ok = c.post("/api/v1/me/tokens", json={"name": "with-csrf"}, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 201
        assert c.delete("/api/v1/session", headers={"X-CSRF-Token": csrf}).status_code == 204
        assert c.get("/api/v1/me").status_code == 401  # the session is gone on the server


def test_dashboard_form_without_csrf_field_is_refused(console: Console) -> None:
    if console.campaign_id is None:
        pytest.skip("fleetops.ota.rollout is not installed")
    with TestClient(console.app, follow_redirects=False) as c:
        _login(c, "release_manager", PASSWORD)
        r = c.post(f"/campaigns/{console.campaign_id}/pause", data={"reason": "no token"})
        assert r.status_code == 403


def test_login_failures_are_generic_and_audited(console: Console) -> None:
    with TestClient(console.app) as c:
        unknown = c.post("/api/v1/session", json={"username": "nobody", "password": "x"})
        wrong = c.post("/api/v1/session", json={"username": "viewer", "password": "wrong"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()  # no hint whether the account exists
    _, entries = console.store.audit_entries(action="login.failed", limit=10)
    assert {"nobody", "viewer"} <= {e.actor for e in entries}


def test_secrets_are_stored_hashed(console: Console, tmp_path: Path) -> None:
    rows = sqlite3.connect(console.settings.store).execute(
        "SELECT u.password_hash, t.token_hash FROM users u JOIN tokens t ON t.user_id = u.id"
    )
    for password_hash, token_hash in rows:
        assert password_hash.startswith("$argon2id$")
        assert not token_hash.startswith("fo_")
    dump = Path(console.settings.store).read_bytes()
    for secret in console.tokens.values():
        assert secret.encode() not in dump
    assert PASSWORD.encode() not in dump


def test_revoked_token_and_disabled_user_lose_access(console: Console) -> None:
    with TestClient(console.app) as c:
        created = c.post(
            "/api/v1/me/tokens", json={"name": "short"}, headers=console.auth("viewer")
        )
        secret, token_id = created.json()["token"], created.json()["id"]
        bearer = {"Authorization": f"Bearer {secret}"}
        assert c.get("/api/v1/me", headers=bearer).status_code == 200
        gone = c.delete(f"/api/v1/me/tokens/{token_id}", headers=bearer)
        assert gone.status_code == 204
        assert c.get("/api/v1/me", headers=bearer).status_code == 401

        made = c.post(
            "/api/v1/users",
            json={"username": "temp-user", "role": "fleet_engineer"},
            headers=console.auth("admin"),
        )
        assert made.status_code == 201
        password = made.json()["password"]
        csrf = _login(c, "temp-user", password)
        assert csrf
        patched = c.patch(
            f"/api/v1/users/{made.json()['id']}",
            json={"disabled": True},
            headers=console.auth("admin"),
        )
        assert patched.json()["disabled"] is True
        assert c.get("/api/v1/me").status_code == 401  # its session ended with it
        again = c.post("/api/v1/session", json={"username": "temp-user", "password": password})
        assert again.status_code == 401


def test_audit_records_who_what_and_before_after(console: Console) -> None:
    with TestClient(console.app) as c:
        made = c.post(
            "/api/v1/users",
            json={"username": "auditee", "role": "viewer"},
            headers=console.auth("admin"),
        )
        uid = made.json()["id"]
        c.patch(
            f"/api/v1/users/{uid}", json={"role": "security_analyst"}, headers=console.auth("admin")
        )
        log = c.get(
            "/api/v1/audit", params={"action": "user.update"}, headers=console.auth("admin")
        )
        denied = c.get("/api/v1/audit", headers=console.auth("security_analyst"))
    assert denied.status_code == 403
    entry = next(e for e in log.json()["items"] if e["target"] == "user:auditee")
    assert entry["actor"] == "admin"
    assert entry["before"]["role"] == "viewer"
    assert entry["after"]["role"] == "security_analyst"
    assert console.store.verify_audit() == console.store.audit_count()


def test_audit_log_is_append_only(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "audit.sqlite"))
    store.audit("alice", "campaign.pause", "campaign:1", before={"state": "running"})
    store.audit("bob", "campaign.resume", "campaign:1")
    conn = sqlite3.connect(tmp_path / "audit.sqlite")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit SET actor = 'mallory'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit")
    assert store.verify_audit() == 2
    # Someone with file access drops the trigger and rewrites history: the chain tells.
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET actor = 'mallory' WHERE id = 1")
    conn.commit()
    with pytest.raises(ValidationError, match="chain broken at entry 1"):
        store.verify_audit()


def test_first_start_creates_admin_with_one_time_password(tmp_path: Path, console: Console) -> None:
    settings = Settings.load(lake=console.lake.root, store=str(tmp_path / "new.sqlite"))
    app = create_app(settings)
    boot = app.state.bootstrap
    assert boot.admin_created and boot.generated_password
    with TestClient(app) as c:
        _login(c, "admin", boot.generated_password)
    second = create_app(settings)
    assert not second.state.bootstrap.admin_created  # never again on a store with users


def test_admin_password_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETOPS_ADMIN_PASSWORD", ADMIN_PASSWORD + "-env")
    monkeypatch.setenv("FLEETOPS_API_STORE", str(tmp_path / "env.sqlite"))
    monkeypatch.setenv("FLEETOPS_LAKE", str(tmp_path / "empty-lake"))
    app = create_app(Settings.load())
    assert app.state.bootstrap.generated_password is None
    with TestClient(app) as c:
        _login(c, "admin", ADMIN_PASSWORD + "-env")


@pytest.mark.parametrize(
    ("key", "roles"),
    [
        ("POST /api/v1/campaigns/{campaign_id}/pause", {"release_manager", "admin"}),
        ("POST /api/v1/incidents/{incident_id}/status", {"security_analyst", "admin"}),
        ("GET /api/v1/audit", {"admin"}),
        ("POST /api/v1/users", {"admin"}),
        ("GET /api/v1/vehicles", {r.value for r in Role}),
    ],
)
def test_the_policy_itself(key: str, roles: set[str]) -> None:
    """The table the matrix enforces says what the issue asks (written out by hand)."""
    assert {r.value for r in Role if ROUTES[key] in ROLE_PERMISSIONS[r]} == roles
