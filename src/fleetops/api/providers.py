"""Which capabilities the console serves: each is a provider over that capability's own
store, with its API router, mounted only when the capability's package is installed.

A capability that is absent is listed in :attr:`Providers.missing` with the reason (the
dashboard says so) — the console never invents data for it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import APIRouter

from fleetops.api.settings import Settings

if TYPE_CHECKING:
    from fleetops.api.ota import CampaignProvider
    from fleetops.api.soc import IncidentProvider


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@dataclass
class Providers:
    campaigns: CampaignProvider | None = None
    incidents: IncidentProvider | None = None
    missing: dict[str, str] = field(default_factory=dict)

    def routers(self) -> list[APIRouter]:
        routers = []
        if self.incidents is not None:
            from fleetops.api import routes_soc

            routers.append(routes_soc.router)
        if self.campaigns is not None:
            from fleetops.api import routes_ota

            routers.append(routes_ota.router)
        return routers


def discover(settings: Settings) -> Providers:
    providers = Providers()
    if _has("fleetops.ota.rollout.store"):
        from fleetops.api.ota import CampaignProvider

        providers.campaigns = CampaignProvider(settings.campaigns)
    else:
        providers.missing["campaigns"] = "fleetops.ota.rollout is not installed"
    if _has("fleetops.security.soc.store"):
        from fleetops.api.soc import IncidentProvider

        providers.incidents = IncidentProvider(settings.incidents, settings.incidents_dsn)
    else:
        providers.missing["incidents"] = "fleetops.security.soc is not installed"
    return providers
