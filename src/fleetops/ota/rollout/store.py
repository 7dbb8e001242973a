"""Campaigns on disk: one JSON file each under ``<data dir>/ota/campaigns``.

Writes are atomic (a temporary file renamed over the old one), so a crash never leaves a
half-written campaign; the transition log inside each file is the audit trail.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from fleetops.config import data_dir
from fleetops.core.errors import ConfigError, ValidationError
from fleetops.core.lake import atomic_write
from fleetops.ota.rollout.campaign import Campaign

CAMPAIGNS_ENV = "FLEETOPS_CAMPAIGNS"


def default_root() -> Path:
    """``$FLEETOPS_CAMPAIGNS``, else ``<data dir>/ota/campaigns``."""
    return Path(os.environ.get(CAMPAIGNS_ENV, data_dir() / "ota" / "campaigns"))


class CampaignStore:
    """Load, save and list campaigns in a folder."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def _path(self, campaign_id: str) -> Path:
        if not campaign_id or any(c in campaign_id for c in "/\\") or campaign_id.startswith("."):
            raise ValidationError(f"{campaign_id!r} is not a campaign id")
        return self.root / f"{campaign_id}.json"

    def save(self, campaign: Campaign) -> Path:
        path = self._path(campaign.campaign_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(
                path,
                orjson.dumps(
                    campaign.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_INDENT_2
                ),
            )
        except OSError as exc:
            raise ConfigError(f"cannot write campaign {path}: {exc}") from exc
        return path

    def load(self, campaign_id: str) -> Campaign:
        path = self._path(campaign_id)
        if not path.is_file():
            known = ", ".join(self.ids()) or "none"
            raise ValidationError(f"no campaign {campaign_id!r} in {self.root} (known: {known})")
        try:
            return Campaign.from_dict(orjson.loads(path.read_bytes()))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"campaign file {path} is damaged: {exc}") from exc

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.root.glob("*.json"))

    def all(self) -> list[Campaign]:
        return [self.load(i) for i in self.ids()]
