"""Security events and findings as columns: the contract between producers and the SOC.

Every capability that emits something a security analyst should see (log parsers, the CAN
IDS, OTA campaigns, the anomaly models) writes rows of the two frames defined here, so the
cyber defence centre (`fleetops.security.soc`) can correlate them without knowing where
they came from. The columns follow OCSF 1.3 attribute names, flattened: one event is one
row, the entities correlation joins on (user, host, ip, VIN, ECU, software version, update
campaign, OT device) are first-class columns, and the source's own record stays in ``raw``.

An :class:`EventBatch` also carries the source's *native* fields (``Image``,
``CommandLine``, ``cs-method`` ...) row-aligned with the events, because Sigma rules are
written against those names, not against OCSF's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Final

import polars as pl


class Domain(StrEnum):
    """The four layers the cyber defence centre watches."""

    IT = "it"
    VEHICLE = "vehicle"
    OT = "ot"
    SERVICE = "service"


class EventClass(IntEnum):
    """The OCSF 1.3 event classes fleetops emits (``class_uid``)."""

    BASE = 0
    FILE_ACTIVITY = 1001
    KERNEL_ACTIVITY = 1003
    MODULE_ACTIVITY = 1005
    SCHEDULED_JOB_ACTIVITY = 1006
    PROCESS_ACTIVITY = 1007
    EVENT_LOG_ACTIVITY = 1008
    DETECTION_FINDING = 2004
    AUTHENTICATION = 3002
    ACCOUNT_CHANGE = 3001
    NETWORK_ACTIVITY = 4001
    HTTP_ACTIVITY = 4002
    DNS_ACTIVITY = 4003
    DEVICE_CONFIG_STATE_CHANGE = 5019
    API_ACTIVITY = 6003
    REGISTRY_VALUE_ACTIVITY = 201004


class Severity(IntEnum):
    """OCSF ``severity_id``."""

    UNKNOWN = 0
    INFORMATIONAL = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CRITICAL = 5
    FATAL = 6


class Status(IntEnum):
    """OCSF ``status_id``."""

    UNKNOWN = 0
    SUCCESS = 1
    FAILURE = 2


EVENT_SCHEMA: Final[dict[str, pl.DataType]] = {
    "time": pl.Datetime("ms", "UTC"),
    "domain": pl.String(),
    "class_uid": pl.Int32(),
    "activity_id": pl.Int32(),
    "type_uid": pl.Int64(),
    "severity_id": pl.Int32(),
    "status_id": pl.Int32(),
    "message": pl.String(),
    # entities: what correlation joins on
    "user": pl.String(),
    "host": pl.String(),
    "src_ip": pl.String(),
    "dst_ip": pl.String(),
    "src_port": pl.Int32(),
    "dst_port": pl.Int32(),
    "vin": pl.String(),
    "ecu": pl.String(),
    "software_version": pl.String(),
    "campaign_id": pl.String(),
    "device": pl.String(),
    # activity detail
    "process": pl.String(),
    "parent_process": pl.String(),
    "command_line": pl.String(),
    "http_method": pl.String(),
    "url": pl.String(),
    "http_status": pl.Int32(),
    "user_agent": pl.String(),
    "bytes": pl.Int64(),
    "ot_operation": pl.String(),
    # where it came from: Sigma logsource, file and record, and the record itself
    "logsource_product": pl.String(),
    "logsource_category": pl.String(),
    "logsource_service": pl.String(),
    "source_file": pl.String(),
    "record_index": pl.Int64(),
    "raw": pl.String(),
}
"""One normalised event per row. ``record_index`` is the 1-based line (or packet) number."""

ENTITY_COLUMNS: Final[tuple[str, ...]] = (
    "user",
    "host",
    "src_ip",
    "dst_ip",
    "vin",
    "ecu",
    "software_version",
    "campaign_id",
    "device",
)
"""Columns shared by events and findings that identify who or what was involved."""

FINDING_SCHEMA: Final[dict[str, pl.DataType]] = {
    "time": pl.Datetime("ms", "UTC"),
    "finding_uid": pl.String(),
    "source": pl.String(),  # sigma | anomaly | ids | ota | ...
    "rule_id": pl.String(),  # Sigma rule id, model name or detector name
    "title": pl.String(),
    "severity_id": pl.Int32(),
    "techniques": pl.List(pl.String()),  # ATT&CK (T1110, T0836) and Auto-ISAC ATM ids
    "domain": pl.String(),
    **{name: pl.String() for name in ENTITY_COLUMNS},
    "score": pl.Float64(),
    "source_file": pl.String(),
    "record_index": pl.Int64(),
    "evidence": pl.String(),  # JSON object
}
"""One alert per row, from any detector; the input to correlation."""

DEAD_LETTER_SCHEMA: Final[dict[str, pl.DataType]] = {
    "source_file": pl.String(),
    "record_index": pl.Int64(),
    "reason": pl.String(),
    "raw": pl.String(),
}
"""A record a parser could not turn into an event, kept with the reason."""


def _conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    missing = [
        pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in schema.items()
        if name not in frame.columns
    ]
    if missing:
        frame = frame.with_columns(missing)
    return frame.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])


def conform_events(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the event columns ``frame`` lacks (as nulls), cast, order, drop the rest."""
    return _conform(frame, EVENT_SCHEMA)


def conform_findings(frame: pl.DataFrame) -> pl.DataFrame:
    """As :func:`conform_events`, for findings."""
    return _conform(frame, FINDING_SCHEMA)


def events_from_records(records: list[dict[str, Any]]) -> pl.DataFrame:
    """Events from dicts keyed by :data:`EVENT_SCHEMA` names (``time`` in epoch ms)."""
    if not records:
        return pl.DataFrame(schema=EVENT_SCHEMA)
    frame = pl.DataFrame(records, infer_schema_length=None)
    if "time" in frame.columns and frame.schema["time"].is_integer():
        frame = frame.with_columns(
            pl.from_epoch("time", time_unit="ms").dt.replace_time_zone("UTC")
        )
    return conform_events(frame)


def findings_from_records(records: list[dict[str, Any]]) -> pl.DataFrame:
    """Findings from dicts keyed by :data:`FINDING_SCHEMA` names (``time`` in epoch ms)."""
    if not records:
        return pl.DataFrame(schema=FINDING_SCHEMA)
    frame = pl.DataFrame(records, infer_schema_length=None)
    if "time" in frame.columns and frame.schema["time"].is_integer():
        frame = frame.with_columns(
            pl.from_epoch("time", time_unit="ms").dt.replace_time_zone("UTC")
        )
    return conform_findings(frame)


@dataclass(frozen=True)
class EventBatch:
    """Events parsed from one source, their native fields, and what could not be parsed.

    ``fields`` has one row per event row (same order) and one String column per native
    field name of the source; Sigma rules are evaluated against it. ``dead_letters`` rows
    follow :data:`DEAD_LETTER_SCHEMA`.
    """

    events: pl.DataFrame
    fields: pl.DataFrame
    dead_letters: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=DEAD_LETTER_SCHEMA)
    )

    def __post_init__(self) -> None:
        if self.events.height != self.fields.height:
            raise ValueError(
                f"events ({self.events.height} rows) and fields ({self.fields.height} rows) must align"
            )

    @property
    def parsed(self) -> int:
        return self.events.height

    @property
    def rejected(self) -> int:
        return self.dead_letters.height

    @staticmethod
    def concat(batches: list[EventBatch]) -> EventBatch:
        """One batch from many; native field columns are unioned (missing ones are null)."""
        if not batches:
            return EventBatch(pl.DataFrame(schema=EVENT_SCHEMA), pl.DataFrame())
        return EventBatch(
            pl.concat([b.events for b in batches], how="vertical"),
            pl.concat([b.fields for b in batches], how="diagonal_relaxed"),
            pl.concat([b.dead_letters for b in batches], how="vertical"),
        )
