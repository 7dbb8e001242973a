"""Session, self-service, users and the audit log."""

from __future__ import annotations

import secrets
import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from fleetops.api.auth import (
    SESSION_COOKIE,
    CurrentUser,
    check_credentials,
    client_ip,
    hash_password,
    new_password,
    new_token_secret,
    verify_password,
)
from fleetops.api.errors import COMMON_RESPONSES, CONFLICT, NOT_FOUND, ApiError
from fleetops.api.models import (
    AuditOut,
    Health,
    LoginRequest,
    MeOut,
    Page,
    PasswordChange,
    SessionOut,
    TokenCreate,
    TokenCreated,
    TokenOut,
    UserCreate,
    UserCreated,
    UserOut,
    UserUpdate,
)
from fleetops.api.permissions import ROLE_PERMISSIONS, Role
from fleetops.api.store import ConflictError, NotFoundError, Store, Token, User

router = APIRouter(prefix="/api/v1", responses=COMMON_RESPONSES)
Id = Annotated[int, Path(ge=1, le=2**62)]  # fits a BIGINT in SQLite and PostgreSQL


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        role=Role(user.role),
        disabled=user.disabled,
        created_at=user.created_at,
    )


def token_out(token: Token) -> TokenOut:
    return TokenOut(
        id=token.id,
        name=token.name,
        prefix=token.prefix,
        created_at=token.created_at,
        expires_at=token.expires_at,
        revoked=token.revoked,
    )


def start_session(request: Request, response: Response, user: User) -> str:
    """Create a session for ``user``, set its cookie; returns the session's CSRF token."""
    settings = request.app.state.settings
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    lifetime = settings.session_hours * 3600
    _store(request).create_session(user.id, session_id, csrf, lifetime)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(lifetime),
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )
    return csrf


@router.get("/health", response_model=Health, tags=["meta"])
def health(request: Request) -> Health:
    """Liveness: the server answers (no credentials needed)."""
    from fleetops import __version__

    return Health(status="ok", version=__version__)


@router.post("/session", response_model=SessionOut, tags=["access"])
def login(body: LoginRequest, request: Request, response: Response) -> SessionOut:
    """Sign in with a password: sets the session cookie and returns its CSRF token."""
    store = _store(request)
    user = check_credentials(store, body.username, body.password)
    if user is None:
        store.audit(body.username, "login.failed", f"user:{body.username}", ip=client_ip(request))
        raise ApiError(401, "unauthenticated", "wrong username or password")
    csrf = start_session(request, response, user)
    store.audit(user.username, "login", f"user:{user.username}", ip=client_ip(request))
    return SessionOut(user=user_out(user), csrf_token=csrf)


@router.delete("/session", status_code=204, tags=["access"])
def logout(me: CurrentUser, request: Request) -> Response:
    """Sign out: the session ends on the server and its cookie is cleared."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if me.via == "session" and session_id:
        _store(request).delete_session(session_id)
    _store(request).audit(
        me.name, "logout", f"user:{me.name}", after={"via": me.via}, ip=client_ip(request)
    )
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/me", response_model=MeOut, tags=["access"])
def me(me: CurrentUser) -> MeOut:
    """Who the credentials belong to, and what they may do."""
    perms = sorted(p.value for p in ROLE_PERMISSIONS.get(Role(me.user.role), frozenset()))
    return MeOut(user=user_out(me.user), via=me.via, permissions=perms)


@router.put("/me/password", status_code=204, tags=["access"])
def change_password(body: PasswordChange, me: CurrentUser, request: Request) -> Response:
    """Change one's own password (the current one is required)."""
    store = _store(request)
    found = store.credentials(me.name)
    if found is None or not verify_password(found[1], body.current_password):
        raise ApiError(400, "bad_request", "the current password is wrong")
    store.update_user(me.user.id, password_hash=hash_password(body.new_password))
    store.audit(me.name, "user.password", f"user:{me.name}", ip=client_ip(request))
    return Response(status_code=204)


@router.get("/me/tokens", response_model=list[TokenOut], tags=["access"])
def list_tokens(me: CurrentUser, request: Request) -> list[TokenOut]:
    """One's own API tokens (never their secrets)."""
    return [token_out(t) for t in _store(request).tokens(me.user.id)]


@router.post("/me/tokens", response_model=TokenCreated, status_code=201, tags=["access"])
def create_token(body: TokenCreate, me: CurrentUser, request: Request) -> TokenCreated:
    """A new API token with one's own role; the secret is in this response only."""
    store = _store(request)
    secret = new_token_secret()
    expires = None if body.expires_in_days is None else time.time() + body.expires_in_days * 86400
    token = store.create_token(me.user.id, body.name, secret, expires)
    out = token_out(token)
    store.audit(
        me.name, "token.create", f"token:{token.id}", after=out.model_dump(), ip=client_ip(request)
    )
    return TokenCreated(**out.model_dump(), token=secret)


@router.delete("/me/tokens/{token_id}", status_code=204, tags=["access"], responses=NOT_FOUND)
def revoke_token(token_id: Id, me: CurrentUser, request: Request) -> Response:
    """Revoke one of one's own tokens."""
    store = _store(request)
    try:
        token = store.token(token_id)
    except NotFoundError:
        token = None
    if token is None or token.user_id != me.user.id:
        raise ApiError(404, "not_found", f"token {token_id} not found")
    after = store.revoke_token(token_id)
    store.audit(
        me.name,
        "token.revoke",
        f"token:{token_id}",
        before=token_out(token).model_dump(),
        after=token_out(after).model_dump(),
        ip=client_ip(request),
    )
    return Response(status_code=204)


@router.get("/users", response_model=list[UserOut], tags=["admin"])
def list_users(request: Request) -> list[UserOut]:
    """Every account (admin)."""
    return [user_out(u) for u in _store(request).users()]


@router.post(
    "/users", response_model=UserCreated, status_code=201, tags=["admin"], responses=CONFLICT
)
def create_user(body: UserCreate, me: CurrentUser, request: Request) -> UserCreated:
    """Create an account (admin); without a password one is generated and returned once."""
    store = _store(request)
    password = body.password or new_password()
    try:
        user = store.create_user(body.username, hash_password(password), body.role.value)
    except ConflictError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    out = user_out(user)
    store.audit(
        me.name,
        "user.create",
        f"user:{user.username}",
        after=out.model_dump(),
        ip=client_ip(request),
    )
    return UserCreated(**out.model_dump(), password=None if body.password else password)


@router.patch(
    "/users/{user_id}", response_model=UserOut, tags=["admin"], responses=NOT_FOUND | CONFLICT
)
def update_user(user_id: Id, body: UserUpdate, me: CurrentUser, request: Request) -> UserOut:
    """Change an account's role or disable it (admin); disabling ends its sessions and tokens."""
    store = _store(request)
    try:
        before = store.user(user_id)
    except NotFoundError:
        raise ApiError(404, "not_found", f"user {user_id} not found") from None
    if before.id == me.user.id and (body.disabled or (body.role and body.role != Role.ADMIN)):
        raise ApiError(409, "conflict", "an admin cannot demote or disable themself")
    after = store.update_user(
        user_id, role=None if body.role is None else body.role.value, disabled=body.disabled
    )
    store.audit(
        me.name,
        "user.update",
        f"user:{before.username}",
        before=user_out(before).model_dump(),
        after=user_out(after).model_dump(),
        ip=client_ip(request),
    )
    return user_out(after)


@router.get("/audit", response_model=Page[AuditOut], tags=["admin"])
def audit_log(
    request: Request,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[AuditOut]:
    """The append-only audit log, newest first (admin)."""
    total, entries = _store(request).audit_entries(
        limit=limit, offset=offset, actor=actor, action=action
    )
    items = [
        AuditOut(
            id=e.id,
            ts=e.ts,
            actor=e.actor,
            action=e.action,
            target=e.target,
            before=e.before,
            after=e.after,
            ip=e.ip,
            hash=e.hash,
        )
        for e in entries
    ]
    return Page[AuditOut](items=items, total=total, offset=offset, limit=limit)
