"""Alerts as OCSF Detection Finding events (class 2004) for the cyber defence centre."""

from __future__ import annotations

import hashlib
from typing import Any

from fleetops.security.ids.detect import Alert

_SEVERITY = {  # OCSF severity_id: 3 medium, 4 high, 5 critical
    "flooding": 5,
    "masquerade": 5,
    "spoofing": 4,
    "payload_fuzzing": 4,
    "id_fuzzing": 4,
    "replay": 4,
    "sequence_replay": 4,
    "suppression": 3,
}
_SEVERITY_NAMES = {3: "Medium", 4: "High", 5: "Critical"}


def to_ocsf(
    alert: Alert, *, vehicle: str = "unknown", bus: str = "can0", time_origin_s: float = 0.0
) -> dict[str, Any]:
    """One OCSF 1.x Detection Finding; ``time_origin_s`` turns capture time into epoch."""
    severity = _SEVERITY.get(alert.attack, 3)
    start_ms = round((time_origin_s + alert.time) * 1000)
    end_ms = round((time_origin_s + alert.last_time) * 1000)
    target = "many ids" if alert.arbitration_id is None else f"0x{alert.arbitration_id:X}"
    uid = hashlib.sha256(f"{vehicle}|{bus}|{alert.attack}|{target}|{start_ms}".encode()).hexdigest()
    resource: dict[str, Any] = {"type": "Vehicle ECU", "name": f"{vehicle}/{bus}/{target}"}
    if alert.arbitration_id is not None:
        resource["uid"] = f"{vehicle}:{bus}:0x{alert.arbitration_id:X}"
    return {
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200401,
        "time": start_ms,
        "start_time": start_ms,
        "end_time": end_ms,
        "severity_id": severity,
        "severity": _SEVERITY_NAMES[severity],
        "status_id": 1,
        "confidence_score": min(100, round(100 * (1 - 1 / (1 + alert.score)))),
        "metadata": {
            "version": "1.3.0",
            "product": {"name": "fleetops-ids", "vendor_name": "fleetops"},
        },
        "finding_info": {
            "uid": uid,
            "title": f"CAN {alert.attack.replace('_', ' ')} on {target}"
            + (f" ({alert.signal})" if alert.signal else ""),
            "types": [alert.attack],
            "first_seen_time": start_ms,
            "last_seen_time": end_ms,
        },
        "resources": [resource, {"type": "Vehicle", "uid": vehicle, "name": vehicle}],
        "evidences": [
            {
                "data": {
                    "arbitration_id": alert.arbitration_id,
                    "signal": alert.signal,
                    "frames": alert.frames,
                    "score": round(alert.score, 3),
                    "checks": alert.evidence,
                    "ids": alert.ids,
                    "bus": bus,
                }
            }
        ],
    }
