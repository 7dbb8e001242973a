"""Security incidents for the console, over :class:`fleetops.security.soc.store.IncidentStore`.

The SOC store holds one database connection that must stay on its thread, so the console
keeps one store per worker thread (SQLite file or PostgreSQL, as the SOC is configured).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fleetops.core.errors import ValidationError
from fleetops.security.soc.correlate import STATUSES
from fleetops.security.soc.store import IncidentStore


class IncidentProvider:
    statuses = STATUSES

    def __init__(self, path: Path | None = None, dsn: str | None = None) -> None:
        self.path = path
        self.dsn = dsn
        self._local = threading.local()

    def _store(self) -> IncidentStore:
        store: IncidentStore | None = getattr(self._local, "store", None)
        if store is None:
            store = IncidentStore.open(self.dsn, path=self.path)
            self._local.store = store
        return store

    def list(
        self, *, status: str | None = None, assignee: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        return self._store().incidents(status=status, assignee=assignee, limit=limit)

    def get(self, incident_id: str) -> dict[str, Any] | None:
        try:
            return self._store().get(incident_id)
        except ValidationError:
            return None

    def change(
        self, incident_id: str, action: str, value: str, actor: str
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Apply one workflow step; (before, after) of status and assignee, or None."""
        before = self.get(incident_id)
        if before is None:
            return None
        store = self._store()
        if action == "status":
            store.set_status(incident_id, value, actor=actor)
        elif action == "assign":
            store.assign(incident_id, value, actor=actor)
        elif action == "comment":
            store.comment(incident_id, value, author=actor)
        else:  # pragma: no cover - routes pass the three above
            raise ValueError(action)
        after = self.get(incident_id)
        assert after is not None
        keep = ("status", "assignee")
        return {k: before.get(k) for k in keep}, {k: after.get(k) for k in keep} | (
            {"comment": value} if action == "comment" else {}
        )
