"""Vehicle security and health events, one JSON object per line.

Four kinds, told apart per line: IDS alerts (the OCSF Detection Finding objects of
:func:`fleetops.security.ids.ocsf.to_ocsf`, recognised by ``class_uid`` 2004), and objects
with ``"type"``: ``dtc`` (vin, ecu, code, status), ``ota`` (an update install result:
vin, ecu, campaign_id, from/to version, result) and ``ecu_software`` (a software change on
an ECU, same keys). See docs/soc-parsers.md for the keys.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
import polars as pl

from fleetops.core.ocsf import (
    DEAD_LETTER_SCHEMA,
    Domain,
    EventBatch,
    EventClass,
    Severity,
    Status,
    conform_events,
)
from fleetops.security.soc.parsers.common import lines_frame, parse_time

FIELDS: Final = (
    "kind",
    "vin",
    "ecu",
    "code",
    "dtc_status",
    "description",
    "campaign_id",
    "from_version",
    "to_version",
    "result",
    "reason",
    "finding_uid",
    "title",
    "attack",
    "arbitration_id",
    "bus",
    "confidence_score",
)
"""Native field names of vehicle events (all strings)."""
_SERVICE: Final = {"ids": "ids", "dtc": "dtc", "ota": "ota", "ecu_software": "ota"}
_RESULT: Final = {"success": 1, "succeeded": 1, "installed": 1, "ok": 1}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode() if isinstance(value, dict | list) else str(value)


def _ids(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    resources = [r for r in obj.get("resources") or [] if isinstance(r, dict)]
    vin = next((r.get("uid") for r in resources if r.get("type") == "Vehicle"), None)
    ecu_res = next((r for r in resources if r.get("type") == "Vehicle ECU"), {})
    info = obj.get("finding_info") or {}
    evidence = next(
        (e.get("data") or {} for e in obj.get("evidences") or [] if isinstance(e, dict)), {}
    )
    types = info.get("types") or []
    arbitration = evidence.get("arbitration_id")
    event = {
        "class_uid": int(EventClass.DETECTION_FINDING),
        "activity_id": int(obj.get("activity_id") or 1),
        "severity_id": int(obj.get("severity_id") or Severity.UNKNOWN),
        "status_id": int(obj.get("status_id") or Status.UNKNOWN),
        "message": info.get("title"),
        "vin": vin,
        "ecu": ecu_res.get("uid") or ecu_res.get("name"),
        "service": "ids",
    }
    fields = {
        "vin": vin,
        "ecu": event["ecu"],
        "finding_uid": info.get("uid"),
        "title": info.get("title"),
        "attack": types[0] if types else None,
        "arbitration_id": None if arbitration is None else f"0x{int(arbitration):X}",
        "bus": evidence.get("bus"),
        "confidence_score": obj.get("confidence_score"),
    }
    return event, fields


def _other(kind: str, obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    vin, ecu = obj.get("vin"), obj.get("ecu")
    fields: dict[str, Any] = {k: obj.get(k) for k in FIELDS if k in obj}
    event: dict[str, Any]
    if kind == "dtc":
        dtc_status = str(obj.get("status") or "").lower()
        fields["dtc_status"] = obj.get("status")
        message = f"DTC {obj.get('code')} {dtc_status or 'reported'} on {ecu or '?'}"
        if obj.get("description"):
            message += f": {obj['description']}"
        event = {
            "class_uid": int(EventClass.BASE),
            "activity_id": 0,
            "severity_id": int(
                Severity.LOW if dtc_status in ("confirmed", "active") else Severity.INFORMATIONAL
            ),
            "status_id": int(Status.UNKNOWN),
            "message": message,
        }
    else:
        result = str(obj.get("result") or "").lower()
        status = _RESULT.get(result, 2 if result else 0)
        label = "OTA install" if kind == "ota" else "ECU software change"
        message = f"{label} {obj.get('from_version')} -> {obj.get('to_version')} on {ecu or '?'}: {result or 'unknown'}"
        event = {
            "class_uid": int(EventClass.DEVICE_CONFIG_STATE_CHANGE),
            "activity_id": 99,
            "severity_id": int(Severity.LOW if status == 2 else Severity.INFORMATIONAL),
            "status_id": status,
            "message": message,
            "software_version": obj.get("to_version"),
            "campaign_id": obj.get("campaign_id"),
        }
    event.update({"vin": vin, "ecu": ecu, "service": _SERVICE[kind]})
    return event, fields


def parse_vehicle_json(text: str, source_file: str) -> EventBatch:
    """Every line as a vehicle event or a dead letter (bad JSON, unknown kind, no VIN/time)."""
    lines = lines_frame(text)
    events: list[dict[str, Any]] = []
    # Native fields are gathered per column (the frame is then built without dicts).
    fields: dict[str, list[str | None]] = {k: [] for k in FIELDS}
    dead: list[tuple[int, str, str]] = []
    for index, line in lines.iter_rows():
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            dead.append((index, f"bad JSON: {str(exc).split(':')[0]}", line))
            continue
        if not isinstance(obj, dict):
            dead.append((index, f"not a JSON object: {type(obj).__name__}", line))
            continue
        kind = (
            "ids" if obj.get("class_uid") == int(EventClass.DETECTION_FINDING) else obj.get("type")
        )
        if kind not in _SERVICE:
            dead.append(
                (
                    index,
                    f"unknown vehicle event kind {kind!r} (type: dtc, ota, ecu_software; or an IDS finding)",
                    line,
                )
            )
            continue
        event, native = _ids(obj) if kind == "ids" else _other(str(kind), obj)
        stamp = obj.get("time", obj.get("ts"))
        if stamp is None:
            dead.append((index, "missing time", line))
            continue
        if not event.get("vin"):
            dead.append((index, "missing vin", line))
            continue
        event.update({"time": _text(stamp), "record_index": index, "raw": line})
        native["kind"] = str(kind)
        events.append(event)
        for key, column in fields.items():
            value = native.get(key)
            column.append(value if value is None or type(value) is str else _text(value))
    frame = (
        pl.DataFrame(events, infer_schema_length=None)
        if events
        else pl.DataFrame(
            {"time": [], "record_index": [], "service": []},
            schema={"time": pl.String(), "record_index": pl.Int64(), "service": pl.String()},
        )
    )
    frame = frame.with_columns(parse_time(pl.col("time")).alias("_time"))
    bad_time = frame.filter(pl.col("_time").is_null())
    dead += [
        (r["record_index"], f"bad timestamp '{str(r['time'])[:40]}'", r["raw"])
        for r in bad_time.iter_rows(named=True)
    ]
    keep = frame["_time"].is_not_null()
    frame = frame.filter(keep).with_columns(
        pl.col("_time").alias("time"),
        pl.lit(Domain.VEHICLE.value).alias("domain"),
        (pl.col("class_uid").cast(pl.Int64) * 100 + pl.col("activity_id")).alias("type_uid")
        if "class_uid" in frame.columns
        else pl.lit(None, dtype=pl.Int64).alias("type_uid"),
        pl.lit("fleetops").alias("logsource_product"),
        pl.col("service").alias("logsource_service"),
        pl.lit(source_file).alias("source_file"),
    )
    field_frame = pl.DataFrame(fields, schema=dict.fromkeys(FIELDS, pl.String())).filter(keep)
    dead_frame = pl.DataFrame(
        {
            "source_file": [source_file] * len(dead),
            "record_index": [d[0] for d in dead],
            "reason": [d[1] for d in dead],
            "raw": [d[2] for d in dead],
        },
        schema=DEAD_LETTER_SCHEMA,
    ).sort("record_index")
    return EventBatch(conform_events(frame), field_frame, dead_frame)
