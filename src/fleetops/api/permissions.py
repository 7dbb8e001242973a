"""Roles, permissions, and the declarative table saying which permission each route needs.

Deny by default: a route missing from :data:`ROUTES` answers 403 to everyone, and
``tests/api/test_permissions.py`` fails when any route of the app is missing here.
"""

from __future__ import annotations

from enum import StrEnum


class Perm(StrEnum):
    PUBLIC = "public"  # no credentials: the login page, health check, OpenAPI document
    SIGNED_IN = "signed_in"  # any account: its own profile, tokens, logout
    FLEET_READ = "fleet:read"
    MAINTENANCE_READ = "maintenance:read"
    MAINTENANCE_WRITE = "maintenance:write"
    SECURITY_READ = "security:read"
    SECURITY_WRITE = "security:write"
    OTA_READ = "ota:read"
    OTA_WRITE = "ota:write"
    FOOTPRINT_READ = "footprint:read"
    AUDIT_READ = "audit:read"
    USERS_ADMIN = "users:admin"


class Role(StrEnum):
    VIEWER = "viewer"
    FLEET_ENGINEER = "fleet_engineer"
    SECURITY_ANALYST = "security_analyst"
    RELEASE_MANAGER = "release_manager"
    ADMIN = "admin"


_READ = frozenset(
    {
        Perm.SIGNED_IN,
        Perm.FLEET_READ,
        Perm.MAINTENANCE_READ,
        Perm.SECURITY_READ,
        Perm.OTA_READ,
        Perm.FOOTPRINT_READ,
    }
)

ROLE_PERMISSIONS: dict[Role, frozenset[Perm]] = {
    Role.VIEWER: _READ,
    Role.FLEET_ENGINEER: _READ | {Perm.MAINTENANCE_WRITE},
    Role.SECURITY_ANALYST: _READ | {Perm.SECURITY_WRITE},
    Role.RELEASE_MANAGER: _READ | {Perm.OTA_WRITE},
    Role.ADMIN: frozenset(Perm) - {Perm.PUBLIC},
}


def allowed(role: str, perm: Perm) -> bool:
    if perm is Perm.PUBLIC:
        return True
    try:
        return perm in ROLE_PERMISSIONS[Role(role)]
    except ValueError:  # a role this version does not know gets nothing
        return False


# "METHOD /path" as the route is declared → the permission it needs.
ROUTES: dict[str, Perm] = {
    # -- API: session, self, administration
    "GET /api/v1/health": Perm.PUBLIC,
    "POST /api/v1/session": Perm.PUBLIC,
    "DELETE /api/v1/session": Perm.SIGNED_IN,
    "GET /api/v1/me": Perm.SIGNED_IN,
    "PUT /api/v1/me/password": Perm.SIGNED_IN,
    "GET /api/v1/me/tokens": Perm.SIGNED_IN,
    "POST /api/v1/me/tokens": Perm.SIGNED_IN,
    "DELETE /api/v1/me/tokens/{token_id}": Perm.SIGNED_IN,
    "GET /api/v1/users": Perm.USERS_ADMIN,
    "POST /api/v1/users": Perm.USERS_ADMIN,
    "PATCH /api/v1/users/{user_id}": Perm.USERS_ADMIN,
    "GET /api/v1/audit": Perm.AUDIT_READ,
    # -- API: fleet, vehicles, signals, DTCs
    "GET /api/v1/fleet/summary": Perm.FLEET_READ,
    "GET /api/v1/vehicles": Perm.FLEET_READ,
    "GET /api/v1/vehicles/{vin}": Perm.FLEET_READ,
    "GET /api/v1/vehicles/{vin}/signals": Perm.FLEET_READ,
    "GET /api/v1/vehicles/{vin}/series": Perm.FLEET_READ,
    "GET /api/v1/dtcs": Perm.FLEET_READ,
    # -- API: footprint
    "GET /api/v1/footprint/plans": Perm.FOOTPRINT_READ,
    "GET /api/v1/footprint/plans/{plan}": Perm.FOOTPRINT_READ,
    # -- API: maintenance
    "GET /api/v1/maintenance/predictions": Perm.MAINTENANCE_READ,
    "GET /api/v1/maintenance/work-orders": Perm.MAINTENANCE_READ,
    # -- API: security incidents
    "GET /api/v1/incidents": Perm.SECURITY_READ,
    "GET /api/v1/incidents/{incident_id}": Perm.SECURITY_READ,
    "POST /api/v1/incidents/{incident_id}/status": Perm.SECURITY_WRITE,
    "POST /api/v1/incidents/{incident_id}/assign": Perm.SECURITY_WRITE,
    "POST /api/v1/incidents/{incident_id}/comments": Perm.SECURITY_WRITE,
    # -- API: OTA campaigns
    "GET /api/v1/campaigns": Perm.OTA_READ,
    "GET /api/v1/campaigns/{campaign_id}": Perm.OTA_READ,
    "POST /api/v1/campaigns/{campaign_id}/pause": Perm.OTA_WRITE,
    "POST /api/v1/campaigns/{campaign_id}/resume": Perm.OTA_WRITE,
    # -- OpenAPI and its viewers (Starlette routes FastAPI adds)
    "GET /openapi.json": Perm.PUBLIC,
    "GET /docs": Perm.PUBLIC,
    "GET /docs/oauth2-redirect": Perm.PUBLIC,
    "GET /redoc": Perm.PUBLIC,
    # -- dashboard
    "GET /login": Perm.PUBLIC,
    "POST /login": Perm.PUBLIC,
    "POST /logout": Perm.SIGNED_IN,
    "GET /": Perm.FLEET_READ,
    "GET /vehicles": Perm.FLEET_READ,
    "GET /vehicles/{vin}": Perm.FLEET_READ,
    "GET /footprint": Perm.FOOTPRINT_READ,
    "GET /footprint/{plan}": Perm.FOOTPRINT_READ,
    "GET /audit": Perm.AUDIT_READ,
    "GET /incidents": Perm.SECURITY_READ,
    "GET /incidents/{incident_id}": Perm.SECURITY_READ,
    "POST /incidents/{incident_id}/status": Perm.SECURITY_WRITE,
    "POST /incidents/{incident_id}/comments": Perm.SECURITY_WRITE,
    "GET /campaigns": Perm.OTA_READ,
    "GET /campaigns/{campaign_id}": Perm.OTA_READ,
    "POST /campaigns/{campaign_id}/pause": Perm.OTA_WRITE,
    "POST /campaigns/{campaign_id}/resume": Perm.OTA_WRITE,
}
