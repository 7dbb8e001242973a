"""The small typed core every capability shares: vehicles, ECUs and CAN frames.

Signals and their catalog live in :mod:`fleetops.core.vss`; Arrow schemas of the lake
tables in :mod:`fleetops.core.schema`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fleetops.core.errors import ValidationError

_VIN_ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"  # ISO 3779: no I, O or Q
_VIN_VALUES = dict(
    zip(
        "ABCDEFGHJKLMNPRSTUVWXYZ",
        [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 7, 9, 2, 3, 4, 5, 6, 7, 8, 9],
        strict=True,
    )
) | {str(d): d for d in range(10)}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def vin_check_digit(vin: str) -> str:
    """The check digit (position 9) of a 17-character VIN, as 49 CFR 565 computes it."""
    total = sum(_VIN_VALUES[c] * w for c, w in zip(vin, _VIN_WEIGHTS, strict=True))
    rest = total % 11
    return "X" if rest == 10 else str(rest)


def validate_vin(vin: str, *, check_digit: bool = False) -> str:
    """Return ``vin`` upper-cased if it is a well-formed ISO 3779 VIN, else raise.

    The check digit is mandatory only in North America, so it is verified on request.
    """
    upper = vin.upper()
    if len(upper) != 17:
        raise ValidationError(f"VIN {vin!r} has {len(upper)} characters, expected 17")
    bad = sorted({c for c in upper if c not in _VIN_ALPHABET})
    if bad:
        raise ValidationError(f"VIN {vin!r} contains characters not allowed in a VIN: {bad}")
    if check_digit and vin_check_digit(upper) != upper[8]:
        raise ValidationError(
            f"VIN {vin!r} fails its check digit (expected {vin_check_digit(upper)})"
        )
    return upper


@dataclass(frozen=True, slots=True)
class Ecu:
    """An electronic control unit as the fleet inventory knows it."""

    name: str  # role in the vehicle, e.g. "BMS", "VCU", "TCU"
    hardware_id: str  # what OTA assigns images by
    software_version: str


@dataclass(frozen=True, slots=True)
class Vehicle:
    """A vehicle of the fleet: identity, model and its ECUs."""

    vin: str
    model: str
    model_year: int
    region: str
    ecus: tuple[Ecu, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "vin", validate_vin(self.vin))
        if not 1980 <= self.model_year <= 2100:
            raise ValidationError(f"model year {self.model_year} of {self.vin} is implausible")

    def ecu(self, name: str) -> Ecu:
        for ecu in self.ecus:
            if ecu.name == name:
                return ecu
        raise KeyError(f"{self.vin} has no ECU named {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "vin": self.vin,
            "model": self.model,
            "model_year": self.model_year,
            "region": self.region,
            "ecus": [
                {
                    "name": e.name,
                    "hardware_id": e.hardware_id,
                    "software_version": e.software_version,
                }
                for e in self.ecus
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vehicle:
        return cls(
            vin=data["vin"],
            model=data["model"],
            model_year=int(data["model_year"]),
            region=data["region"],
            ecus=tuple(Ecu(**e) for e in data.get("ecus", ())),
        )


CAN_FRAME_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("bus", pa.string(), nullable=False),
        pa.field("arbitration_id", pa.uint32(), nullable=False),
        pa.field("is_extended", pa.bool_(), nullable=False),
        pa.field("dlc", pa.uint8(), nullable=False),
        pa.field("data", pa.binary(8), nullable=False),
    ]
)


@dataclass(slots=True)
class CanFrames:
    """A batch of classic CAN frames held as columns, so that work over them is vectorised.

    ``data`` is an ``(n, 8)`` uint8 matrix; bytes past ``dlc`` are zero. ``label`` is set on
    simulated or labelled captures (empty string for normal traffic) and ``None`` otherwise.
    """

    timestamp: npt.NDArray[np.float64]  # seconds since the Unix epoch
    arbitration_id: npt.NDArray[np.uint32]
    dlc: npt.NDArray[np.uint8]
    data: npt.NDArray[np.uint8]
    bus: str = "can0"
    is_extended: npt.NDArray[np.bool_] | None = None
    label: npt.NDArray[np.str_] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.timestamp)
        if self.data.shape != (n, 8):
            raise ValidationError(f"CAN data must have shape ({n}, 8), got {self.data.shape}")
        if len(self.arbitration_id) != n or len(self.dlc) != n:
            raise ValidationError("CAN frame columns differ in length")
        if n and int(self.dlc.max()) > 8:
            raise ValidationError("classic CAN frames carry at most 8 data bytes")
        if self.is_extended is None:
            self.is_extended = self.arbitration_id > 0x7FF

    def __len__(self) -> int:
        return len(self.timestamp)

    @property
    def payload_u64(self) -> npt.NDArray[np.uint64]:
        """Each payload as one little-endian 64-bit word (byte 0 in the lowest bits)."""
        return np.ascontiguousarray(self.data).view("<u8").reshape(-1)

    def take(self, index: npt.NDArray[Any]) -> CanFrames:
        assert self.is_extended is not None
        return CanFrames(
            timestamp=self.timestamp[index],
            arbitration_id=self.arbitration_id[index],
            dlc=self.dlc[index],
            data=self.data[index],
            bus=self.bus,
            is_extended=self.is_extended[index],
            label=None if self.label is None else self.label[index],
        )

    def to_arrow(self) -> pa.Table:
        assert self.is_extended is not None
        n = len(self)
        data = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(8), n, [None, pa.py_buffer(np.ascontiguousarray(self.data).tobytes())]
        )
        columns: dict[str, pa.Array] = {
            "ts": pa.array((self.timestamp * 1e6).round().astype(np.int64), pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "bus": pa.array([self.bus] * n, pa.string()) if n else pa.array([], pa.string()),
            "arbitration_id": pa.array(self.arbitration_id, pa.uint32()),
            "is_extended": pa.array(self.is_extended, pa.bool_()),
            "dlc": pa.array(self.dlc, pa.uint8()),
            "data": data,
        }
        table = pa.table(columns, schema=CAN_FRAME_SCHEMA)
        if self.label is not None:
            table = table.append_column("label", pa.array(self.label.astype(str), pa.string()))
        return table

    @classmethod
    def from_arrow(cls, table: pa.Table) -> CanFrames:
        n = table.num_rows
        data_col = table.column("data").combine_chunks()
        if pa.types.is_fixed_size_binary(data_col.type) and data_col.type.byte_width == 8:
            raw = np.frombuffer(data_col.buffers()[1], dtype=np.uint8)
            offset = data_col.offset * 8
            data = raw[offset : offset + n * 8].reshape(n, 8).copy()
        else:  # variable-length binary: pad each payload to 8 bytes
            data = np.zeros((n, 8), dtype=np.uint8)
            for i, payload in enumerate(data_col.to_pylist()):
                data[i, : len(payload)] = np.frombuffer(payload, dtype=np.uint8)[:8]
        ts = table.column("ts").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        buses = table.column("bus").unique().to_pylist() if "bus" in table.column_names else []
        return cls(
            timestamp=ts.to_numpy().astype(np.float64) / 1e6,
            arbitration_id=table.column("arbitration_id").to_numpy().astype(np.uint32),
            dlc=table.column("dlc").to_numpy().astype(np.uint8),
            data=data,
            bus=buses[0] if len(buses) == 1 else "can0",
            is_extended=(
                table.column("is_extended").to_numpy(zero_copy_only=False).astype(bool)
                if "is_extended" in table.column_names
                else None
            ),
            label=(
                np.asarray(table.column("label").to_pylist(), dtype=str)
                if "label" in table.column_names
                else None
            ),
        )
