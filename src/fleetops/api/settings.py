"""Console settings: defaults, then a YAML file, then environment variables (last wins).

=============================  ===========================================================
environment variable           meaning
=============================  ===========================================================
``FLEETOPS_CONFIG``            YAML file with any of the keys below (``store``, ``lake``, …)
``FLEETOPS_LAKE``              the lake folder (default ``<data dir>/lake``)
``FLEETOPS_API_STORE``         users, tokens, sessions and audit: a SQLite file path or a
                               ``postgresql://`` DSN (default ``<data dir>/console.sqlite``)
``FLEETOPS_API_STORE_SCHEMA``  PostgreSQL schema to use (default: the server's search path)
``FLEETOPS_ADMIN_PASSWORD``    password of the ``admin`` created on first start
``FLEETOPS_SESSION_HOURS``     session lifetime (default 12)
``FLEETOPS_SECURE_COOKIES``    ``1`` to mark cookies Secure (behind TLS)
``FLEETOPS_FOOTPRINT_PLANS``   folder of footprint plan folders (default ``<data dir>/footprint``)
``FLEETOPS_INCIDENTS``         the SOC's incident store file (default: the SOC's default)
``FLEETOPS_SOC_DSN``           …or its PostgreSQL DSN (as ``fleetops soc`` uses it)
``FLEETOPS_CAMPAIGNS``         the OTA campaign store (default: its own default)
=============================  ===========================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from fleetops import config
from fleetops.core.errors import ConfigError

CONFIG_ENV = "FLEETOPS_CONFIG"
_ENV = {
    "lake": config.LAKE_ENV,
    "store": "FLEETOPS_API_STORE",
    "store_schema": "FLEETOPS_API_STORE_SCHEMA",
    "admin_password": "FLEETOPS_ADMIN_PASSWORD",
    "session_hours": "FLEETOPS_SESSION_HOURS",
    "secure_cookies": "FLEETOPS_SECURE_COOKIES",
    "footprint_plans": "FLEETOPS_FOOTPRINT_PLANS",
    "incidents": "FLEETOPS_INCIDENTS",
    "incidents_dsn": "FLEETOPS_SOC_DSN",
    "campaigns": "FLEETOPS_CAMPAIGNS",
}


@dataclass(frozen=True)
class Settings:
    """Everything ``fleetops serve`` needs; see the module docstring for the sources."""

    lake: Path = field(default_factory=config.lake_dir)
    store: str = field(default_factory=lambda: str(config.data_dir() / "console.sqlite"))
    store_schema: str | None = None
    admin_password: str | None = None
    session_hours: float = 12.0
    secure_cookies: bool = False
    footprint_plans: Path = field(default_factory=lambda: config.data_dir() / "footprint")
    incidents: Path | None = None  # SQLite file of the SOC's incident store
    incidents_dsn: str | None = None  # …or its PostgreSQL DSN
    campaigns: Path | None = None
    cache_seconds: float = 5.0  # how often the fleet cache checks the lake for new files

    @property
    def is_postgres(self) -> bool:
        return self.store.startswith(("postgresql://", "postgres://"))

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
        """Defaults ← YAML file (``path`` or ``$FLEETOPS_CONFIG``) ← environment ← overrides."""
        values: dict[str, Any] = {}
        source = path if path is not None else os.environ.get(CONFIG_ENV)
        if source:
            try:
                loaded = yaml.safe_load(Path(source).read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"cannot read console settings {source}: {exc}") from exc
            if not isinstance(loaded, dict):
                raise ConfigError(f"{source}: expected a mapping of settings")
            values.update(loaded)
        for key, env in _ENV.items():
            if env in os.environ:
                values[key] = os.environ[env]
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown console settings: {', '.join(unknown)}")
        return replace(cls(), **{k: _coerce(k, v) for k, v in values.items()})


def _coerce(key: str, value: Any) -> Any:
    try:
        if key in {"lake", "footprint_plans", "incidents", "campaigns"}:
            return None if value in (None, "") else Path(value)
        if key in {"session_hours", "cache_seconds"}:
            number = float(value)
            if number <= 0:
                raise ValueError("must be positive")
            return number
        if key == "secure_cookies":
            return value if isinstance(value, bool) else str(value).lower() in {"1", "true", "yes"}
        return None if value is None else str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"console setting {key}={value!r}: {exc}") from exc
