"""The CAN database (DBC) of the fleetops EV and what fleetops reads from a DBC.

A DBC names each CAN signal; fleetops adds two signal attributes to it:

* ``VSSPath`` (string): the COVESA VSS path the signal carries, in the catalog's unit, so
  decoded values go into the lake's ``signals`` table without conversion;
* ``E2ERole`` (enum ``None``/``AliveCounter``/``Checksum``): end-to-end protection. The
  counter counts 0..15 and wraps, +1 per frame. The checksum is one whole byte:
  CRC-8 SAE J1850 (poly 0x1D, init 0xFF, final XOR 0xFF, not reflected) over the data ID
  (the frame id, low byte then high byte) followed by every other payload byte of the
  message in byte order. The data ID makes equal payloads on two ids checksum differently.

Bit positions are compiled once per signal into a :class:`BitLayout` over the payload as a
64-bit word, which is what the vectorised decoder and the simulator both work on.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import cantools
import numpy as np
import numpy.typing as npt
from cantools.database.can import Database, Message, Signal

from fleetops.core.errors import ConfigError
from fleetops.core.types import CanFrames

VSS_ATTRIBUTE = "VSSPath"
E2E_ATTRIBUTE = "E2ERole"
DEFAULT_DBC_NAME = "fleetops_ev.dbc"


def default_dbc_path() -> Path:
    """Where the shipped DBC of the simulated fleetops EV lies."""
    return Path(str(resources.files("fleetops.core").joinpath("data", DEFAULT_DBC_NAME)))


def load_dbc(path: Path | str | None = None, *, strict: bool = True) -> Database:
    """Load a DBC (default: the shipped fleetops EV database).

    ``strict`` makes cantools reject overlapping signals and signals outside their message.
    """
    source = default_dbc_path() if path is None else Path(path)
    if not source.is_file():
        raise ConfigError(f"CAN database {source} does not exist or is not a file")
    try:
        db = cantools.database.load_file(source, database_format="dbc", strict=strict)
    except Exception as exc:  # cantools raises parser-specific errors of many kinds
        raise ConfigError(f"CAN database {source} cannot be loaded: {exc}") from exc
    if not isinstance(db, Database):  # pragma: no cover - database_format="dbc" gives CAN
        raise ConfigError(f"{source} is not a CAN database")
    return db


def _attribute(signal: Signal, name: str) -> Any:
    attr = signal.dbc.attributes.get(name) if signal.dbc is not None else None
    return None if attr is None else attr.value


def vss_paths(db: Database) -> dict[tuple[int, str], str]:
    """``(frame_id, signal name) -> VSS path`` for every signal with a ``VSSPath``."""
    out: dict[tuple[int, str], str] = {}
    for message in db.messages:
        for signal in message.signals:
            path = _attribute(signal, VSS_ATTRIBUTE)
            if path:
                out[(message.frame_id, signal.name)] = str(path)
    return out


def cycle_times(db: Database) -> dict[int, float]:
    """``frame_id -> cycle time in seconds`` from ``GenMsgCycleTime`` (messages without one
    or with 0, i.e. event-driven, are left out)."""
    return {m.frame_id: m.cycle_time / 1000.0 for m in db.messages if m.cycle_time}


# -- bit layout --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BitLayout:
    """Where a signal lies in the 64-bit payload word.

    Intel (little-endian) signals are read from :attr:`CanFrames.payload_u64`; Motorola
    (big-endian) ones from its byte-swapped word, where byte 0 is the top byte, so both
    come down to ``(word >> shift) & mask``.
    """

    shift: int
    length: int
    big_endian: bool
    min_dlc: int  # payload bytes a frame needs to carry the whole signal

    @property
    def mask(self) -> np.uint64:
        return np.uint64((1 << self.length) - 1)


def signal_layout(signal: Signal) -> BitLayout:
    """The :class:`BitLayout` of a cantools signal (DBC start-bit conventions)."""
    start, length = signal.start, signal.length
    if signal.byte_order == "little_endian":
        shift = start
        end = start + length  # one past the last bit, in Intel bit numbering
    else:
        # DBC Motorola start bit = the MSB as byte * 8 + bit (bit 7 is a byte's MSB); in the
        # byte-swapped word byte b sits at bits (7 - b) * 8 .. (7 - b) * 8 + 7.
        msb = (7 - start // 8) * 8 + start % 8
        shift = msb - length + 1
        end = 8 * (start // 8) + (7 - start % 8) + length  # cantools' "sequential" end bit
    if length < 1 or length > 64 or shift < 0 or shift + length > 64:
        raise ConfigError(f"signal {signal.name} does not fit a classic 8-byte CAN payload")
    return BitLayout(shift, length, signal.byte_order != "little_endian", (end + 7) // 8)


# -- end-to-end protection ---------------------------------------------------------------------


def _crc8_table(poly: int) -> npt.NDArray[np.uint8]:
    table = np.zeros(256, dtype=np.uint8)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table[byte] = crc
    return table


CRC8_J1850_TABLE = _crc8_table(0x1D)
_CRC8_INIT = 0xFF
_CRC8_XOR_OUT = 0xFF


def crc8_sae_j1850(rows: npt.NDArray[np.uint8], *, prefix: bytes = b"") -> npt.NDArray[np.uint8]:
    """CRC-8 SAE J1850 of each row of an ``(n, k)`` byte matrix, after ``prefix`` (vectorised
    over rows; ``crc8_sae_j1850(np.frombuffer(b"123456789", np.uint8)[None])`` is 0x4B)."""
    state = _CRC8_INIT
    for byte in prefix:  # the same for every row, so folded into the start value
        state = int(CRC8_J1850_TABLE[state ^ byte])
    crc = np.full(rows.shape[0], state, dtype=np.uint8)
    for column in range(rows.shape[1]):
        crc = CRC8_J1850_TABLE[crc ^ rows[:, column]]
    return crc ^ np.uint8(_CRC8_XOR_OUT)


@dataclass(frozen=True, slots=True)
class E2ESpec:
    """End-to-end protection of one message: its alive counter and checksum byte."""

    frame_id: int
    is_extended: bool
    length: int  # message length in bytes (DBC)
    counter_signal: str | None
    counter: BitLayout | None
    checksum_signal: str
    checksum_byte: int

    @property
    def data_id(self) -> bytes:
        return bytes([self.frame_id & 0xFF, (self.frame_id >> 8) & 0xFF])

    @property
    def covered_bytes(self) -> list[int]:
        return [b for b in range(self.length) if b != self.checksum_byte]

    def checksum(self, data: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """The checksum each payload row of ``data`` (``(n, 8)`` bytes) should carry."""
        return crc8_sae_j1850(data[:, self.covered_bytes], prefix=self.data_id)


def _e2e_role(signal: Signal, db: Database) -> str:
    value = _attribute(signal, E2E_ATTRIBUTE)
    if value is None:
        return "None"
    if isinstance(value, int):  # cantools gives enum attributes as the choice's index
        definition = db.dbc.attribute_definitions.get(E2E_ATTRIBUTE) if db.dbc else None
        choices = getattr(definition, "choices", None) or []
        return str(choices[value]) if 0 <= value < len(choices) else "None"
    return str(value)


def e2e_specs(db: Database) -> dict[int, E2ESpec]:
    """``frame_id -> E2ESpec`` for each message whose signals carry an ``E2ERole``."""
    specs: dict[int, E2ESpec] = {}
    for message in db.messages:
        spec = _message_e2e(message, db)
        if spec is not None:
            specs[message.frame_id] = spec
    return specs


def _message_e2e(message: Message, db: Database) -> E2ESpec | None:
    counter: Signal | None = None
    checksum: Signal | None = None
    for signal in message.signals:
        role = _e2e_role(signal, db)
        if role == "AliveCounter":
            counter = signal
        elif role == "Checksum":
            checksum = signal
    if checksum is None:
        if counter is not None:
            raise ConfigError(f"message {message.name} has an alive counter but no checksum")
        return None
    layout = signal_layout(checksum)
    aligned = checksum.start % 8 == (7 if layout.big_endian else 0)
    if checksum.length != 8 or not aligned:
        raise ConfigError(f"checksum {message.name}.{checksum.name} must be one whole byte")
    return E2ESpec(
        frame_id=message.frame_id,
        is_extended=bool(message.is_extended_frame),
        length=message.length,
        counter_signal=None if counter is None else counter.name,
        counter=None if counter is None else signal_layout(counter),
        checksum_signal=checksum.name,
        checksum_byte=checksum.start // 8,
    )


def verify_e2e(frames: CanFrames, specs: dict[int, E2ESpec]) -> npt.NDArray[np.bool_]:
    """Per frame: ``False`` where an E2E-protected message is too short or its checksum is
    wrong, ``True`` otherwise (frames of unprotected or unknown ids included)."""
    ok = np.ones(len(frames), dtype=bool)
    assert frames.is_extended is not None
    for frame_id, spec in specs.items():
        index = np.flatnonzero(
            (frames.arbitration_id == frame_id) & (frames.is_extended == spec.is_extended)
        )
        if index.size == 0:
            continue
        data = frames.data[index]
        good = (frames.dlc[index] >= spec.length) & (
            data[:, spec.checksum_byte] == spec.checksum(data)
        )
        ok[index] = good
    return ok
