"""OT operation records of our own schema: OPC UA operations and PLC program changes.

One record per line of JSON (``ot-json``) or per CSV row with a header (``ot-csv``); the
keys are in :data:`OT_KEYS` and docs/soc-parsers.md. OPC UA session operations become
Authentication events, other OPC UA operations API Activity, PLC program / mode /
firmware changes Device Config State Change; all in the OT domain, product ``fleetops``,
service ``opcua``, ``plc`` or ``modbus``.
"""

from __future__ import annotations

import io
from typing import Final

import polars as pl

from fleetops.core.ocsf import Domain, EventBatch, EventClass, Severity
from fleetops.security.soc.parsers.access import _json_objects, read_json_columns
from fleetops.security.soc.parsers.common import (
    dead_letters,
    finish,
    first_reason,
    lines_frame,
    parse_time,
    quoted,
    status_id,
)

OT_KEYS: Final[tuple[str, ...]] = (
    "time",
    "device",
    "protocol",
    "operation",
    "user",
    "src_ip",
    "dst_ip",
    "node_id",
    "value",
    "status",
    "program_name",
    "program_hash",
    "previous_hash",
    "program_version",
    "mode",
    "production_line",
    "message",
)
"""Our OT record keys, which are also the native field names."""
_SESSION_OPS: Final = ("createsession", "activatesession", "closesession", "login", "logout")
_PLC_PREFIXES: Final = ("program", "mode", "firmware", "logic", "config", "download", "upload")


def _records(frame: pl.DataFrame, source_file: str) -> EventBatch:
    """Events from ``frame`` (``record_index``, ``line`` and one String column per key)."""
    # The derived columns are stored once: each is read by several expressions below, and
    # eager Polars would compute a shared sub-expression again for each one.
    frame = frame.with_columns(
        pl.col("operation").str.strip_chars().alias("_op"),
        pl.col("operation")
        .str.strip_chars()
        .str.to_lowercase()
        .str.replace_all(r"[\s_-]", "")
        .alias("_op_lower"),
        pl.col("protocol").str.to_lowercase().str.replace_all(r"[\s_-]", "").alias("_protocol"),
    )
    op, op_lower, protocol = pl.col("_op"), pl.col("_op_lower"), pl.col("_protocol")
    frame = frame.with_columns(
        pl.when(protocol.is_in(["opcua", "plc", "modbus"]))
        .then(protocol)
        .when(pl.any_horizontal([op_lower.str.starts_with(p) for p in _PLC_PREFIXES]))
        .then(pl.lit("plc"))
        .otherwise(pl.lit("opcua"))
        .alias("_service"),
        op_lower.is_in(list(_SESSION_OPS)).alias("_session"),
        status_id(pl.col("status")).alias("_status"),
        parse_time(pl.col("time")).alias("_time"),
    )
    service, session = pl.col("_service"), pl.col("_session")
    class_uid = (
        pl.when(service == "plc")
        .then(pl.lit(int(EventClass.DEVICE_CONFIG_STATE_CHANGE)))
        .when(session)
        .then(pl.lit(int(EventClass.AUTHENTICATION)))
        .otherwise(pl.lit(int(EventClass.API_ACTIVITY)))
    )
    activity = (
        pl.when(service == "plc")
        .then(pl.lit(99))
        .when(session)
        .then(pl.when(op_lower.is_in(["closesession", "logout"])).then(2).otherwise(1))
        .when(op_lower.str.contains("^(?:read|browse|translate|query|historyread)"))
        .then(pl.lit(2))
        .when(op_lower.str.contains("^(?:add|create)"))
        .then(pl.lit(1))
        .when(op_lower.str.contains("^delete"))
        .then(pl.lit(4))
        .otherwise(pl.lit(3))  # write, call, method, update
    )
    frame = frame.with_columns(class_uid.alias("_class_uid"), activity.alias("_activity"))
    class_uid, activity = pl.col("_class_uid"), pl.col("_activity")
    status, time = pl.col("_status"), pl.col("_time")
    message = pl.coalesce(
        pl.col("message"),
        pl.format(
            "{} {} on {}",
            service,
            op.fill_null("?"),
            pl.col("device").fill_null("?"),
        ),
    )
    reason = first_reason(
        [
            (pl.col("time").is_null(), "missing time"),
            (time.is_null(), pl.format("bad timestamp {}", quoted(pl.col("time")))),
            (pl.col("device").is_null() | (pl.col("device") == ""), "missing device"),
            (op.is_null() | (op == ""), "missing operation"),
        ]
    )
    events = {
        "time": time,
        "domain": pl.lit(Domain.OT.value),
        "class_uid": class_uid,
        "activity_id": activity,
        "type_uid": class_uid.cast(pl.Int64) * 100 + activity,
        "severity_id": pl.when(service == "plc")
        .then(pl.lit(int(Severity.MEDIUM)))
        .when(status == 2)
        .then(pl.lit(int(Severity.LOW)))
        .otherwise(pl.lit(int(Severity.INFORMATIONAL))),
        "status_id": status,
        "message": message,
        "user": pl.col("user"),
        "src_ip": pl.col("src_ip"),
        "dst_ip": pl.col("dst_ip"),
        "device": pl.col("device"),
        "software_version": pl.coalesce(pl.col("program_version"), pl.col("program_hash")),
        "ot_operation": op,
        "logsource_product": pl.lit("fleetops"),
        "logsource_service": service,
    }
    fields = {name: pl.col(name) for name in OT_KEYS}
    return finish(frame, reason, events, fields, source_file)


def parse_ot_json(text: str, source_file: str) -> EventBatch:
    """JSON lines with the keys of :data:`OT_KEYS`."""
    frame, bad = _json_objects(lines_frame(text), source_file)
    columns = read_json_columns(frame["line"], {k: (k,) for k in OT_KEYS})
    batch = _records(pl.concat([frame, columns], how="horizontal"), source_file)
    if not bad:
        return batch
    dead = pl.concat([batch.dead_letters, dead_letters(source_file, bad)]).sort("record_index")
    return EventBatch(batch.events, batch.fields, dead)


def parse_ot_csv(text: str, source_file: str) -> EventBatch:
    """CSV with a header row naming (some of) :data:`OT_KEYS`; other columns are ignored."""
    lines = lines_frame(text)
    if lines.is_empty():
        return _records(
            lines.with_columns([pl.lit(None, dtype=pl.String()).alias(k) for k in OT_KEYS]),
            source_file,
        )
    try:
        table = pl.read_csv(
            io.StringIO(text),
            infer_schema=False,
            truncate_ragged_lines=True,
        )
    except pl.exceptions.PolarsError as exc:
        return EventBatch(
            _records(
                lines.head(0).with_columns(
                    [pl.lit(None, dtype=pl.String()).alias(k) for k in OT_KEYS]
                ),
                source_file,
            ).events,
            pl.DataFrame(schema=dict.fromkeys(OT_KEYS, pl.String())),
            dead_letters(
                source_file, [(i, f"unreadable CSV: {exc}", line) for i, line in lines.iter_rows()]
            ),
        )
    table = table.rename({c: c.strip().lower() for c in table.columns})
    table = table.select(
        [
            pl.col(k).str.strip_chars()
            if k in table.columns
            else pl.lit(None, dtype=pl.String()).alias(k)
            for k in OT_KEYS
        ]
    )
    rows = lines.slice(1)  # the header
    if rows.height != table.height:  # quoted newlines: raw is the row's values instead
        rows = pl.DataFrame(
            {
                "record_index": pl.int_range(2, table.height + 2, eager=True).cast(pl.Int64),
                "line": table.select(
                    pl.concat_str(pl.all().fill_null(""), separator=",")
                ).to_series(),
            }
        )
    return _records(pl.concat([rows, table], how="horizontal"), source_file)
