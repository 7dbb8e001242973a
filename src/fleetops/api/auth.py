"""Who is calling, and may they: credentials, sessions, CSRF, and the per-route check.

Two kinds of credentials:

* ``Authorization: Bearer fo_…`` — an API token (for scripts); no CSRF check, since a
  browser never sends it on its own.
* the ``fleetops_session`` cookie — set by signing in (dashboard or ``POST
  /api/v1/session``). Every unsafe request (POST, PUT, PATCH, DELETE) made with it must
  carry the session's CSRF token (synchronizer token) in the ``X-CSRF-Token`` header or a
  ``csrf_token`` form field; the cookie is HttpOnly and SameSite=Lax on top.

:func:`authorize` runs before every route (an app-wide dependency): it looks the route up
in :data:`~fleetops.api.permissions.ROUTES` and refuses what is not declared there.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Request
from starlette.routing import BaseRoute, Route

from fleetops.api.errors import ApiError
from fleetops.api.permissions import ROUTES, Perm, allowed
from fleetops.api.store import Store, User

SESSION_COOKIE = "fleetops_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
TOKEN_PREFIX = "fo_"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# argon2id with OWASP's minimum (19 MiB, 2 passes, 1 lane): ~50 ms a guess on one core.
_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)
# Verified when the username is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_password() -> str:
    return secrets.token_urlsafe(15)


def check_credentials(store: Store, username: str, password: str) -> User | None:
    found = store.credentials(username)
    if found is None:
        verify_password(_DUMMY_HASH, password)
        return None
    user, password_hash = found
    if user.disabled or not verify_password(password_hash, password):
        return None
    return user


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request: a user, and how they proved it."""

    user: User
    via: str  # "session" or "token"
    csrf: str | None = None  # the session's CSRF token

    @property
    def name(self) -> str:
        return self.user.username

    def may(self, perm: Perm) -> bool:
        return allowed(self.user.role, perm)


def route_keys(routes: Sequence[BaseRoute], prefix: str = "") -> list[str]:
    """ "METHOD /path" of every route, inside included routers too (FastAPI ≥ 0.16x keeps
    them as ``_IncludedRouter`` entries instead of copying their routes)."""
    keys: list[str] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            keys += route_keys(inner.routes, prefix + str(getattr(context, "prefix", "")))
        elif isinstance(route, Route):
            methods = sorted((route.methods or set()) - {"HEAD"})
            keys += [f"{m} {prefix}{route.path}" for m in methods]
    return sorted(keys)


def route_key(request: Request) -> str | None:
    route = request.scope.get("route")
    if not isinstance(route, Route):
        return None
    return f"{request.method} {route.path}"


def _principal(request: Request, store: Store) -> Principal | None:
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise ApiError(401, "unauthenticated", "use 'Authorization: Bearer <token>'")
        user = store.user_by_token(secret.strip())
        if user is None:
            raise ApiError(401, "unauthenticated", "the token is unknown, revoked or expired")
        return Principal(user, "token")
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        found = store.session(session_id)
        if found is not None:
            return Principal(found[0], "session", found[1])
    return None


async def _csrf_ok(request: Request, expected: str) -> bool:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()  # Starlette caches it; the handler reads the same
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    return sent is not None and hmac.compare_digest(sent, expected)


async def authorize(request: Request) -> None:
    """The app-wide gate: resolve the caller, then check the route's declared permission."""
    key = route_key(request)
    perm = ROUTES.get(key) if key is not None else None
    store: Store = request.app.state.store
    principal = _principal(request, store)
    request.state.principal = principal
    if perm is None:  # deny by default
        raise ApiError(403, "forbidden", f"no permission is declared for {key}")
    if perm is Perm.PUBLIC:
        return
    if principal is None:
        raise ApiError(
            401, "unauthenticated", "sign in or send a bearer token", {"WWW-Authenticate": "Bearer"}
        )
    if not principal.may(perm):
        raise ApiError(403, "forbidden", f"role {principal.user.role} lacks {perm.value}")
    if principal.via == "session" and request.method in UNSAFE:
        assert principal.csrf is not None
        if not await _csrf_ok(request, principal.csrf):
            raise ApiError(403, "csrf", f"missing or wrong CSRF token ({CSRF_HEADER} header)")


def current(request: Request) -> Principal:
    """The signed-in caller (routes that are not public)."""
    principal: Principal | None = request.state.principal
    if principal is None:  # only reachable on a public route
        raise ApiError(401, "unauthenticated", "sign in or send a bearer token")
    return principal


CurrentUser = Annotated[Principal, Depends(current)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""
