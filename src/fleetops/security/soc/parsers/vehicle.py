"""Vehicle security and health events, one JSON object per line.

Four kinds, told apart per line: IDS alerts (the OCSF Detection Finding objects of
:func:`fleetops.security.ids.ocsf.to_ocsf`, recognised by ``class_uid`` 2004), and objects
with ``"type"``: ``dtc`` (vin, ecu, code, status), ``ota`` (an update install result:
vin, ecu, campaign_id, from/to version, result) and ``ecu_software`` (a software change on
an ECU, same keys). See docs/soc-parsers.md for the keys.

Objects of the last three kinds with only string values are mapped by column; the others
(IDS findings, numbers or nulls as values) object by object, with the same result.
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


_FAST_KEYS: Final = tuple(dict.fromkeys(("type", "time", "ts", "status", *FIELDS[1:])).keys())
"""Keys read from objects on the columnar path (``kind`` is set by the parser)."""


def _decode(line: str) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return exc


_PLAIN_KINDS: Final = frozenset(("dtc", "ota", "ecu_software"))
_ONLY_STR: Final = frozenset((str,))


def _plain_frame(
    indexes: list[int], lines: list[str], objs: list[dict[str, str]]
) -> tuple[pl.DataFrame, pl.DataFrame, list[tuple[int, str, str]]]:
    """Events (before the time is parsed), native fields and dead letters of plain objects.

    Every value is a string here, so absent keys are the only nulls and ``_other``'s
    ``str(x or "")`` and f-strings become null handling; ``lower()`` stays Python's.
    """
    # Keys no object has are not looked up row by row.
    present = set().union(*objs)
    none: list[str | None] = [None] * len(objs)
    columns = {k: [o.get(k) for o in objs] if k in present else none for k in _FAST_KEYS}
    frame = pl.DataFrame(
        {
            "record_index": indexes,
            "raw": lines,
            **columns,
            "_status_lower": [None if v is None else v.lower() for v in columns["status"]],
            "_result_lower": [None if v is None else v.lower() for v in columns["result"]],
        },
        schema={
            "record_index": pl.Int64(),
            "raw": pl.String(),
            **dict.fromkeys(_FAST_KEYS, pl.String()),
            "_status_lower": pl.String(),
            "_result_lower": pl.String(),
        },
    )
    kind, ecu = pl.col("type"), pl.col("ecu")
    dtc = kind == "dtc"
    stamp = pl.coalesce("time", "ts")
    missing = (
        pl.when(stamp.is_null())
        .then(pl.lit("missing time"))
        .when(pl.col("vin").is_null() | (pl.col("vin") == ""))
        .then(pl.lit("missing vin"))
    )
    frame = frame.with_columns(stamp.alias("time"), missing.alias("_reason"))
    dead_rows = frame.filter(pl.col("_reason").is_not_null())
    dead = list(zip(dead_rows["record_index"], dead_rows["_reason"], dead_rows["raw"], strict=True))
    if dead:
        frame = frame.filter(pl.col("_reason").is_null())
    dtc_status = pl.col("_status_lower").fill_null("")
    result = pl.col("_result_lower").fill_null("")
    status = (
        pl.when(result.is_in(list(_RESULT)))
        .then(pl.lit(1))
        .when(result != "")
        .then(pl.lit(2))
        .otherwise(pl.lit(0))
    )
    where = pl.when(ecu.is_null() | (ecu == "")).then(pl.lit("?")).otherwise(ecu)
    description = pl.col("description")
    dtc_message = pl.format(
        "DTC {} {} on {}",
        pl.col("code").fill_null("None"),
        pl.when(dtc_status == "").then(pl.lit("reported")).otherwise(dtc_status),
        where,
    ) + pl.when(description.is_null() | (description == "")).then(pl.lit("")).otherwise(
        pl.lit(": ") + description
    )
    ota_message = pl.format(
        "{} {} -> {} on {}: {}",
        pl.when(kind == "ota").then(pl.lit("OTA install")).otherwise(pl.lit("ECU software change")),
        pl.col("from_version").fill_null("None"),
        pl.col("to_version").fill_null("None"),
        where,
        pl.when(result == "").then(pl.lit("unknown")).otherwise(result),
    )
    low, info = int(Severity.LOW), int(Severity.INFORMATIONAL)
    events = frame.select(
        pl.col("time"),
        pl.col("record_index"),
        pl.col("raw"),
        pl.when(dtc)
        .then(pl.lit(int(EventClass.BASE)))
        .otherwise(pl.lit(int(EventClass.DEVICE_CONFIG_STATE_CHANGE)))
        .alias("class_uid"),
        pl.when(dtc).then(pl.lit(0)).otherwise(pl.lit(99)).alias("activity_id"),
        pl.when(dtc)
        .then(
            pl.when(dtc_status.is_in(["confirmed", "active"]))
            .then(pl.lit(low))
            .otherwise(pl.lit(info))
        )
        .otherwise(pl.when(status == 2).then(pl.lit(low)).otherwise(pl.lit(info)))
        .alias("severity_id"),
        pl.when(dtc).then(pl.lit(int(Status.UNKNOWN))).otherwise(status).alias("status_id"),
        pl.when(dtc).then(dtc_message).otherwise(ota_message).alias("message"),
        pl.when(dtc).then(pl.lit(None)).otherwise(pl.col("to_version")).alias("software_version"),
        pl.when(dtc).then(pl.lit(None)).otherwise(pl.col("campaign_id")).alias("campaign_id"),
        pl.col("vin"),
        ecu,
        kind.replace_strict(_SERVICE, return_dtype=pl.String()).alias("service"),
    )
    fields = frame.select(
        kind.alias("kind"),
        *[
            pl.when(dtc).then(pl.col("status")).otherwise(pl.col(k)).alias(k)
            if k == "dtc_status"
            else pl.col(k)
            for k in FIELDS[1:]
        ],
    )
    return events, fields, dead


def _other_frame(
    indexes: list[int], lines: list[str], objs: list[Any], like: dict[str, Any] | None
) -> tuple[pl.DataFrame, pl.DataFrame, list[tuple[int, str, str]]]:
    """As :func:`_plain_frame`, object by object: IDS findings, other kinds, non-strings.

    ``like`` stands for the plain events, if any: a row of their value types, so that
    columns mixing numbers and strings get the same type as in one frame of all events.
    """
    events: list[dict[str, Any]] = []
    fields: dict[str, list[str | None]] = {k: [] for k in FIELDS}
    dead: list[tuple[int, str, str]] = []
    for index, line, obj in zip(indexes, lines, objs, strict=True):
        kind = (
            "ids" if obj.get("class_uid") == int(EventClass.DETECTION_FINDING) else obj.get("type")
        )
        if not isinstance(kind, str) or kind not in _SERVICE:
            dead.append(
                (
                    index,
                    f"unknown vehicle event kind {kind!r} (type: dtc, ota, ecu_software; or an IDS finding)",
                    line,
                )
            )
            continue
        try:
            event, native = _ids(obj) if kind == "ids" else _other(str(kind), obj)
        except (ValueError, TypeError, AttributeError) as exc:
            # A wrongly typed field (a severity that is not a number, an ECU that is not
            # an object): this line is dead-lettered, the rest of the file still parses.
            dead.append((index, f"bad {kind} record: {type(exc).__name__}: {exc}", line))
            continue
        nested = next((k for k, v in event.items() if isinstance(v, dict | list)), None)
        if nested is not None:  # event columns hold text and numbers, never JSON containers
            shape = "object" if isinstance(event[nested], dict) else "array"
            dead.append((index, f"bad {kind} record: {nested!r} is a JSON {shape}", line))
            continue
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
        pl.DataFrame(events if like is None else [like, *events], infer_schema_length=None).slice(
            0 if like is None else 1
        )
        if events
        else pl.DataFrame(
            {"time": [], "record_index": [], "service": []},
            schema={"time": pl.String(), "record_index": pl.Int64(), "service": pl.String()},
        )
    )
    return frame, pl.DataFrame(fields, schema=dict.fromkeys(FIELDS, pl.String())), dead


def _finish(
    frame: pl.DataFrame, fields: pl.DataFrame, source_file: str, dead: list[tuple[int, str, str]]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Conformed events and their fields, less bad timestamps (added to ``dead``)."""
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
    return conform_events(frame), fields.filter(keep)


def parse_vehicle_json(text: str, source_file: str) -> EventBatch:
    """Every line as a vehicle event or a dead letter (bad JSON, unknown kind, no VIN/time)."""
    lines_table = lines_frame(text)
    indexes: list[int] = lines_table["record_index"].to_list()
    lines: list[str] = lines_table["line"].to_list()
    objs = [_decode(line) for line in lines]
    # The columnar path takes dtc/ota/ecu_software objects whose values are all strings
    # (the value types are checked first: "type" may be unhashable).
    plain = [
        type(obj) is dict
        and {*map(type, obj.values())} == _ONLY_STR
        and obj.get("type") in _PLAIN_KINDS
        for obj in objs
    ]
    dead: list[tuple[int, str, str]] = []
    rest: tuple[list[int], list[str], list[Any]] = ([], [], [])
    for i in [i for i, fast in enumerate(plain) if not fast]:
        index, line, obj = indexes[i], lines[i], objs[i]
        if isinstance(obj, orjson.JSONDecodeError):
            dead.append((index, f"bad JSON: {str(obj).split(':')[0]}", line))
        elif not isinstance(obj, dict):
            dead.append((index, f"not a JSON object: {type(obj).__name__}", line))
        else:
            rest[0].append(index)
            rest[1].append(line)
            rest[2].append(obj)
    # Most lines take the columnar path; the rest (IDS findings, unknown kinds, numbers or
    # nulls as values) keep the per-object code, and the two parts are merged by line.
    if len(rest[0]) == len(indexes) - len(dead):
        parts = [_other_frame(*rest, None)]
    else:
        pick = [i for i, fast in enumerate(plain) if fast]
        parts = [
            _plain_frame(
                [indexes[i] for i in pick], [lines[i] for i in pick], [objs[i] for i in pick]
            )
        ]
        if rest[0]:
            plain_events = parts[0][0]
            like = {
                name: (
                    0 if dtype.is_integer() else "" if column.null_count() < len(column) else None
                )
                for (name, dtype), column in zip(
                    plain_events.schema.items(), plain_events.get_columns(), strict=True
                )
            }
            parts.append(_other_frame(*rest, like if plain_events.height else None))
    events, fields = [], []
    for frame, native, part_dead in parts:
        dead += part_dead
        part_events, part_fields = _finish(frame, native, source_file, dead)
        events.append(part_events)
        fields.append(part_fields)
    event_frame, field_frame = events[0], fields[0]
    if len(events) > 1:
        order = pl.concat([e["record_index"] for e in events]).arg_sort()
        event_frame = pl.concat(events)[order]
        field_frame = pl.concat(fields)[order]
    dead_frame = pl.DataFrame(
        {
            "source_file": [source_file] * len(dead),
            "record_index": [d[0] for d in dead],
            "reason": [d[1] for d in dead],
            "raw": [d[2] for d in dead],
        },
        schema=DEAD_LETTER_SCHEMA,
    ).sort("record_index")
    return EventBatch(event_frame, field_frame, dead_frame)
