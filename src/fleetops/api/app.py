"""The console application: API routers, dashboard pages, the gate and the stores.

>>> app = create_app(Settings.load())     # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import Depends, FastAPI

from fleetops import __version__
from fleetops.api import errors
from fleetops.api.auth import authorize, hash_password, new_password
from fleetops.api.fleet import FleetData
from fleetops.api.footprint import FootprintPlans
from fleetops.api.permissions import Role
from fleetops.api.providers import Providers, discover
from fleetops.api.settings import Settings
from fleetops.api.store import Store
from fleetops.core.lake import Lake

log = logging.getLogger("fleetops.api")

ADMIN_USERNAME = "admin"


@dataclass(frozen=True)
class Bootstrap:
    """What the first start did: the admin's one-time password when it generated one."""

    admin_created: bool
    generated_password: str | None


def ensure_admin(store: Store, password: str | None) -> Bootstrap:
    """On an empty store, create ``admin`` (password given, or generated and returned)."""
    if store.user_count() > 0:
        return Bootstrap(False, None)
    secret = password or new_password()
    store.create_user(ADMIN_USERNAME, hash_password(secret), Role.ADMIN.value)
    store.audit("system", "user.create", f"user:{ADMIN_USERNAME}", after={"role": "admin"})
    return Bootstrap(True, None if password else secret)


def create_app(
    settings: Settings, *, store: Store | None = None, providers: Providers | None = None
) -> FastAPI:
    """The FastAPI app; ``app.state.bootstrap`` tells whether an admin was just created."""
    from fleetops.api import routes_access, routes_fleet, routes_footprint, routes_maintenance
    from fleetops.web import pages

    store = store if store is not None else Store(settings.store, schema=settings.store_schema)
    app = FastAPI(
        title="fleetops console",
        version=__version__,
        description=(
            "Fleet, vehicles, signals, maintenance, security incidents, OTA campaigns and "
            "footprint plans. Authenticate with a bearer API token, or a session cookie plus "
            "its CSRF token in `X-CSRF-Token` on unsafe methods. Every error has the body "
            "`{error: {code, message, details?}}`."
        ),
        dependencies=[Depends(authorize)],
    )
    app.state.settings = settings
    app.state.store = store
    app.state.fleet = FleetData(Lake(settings.lake), refresh_s=settings.cache_seconds)
    app.state.footprint = FootprintPlans(settings.footprint_plans)
    app.state.providers = providers if providers is not None else discover(settings)
    app.state.bootstrap = ensure_admin(store, settings.admin_password)
    errors.install(app, pages.page_error)
    app.include_router(routes_access.router)
    app.include_router(routes_fleet.router)
    app.include_router(routes_footprint.router)
    app.include_router(routes_maintenance.router)
    for router in app.state.providers.routers():
        app.include_router(router)
    app.include_router(pages.router)
    return app
