"""OTA campaigns for the console, over :class:`fleetops.ota.rollout.store.CampaignStore`.

Reads turn a campaign into plain data (waves with their progress, transitions, halt
evidence); pause and resume go through the campaign's own state machine, under a lock so
that two concurrent requests cannot lose each other's change.

A campaign file is ≈ 170 bytes per ECU (1.7 MB for a 10 k fleet's BMS, 10 ms to parse), so
the plain data read from it is kept, keyed by the file's inode, size and mtime: the store
replaces a file whole (a new file renamed over the old), so any save, ours or another
process's, changes the key and the next read parses the new file.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

from fleetops.ota.rollout.campaign import Campaign
from fleetops.ota.rollout.store import CampaignStore


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


_Stamp = tuple[int, int, int]  # (inode, size, mtime_ns) of a campaign file


class CampaignProvider:
    def __init__(self, root: Path | None) -> None:
        self.store = CampaignStore(root)
        self._lock = threading.Lock()
        self._read: dict[str, tuple[_Stamp, dict[str, Any], dict[str, Any]]] = {}

    def _cached(self, campaign_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(summary, detail) of a stored campaign, parsed again only when its file changed.
        Callers must not modify them (they are shared)."""
        try:
            st = (self.store.root / f"{campaign_id}.json").stat()
        except OSError:
            return None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        found = self._read.get(campaign_id)
        if found is not None and found[0] == stamp:
            return found[1], found[2]
        # Stat before load: a file replaced in between is cached under the older stamp, so
        # the next read sees a new stamp and parses again (never the reverse).
        campaign = self.store.load(campaign_id)
        summary, detail = self.summary(campaign), self.detail(campaign)
        self._read[campaign_id] = (stamp, summary, detail)
        return summary, detail

    def exists(self, campaign_id: str) -> bool:
        return campaign_id in self.store.ids()

    @staticmethod
    def summary(c: Campaign) -> dict[str, Any]:
        installed = int(c.members.get_column("installed_at").is_not_null().sum())
        failed = int(c.members.get_column("failed_at").is_not_null().sum())
        return {
            "campaign_id": c.campaign_id,
            "name": c.name,
            "state": c.state.value,
            "release": c.release.name,
            "software_version": c.release.version,
            "cohort": c.cohort.describe(),
            "ecus": c.members.height,
            "installed": installed,
            "failed": failed,
            "waves": len(c.waves),
            "current_wave": c.current_wave,
            "created": c.created,
            "halted": c.halt_evidence is not None and c.state.value == "halted",
        }

    def list(self) -> list[dict[str, Any]]:
        ids = self.store.ids()
        self._read = {i: v for i, v in self._read.items() if i in ids}  # forget deleted ones
        return [found[0] for found in map(self._cached, ids) if found is not None]

    def get(self, campaign_id: str) -> dict[str, Any] | None:
        if not self.exists(campaign_id):
            return None
        found = self._cached(campaign_id)
        return None if found is None else found[1]

    def detail(self, c: Campaign) -> dict[str, Any]:
        waves = c.wave_summary().to_dicts()
        detail: dict[str, Any] = _clean(
            {
                **self.summary(c),
                "wave_progress": [
                    {
                        "wave": int(w["wave"]),
                        "share": float(w["share"]),
                        "ecus": int(w["ecus"]),
                        "installed": int(w["installed"]),
                        "failed": int(w["failed"]),
                        "released": w["released"],
                        "success_threshold": c.waves[int(w["wave"])].success_threshold,
                        "error_threshold": c.waves[int(w["wave"])].error_threshold,
                    }
                    for w in waves
                ],
                "transitions": [
                    {
                        "time": t.get("time"),
                        "from_state": t.get("from"),
                        "to_state": t.get("to"),
                        "actor": t.get("actor"),
                        "reason": t.get("reason"),
                        "has_evidence": "evidence" in t,
                    }
                    for t in c.transitions
                ],
                "halt_evidence": c.halt_evidence,
                "last_report": c.last_report,
            }
        )
        return detail

    def transition(
        self, campaign_id: str, action: str, actor: str, reason: str
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Pause or resume; returns (before, after) summaries, or None if unknown."""
        with self._lock:
            if not self.exists(campaign_id):
                return None
            campaign = self.store.load(campaign_id)
            before = self.summary(campaign)
            if action == "pause":
                campaign.pause(actor, reason)
            elif action == "resume":
                campaign.resume(actor, reason)
            else:  # pragma: no cover - routes only pass the two above
                raise ValueError(action)
            self.store.save(campaign)
            return before, self.summary(campaign)
