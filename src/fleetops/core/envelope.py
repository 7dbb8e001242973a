"""The telemetry message a vehicle publishes, and its validation into lake rows.

One message carries a short buffer of samples from one vehicle, column-wise::

    {"v": 1, "vin": "5YJ3E1EA7KF000001", "seq": 42,
     "ts": [1732450000000, 1732450001000],                 # ms since the Unix epoch
     "signals": {"Vehicle.Speed": [52.1, 53.0],
                 "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current": [81.2, null]}}

``seq`` increases by one per message of a VIN and never repeats (the vehicle persists
it); ``(vin, seq)`` is the message's identity for de-duplication. A single sample may
also be sent with scalar ``ts`` and scalar values. ``null`` marks a sample not taken.

Validation never raises on bad input: whatever cannot become a lake row is returned as
a dead letter with its reason, and the rest of the message is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa

from fleetops.core.errors import ValidationError
from fleetops.core.schema import DEAD_LETTER, SIGNALS
from fleetops.core.types import validate_vin
from fleetops.core.vss import DataType, SignalCatalog, SignalSpec

ENVELOPE_VERSION = 1
MAX_PAYLOAD_BYTES = 1 << 20
EARLIEST_MS = 946_684_800_000  # 2000-01-01: anything older is a broken clock
FUTURE_SLACK_MS = 86_400_000  # a vehicle clock may run at most a day ahead

_INT_RANGES: dict[DataType, tuple[float, float]] = {
    DataType.UINT8: (0, 2**8 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT8: (-(2**7), 2**7 - 1),
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
}


def encode_message(
    vin: str,
    seq: int,
    ts_ms: Sequence[int] | npt.NDArray[np.int64],
    signals: Mapping[str, Sequence[float | None] | npt.NDArray[Any]],
) -> bytes:
    """Serialise one vehicle message (NaN values become ``null``)."""
    body: dict[str, Any] = {
        "v": ENVELOPE_VERSION,
        "vin": vin,
        "seq": int(seq),
        "ts": np.asarray(ts_ms, dtype=np.int64),
        "signals": {
            path: _nan_to_none(np.asarray(values, dtype=np.float64))
            for path, values in signals.items()
        },
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _nan_to_none(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | list[float | None]:
    if np.isnan(values).any():
        return [None if np.isnan(v) else float(v) for v in values]
    return values


@dataclass(slots=True)
class DeadLetter:
    source: str
    reason: str
    payload: bytes


@dataclass(slots=True)
class DecodedBatch:
    """What a batch of raw messages became: rows, message identities and dead letters."""

    vins: list[npt.NDArray[np.object_]] = field(default_factory=list)
    ts: list[npt.NDArray[np.int64]] = field(default_factory=list)
    names: list[npt.NDArray[np.object_]] = field(default_factory=list)
    values: list[npt.NDArray[np.float64]] = field(default_factory=list)
    keys: list[tuple[str, int]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    messages: int = 0
    duplicates: int = 0

    @property
    def value_count(self) -> int:
        return sum(len(v) for v in self.values)

    def signals_table(self) -> pa.Table:
        if not self.values:
            return SIGNALS.empty_table()
        ts_us = np.concatenate(self.ts) * 1000
        return pa.table(
            {
                "vin": pa.array(np.concatenate(self.vins), pa.string()),
                "ts": pa.array(ts_us, pa.int64()).cast(SIGNALS.field("ts").type),
                "signal": pa.array(np.concatenate(self.names), pa.string()),
                "value": pa.array(np.concatenate(self.values), pa.float64()),
            },
            schema=SIGNALS,
        )

    def dead_letter_table(self, received_at_us: int | None = None) -> pa.Table:
        now = received_at_us if received_at_us is not None else time.time_ns() // 1000
        n = len(self.dead)
        return pa.table(
            {
                "received_at": pa.array([now] * n, pa.int64()).cast(
                    DEAD_LETTER.field("received_at").type
                ),
                "source": pa.array([d.source for d in self.dead], pa.string()),
                "reason": pa.array([d.reason for d in self.dead], pa.string()),
                "payload": pa.array([d.payload for d in self.dead], pa.binary()),
            },
            schema=DEAD_LETTER,
        )


class EnvelopeDecoder:
    """Turns raw message payloads into lake rows, checking them against the catalog."""

    def __init__(
        self,
        catalog: SignalCatalog,
        *,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        now_ms: int | None = None,
    ) -> None:
        self.catalog = catalog
        self.max_payload_bytes = max_payload_bytes
        self._now_ms = now_ms  # fixed clock for tests; None reads the wall clock

    def decode(
        self,
        payload: bytes,
        source: str,
        batch: DecodedBatch,
        admit: Callable[[str, int], str | None] | None = None,
    ) -> None:
        """Add one message to ``batch``.

        ``admit(vin, seq)`` decides on the message's identity before its rows are built:
        ``None`` admits it, ``"duplicate"`` drops it silently (counted), any other text
        dead-letters it with that reason.
        """
        batch.messages += 1
        try:
            vin, seq, ts, signals = self._envelope(payload)
            verdict = admit(vin, seq) if admit is not None else None
        except ValidationError as exc:
            batch.dead.append(DeadLetter(source, str(exc), payload))
            return
        if verdict == "duplicate":
            batch.duplicates += 1
            return
        if verdict is not None:
            batch.dead.append(DeadLetter(source, verdict, payload))
            return
        batch.keys.append((vin, seq))
        for path, raw in signals.items():
            try:
                values = self._values(path, raw, len(ts))
            except ValidationError as exc:
                fragment = orjson.dumps(
                    {"vin": vin, "seq": seq, "ts": ts.tolist(), "signal": path, "values": raw}
                )
                batch.dead.append(DeadLetter(source, str(exc), fragment))
                continue
            taken = ~np.isnan(values)
            count = int(taken.sum())
            if count == 0:
                continue
            if count == len(values):
                batch.ts.append(ts)
                batch.values.append(values)
            else:
                batch.ts.append(ts[taken])
                batch.values.append(values[taken])
            batch.vins.append(np.full(count, vin, dtype=object))
            batch.names.append(np.full(count, path, dtype=object))

    def _envelope(self, payload: bytes) -> tuple[str, int, npt.NDArray[np.int64], dict[str, Any]]:
        if len(payload) > self.max_payload_bytes:
            raise ValidationError(
                f"oversize payload: {len(payload)} bytes > limit {self.max_payload_bytes}"
            )
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise ValidationError(f"malformed JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ValidationError("message is not a JSON object")
        if doc.get("v", ENVELOPE_VERSION) != ENVELOPE_VERSION:
            raise ValidationError(f"unsupported envelope version {doc.get('v')!r}")
        missing = [k for k in ("vin", "seq", "ts", "signals") if k not in doc]
        if missing:
            raise ValidationError(f"missing field(s): {', '.join(missing)}")
        vin = doc["vin"]
        if not isinstance(vin, str):
            raise ValidationError("vin is not a string")
        vin = validate_vin(vin)
        seq = doc["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValidationError(f"seq must be a non-negative integer, got {seq!r}")
        ts = self._timestamps(doc["ts"])
        signals = doc["signals"]
        if not isinstance(signals, dict):
            raise ValidationError("signals is not an object")
        if np.ndim(doc["ts"]) == 0:  # scalar form: wrap values to length-1 lists
            signals = {k: [v] for k, v in signals.items()}
        return vin, seq, ts, signals

    def _timestamps(self, raw: Any) -> npt.NDArray[np.int64]:
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise ValidationError("ts is empty")
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in items):
            raise ValidationError("ts must be integer milliseconds since the Unix epoch")
        ts = np.asarray(items, dtype=np.int64)
        now = self._now_ms if self._now_ms is not None else time.time_ns() // 1_000_000
        low, high = int(ts.min()), int(ts.max())
        if low < EARLIEST_MS or high > now + FUTURE_SLACK_MS:
            bad = low if low < EARLIEST_MS else high
            raise ValidationError(f"absurd timestamp {bad} ms (outside 2000-01-01 … now + 1 day)")
        return ts

    def _values(self, path: str, raw: Any, n: int) -> npt.NDArray[np.float64]:
        spec = self.catalog.get(path)
        if spec is None:
            raise ValidationError(f"unknown signal {path!r}")
        if not isinstance(raw, list) or len(raw) != n:
            raise ValidationError(f"{path}: expected {n} values aligned with ts")
        return _check_values(spec, raw)


def _check_values(spec: SignalSpec, raw: list[Any]) -> npt.NDArray[np.float64]:
    if spec.datatype is DataType.BOOLEAN:
        if not all(v is None or isinstance(v, bool) or v in (0, 1) for v in raw):
            raise ValidationError(f"{spec.path}: wrong type, expected booleans")
    elif not all(
        v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in raw
    ):
        raise ValidationError(f"{spec.path}: wrong type, expected {spec.datatype.value} numbers")
    values = np.array([np.nan if v is None else v for v in raw], dtype=np.float64)
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return values
    if not np.isfinite(finite).all():
        raise ValidationError(f"{spec.path}: infinite value")
    low, high = float(finite.min()), float(finite.max())
    lo_ok = spec.min is None or low >= spec.min
    hi_ok = spec.max is None or high <= spec.max
    if not (lo_ok and hi_ok):
        raise ValidationError(
            f"{spec.path}: value out of range [{spec.min}, {spec.max}] ({low} … {high})"
        )
    if spec.datatype.is_integer:
        ilo, ihi = _INT_RANGES[spec.datatype]
        if low < ilo or high > ihi or not np.all(finite == np.round(finite)):
            raise ValidationError(f"{spec.path}: wrong type, expected {spec.datatype.value}")
    return values
