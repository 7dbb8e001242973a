"""Arrow schemas of the lake's shared tables, and how each is partitioned.

Capabilities may write tables of their own; these are the ones the core defines.
"""

from __future__ import annotations

import pyarrow as pa

from fleetops.core.types import CAN_FRAME_SCHEMA

UTC_US = pa.timestamp("us", tz="UTC")

SIGNALS = pa.schema(
    [
        pa.field("vin", pa.string(), nullable=False),
        pa.field("ts", UTC_US, nullable=False),
        pa.field("signal", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)

VEHICLES = pa.schema(
    [
        pa.field("vin", pa.string(), nullable=False),
        pa.field("model", pa.string()),
        pa.field("model_year", pa.int16()),
        pa.field("region", pa.string()),
    ]
)

ECUS = pa.schema(
    [
        pa.field("vin", pa.string(), nullable=False),
        pa.field("ecu", pa.string(), nullable=False),
        pa.field("hardware_id", pa.string()),
        pa.field("software_version", pa.string()),
    ]
)

DTCS = pa.schema(
    [
        pa.field("vin", pa.string(), nullable=False),
        pa.field("ts", UTC_US, nullable=False),
        pa.field("ecu", pa.string()),
        pa.field("code", pa.string(), nullable=False),  # SAE J2012 style, e.g. P0A7F
        pa.field("description", pa.string()),
    ]
)

FAILURES = pa.schema(  # simulator ground truth: when wear began to show and when it failed
    [
        pa.field("vin", pa.string(), nullable=False),
        pa.field("component", pa.string(), nullable=False),
        pa.field("onset_ts", UTC_US),
        pa.field("failure_ts", UTC_US),
        pa.field("mode", pa.string()),
    ]
)

DEAD_LETTER = pa.schema(
    [
        pa.field("received_at", UTC_US, nullable=False),
        pa.field("source", pa.string()),  # e.g. the MQTT topic or file
        pa.field("reason", pa.string(), nullable=False),
        pa.field("payload", pa.binary()),
    ]
)

CAN_FRAMES = CAN_FRAME_SCHEMA

SCHEMAS: dict[str, pa.Schema] = {
    "signals": SIGNALS,
    "vehicles": VEHICLES,
    "ecus": ECUS,
    "dtcs": DTCS,
    "failures": FAILURES,
    "dead_letter": DEAD_LETTER,
    "can_frames": CAN_FRAMES,
}

# Time-series tables are partitioned by UTC day on this column; the others are not.
PARTITION_COLUMN: dict[str, str] = {
    "signals": "ts",
    "dtcs": "ts",
    "dead_letter": "received_at",
    "can_frames": "ts",
}
