"""Vectorised decoding of CAN frames into signals, with a DBC compiled once per message.

Each signal becomes ``(word >> shift) & mask`` over the 64-bit payload word (Motorola ones
over the byte-swapped word), then sign extension or an IEEE float view, then scale and
offset, all in NumPy over every frame of a message at once. The values equal cantools'
``decode_message(..., decode_choices=False, scaling=True)``; multiplexed signals come out
only where their multiplexer selects them and signals past a short frame's DLC not at all,
as cantools' ``allow_truncated=True`` does.

>>> decoder = CanDecoder(load_dbc())              # doctest: +SKIP
>>> lake.write("signals", decoder.to_signals(frames, vin))  # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from cantools.database.can import Database, Message

from fleetops.core.dbc import load_dbc, signal_layout, vss_paths
from fleetops.core.schema import SIGNALS, UTC_US
from fleetops.core.types import CanFrames, validate_vin

_STD_IDS = 0x800  # 11-bit identifiers are looked up in a dense table

LONG_SCHEMA = pa.schema(
    [
        pa.field("ts", UTC_US, nullable=False),
        pa.field("signal", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)


@dataclass(slots=True)
class DecodeStats:
    """What the decoder has seen since it was made (or :meth:`CanDecoder.reset_stats`)."""

    frames: int = 0
    decoded_frames: int = 0  # frames of an id the database knows
    unknown_frames: int = 0
    unknown_ids: Counter[int] = field(default_factory=Counter)
    truncated_values: int = 0  # signal values left out because the frame was too short
    unmatched_mux: int = 0  # frames whose multiplexer selects no page the database defines


@dataclass(slots=True)
class _SignalProgram:
    name: str
    out_name: str  # VSS path when mapped, else "Message.Signal"
    vss: str | None
    code: int  # index into the decoder's output names
    output: bool  # False for multiplexers kept only to select their pages
    shift: int
    mask: np.uint64
    length: int
    big_endian: bool
    min_dlc: int
    signed: bool
    float_bits: int  # 0 for integer signals, else 32 or 64
    scale: float
    offset: float
    parent: int | None  # index of the multiplexer signal in the message's program
    mux_ids: npt.NDArray[np.int64] | None
    child_ids: npt.NDArray[np.int64] | None  # for multiplexers: every id a child uses


@dataclass(slots=True)
class _MessageProgram:
    name: str
    frame_id: int
    is_extended: bool
    signals: list[_SignalProgram]  # multiplexers before the signals they select
    needs_swap: bool


@dataclass(slots=True)
class _Decoded:
    program: _MessageProgram
    index: npt.NDArray[np.intp]  # frames of this message, in input order
    values: list[tuple[_SignalProgram, npt.NDArray[np.float64], npt.NDArray[np.bool_] | None]]


class CanDecoder:
    """Decode :class:`CanFrames` with a cantools database, all frames of a message at once.

    ``vss_only`` decodes only signals that carry a VSS path. Unknown ids are counted in
    :attr:`stats`, never an error. Messages longer than 8 bytes (CAN FD) are not compiled.
    """

    def __init__(self, db: Database | None = None, *, vss_only: bool = False) -> None:
        self.db = load_dbc() if db is None else db
        self.vss_only = vss_only
        self.stats = DecodeStats()
        self._vss = vss_paths(self.db)
        self.names: list[str] = []  # output signal names, indexed by code
        self._codes: dict[str, int] = {}
        self.skipped_messages: list[str] = []
        self._programs = self._compile(vss_only)
        self._vss_programs = self._programs if vss_only else self._compile(True)
        self._lut = np.full(_STD_IDS, -1, dtype=np.int16)
        self._ext: dict[int, int] = {}
        for code, program in enumerate(self._programs):
            if program.is_extended:
                self._ext[program.frame_id] = code
            else:
                self._lut[program.frame_id] = code
        self._names_array = pa.array(self.names, pa.string())

    # -- compilation -------------------------------------------------------------------------

    def _code(self, name: str) -> int:
        if name not in self._codes:
            self._codes[name] = len(self.names)
            self.names.append(name)
        return self._codes[name]

    def _compile(self, vss_only: bool) -> list[_MessageProgram]:
        # Every message keeps its slot (possibly with no signals) so codes match across
        # the full and VSS-only programs.
        programs = []
        for message in self.db.messages:
            if message.length > 8 or message.is_container:
                if message.name not in self.skipped_messages:
                    self.skipped_messages.append(message.name)
                programs.append(_MessageProgram(message.name, message.frame_id, False, [], False))
                continue
            programs.append(self._compile_message(message, vss_only))
        return programs

    def _compile_message(self, message: Message, vss_only: bool) -> _MessageProgram:
        by_name = {s.name: s for s in message.signals}
        wanted = [
            s.name
            for s in message.signals
            if not vss_only or (message.frame_id, s.name) in self._vss
        ]
        needed: list[str] = []

        def need(name: str) -> None:
            # Multiplexers first, so a signal's selector is evaluated before the signal.
            parent = by_name[name].multiplexer_signal
            if parent is not None:
                need(parent)
            if name not in needed:
                needed.append(name)

        for name in wanted:
            need(name)
        children: dict[str, set[int]] = {}
        for s in message.signals:
            if s.multiplexer_signal is not None and s.multiplexer_ids:
                children.setdefault(s.multiplexer_signal, set()).update(s.multiplexer_ids)
        signals: list[_SignalProgram] = []
        position: dict[str, int] = {}
        for name in needed:
            s = by_name[name]
            layout = signal_layout(s)
            vss = self._vss.get((message.frame_id, s.name))
            out_name = vss if vss else f"{message.name}.{s.name}"
            output = name in wanted
            parent = None if s.multiplexer_signal is None else position[s.multiplexer_signal]
            position[name] = len(signals)
            signals.append(
                _SignalProgram(
                    name=s.name,
                    out_name=out_name,
                    vss=vss,
                    code=self._code(out_name) if output else -1,
                    output=output,
                    shift=layout.shift,
                    mask=layout.mask,
                    length=layout.length,
                    big_endian=layout.big_endian,
                    min_dlc=layout.min_dlc,
                    signed=bool(s.is_signed),
                    float_bits=layout.length if s.is_float else 0,
                    scale=float(s.scale),
                    offset=float(s.offset),
                    parent=parent,
                    mux_ids=(
                        None
                        if s.multiplexer_ids is None
                        else np.asarray(sorted(s.multiplexer_ids), dtype=np.int64)
                    ),
                    child_ids=(
                        np.asarray(sorted(children[name]), dtype=np.int64)
                        if s.is_multiplexer and name in children
                        else None
                    ),
                )
            )
        return _MessageProgram(
            name=message.name,
            frame_id=message.frame_id,
            is_extended=bool(message.is_extended_frame),
            signals=signals,
            needs_swap=any(sp.big_endian for sp in signals),
        )

    def reset_stats(self) -> None:
        self.stats = DecodeStats()

    # -- evaluation --------------------------------------------------------------------------

    def _message_codes(self, frames: CanFrames) -> npt.NDArray[np.int16]:
        ids = frames.arbitration_id
        assert frames.is_extended is not None
        foreign = frames.is_extended | (ids >= _STD_IDS)
        codes: npt.NDArray[np.int16] = self._lut[ids & np.uint32(_STD_IDS - 1)]
        if foreign.any():
            codes[foreign] = -1
            ext = np.flatnonzero(frames.is_extended)
            for frame_id, code in self._ext.items():
                codes[ext[ids[ext] == frame_id]] = code
        return codes

    def _evaluate(self, frames: CanFrames, programs: list[_MessageProgram]) -> list[_Decoded]:
        n = len(frames)
        stats = self.stats
        stats.frames += n
        if n == 0:
            return []
        codes = self._message_codes(frames)
        # A stable sort of small ints is a radix sort: frames grouped by message, each group
        # still in input order.
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(-1, len(programs) + 1), side="left")
        unknown = order[: bounds[1]]
        if unknown.size:
            ids, counts = np.unique(frames.arbitration_id[unknown], return_counts=True)
            stats.unknown_ids.update(dict(zip(ids.tolist(), counts.tolist(), strict=True)))
            stats.unknown_frames += int(unknown.size)
        stats.decoded_frames += n - int(unknown.size)
        words = frames.payload_u64
        out: list[_Decoded] = []
        for code, program in enumerate(programs):
            index = order[bounds[code + 1] : bounds[code + 2]]
            if index.size == 0 or not program.signals:
                continue
            out.append(self._evaluate_message(program, index, words, frames.dlc))
        return out

    def _evaluate_message(
        self,
        program: _MessageProgram,
        index: npt.NDArray[np.intp],
        words: npt.NDArray[np.uint64],
        dlc_all: npt.NDArray[np.uint8],
    ) -> _Decoded:
        le = words[index]
        be = le.byteswap() if program.needs_swap else le
        dlc = dlc_all[index]
        shortest = int(dlc.min())
        values: list[npt.NDArray[np.float64]] = []
        present: list[npt.NDArray[np.bool_] | None] = []
        result = _Decoded(program, index, [])
        for sp in program.signals:
            word = be if sp.big_endian else le
            raw = word >> np.uint64(sp.shift) if sp.shift else word
            if sp.length < 64:
                raw = raw & sp.mask
            value = self._to_physical(raw, sp)
            mask: npt.NDArray[np.bool_] | None = None
            if sp.min_dlc > shortest:
                mask = dlc >= sp.min_dlc
                self.stats.truncated_values += int(mask.size - np.count_nonzero(mask))
            if sp.parent is not None and sp.mux_ids is not None:
                # cantools selects pages by int() of the multiplexer's decoded value.
                selector = values[sp.parent].astype(np.int64)
                selected = np.isin(selector, sp.mux_ids)
                parent_present = present[sp.parent]
                if parent_present is not None:
                    selected &= parent_present
                mask = selected if mask is None else mask & selected
            if sp.child_ids is not None:
                hit = np.isin(value.astype(np.int64), sp.child_ids)
                if mask is not None:
                    hit |= ~mask
                self.stats.unmatched_mux += int(hit.size - np.count_nonzero(hit))
            values.append(value)
            present.append(mask)
            if sp.output:
                result.values.append((sp, value, mask))
        return result

    @staticmethod
    def _to_physical(raw: npt.NDArray[np.uint64], sp: _SignalProgram) -> npt.NDArray[np.float64]:
        if sp.float_bits == 32:
            with np.errstate(invalid="ignore"):  # signalling NaNs are values too
                value = raw.astype(np.uint32).view(np.float32).astype(np.float64)
        elif sp.float_bits == 64:
            value = raw.view(np.float64).copy()
        elif sp.signed:
            if sp.length < 64:  # two's complement: flip the sign bit, subtract it back
                sign = np.uint64(1 << (sp.length - 1))
                raw = (raw ^ sign) - sign
            value = raw.view(np.int64).astype(np.float64)
        else:
            value = raw.astype(np.float64)
        if sp.scale != 1.0:
            value *= sp.scale
        if sp.offset != 0.0:
            value += sp.offset
        return value

    # -- outputs -----------------------------------------------------------------------------

    def _long(
        self, frames: CanFrames, programs: list[_MessageProgram]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.float64]]:
        decoded = self._evaluate(frames, programs)
        n = len(frames)
        # Rows come out in frame order, signals in DBC order within a frame: count the rows
        # of each frame, then scatter each signal to its frame's offset plus its rank.
        counts = np.zeros(n, dtype=np.int64)
        for d in decoded:
            if all(m is None for _, _, m in d.values):
                counts[d.index] = len(d.values)
            else:
                total = np.zeros(d.index.size, dtype=np.int64)
                for _, _, m in d.values:
                    total += 1 if m is None else m
                counts[d.index] = total
        starts = np.cumsum(counts) - counts
        size = int(counts.sum()) if n else 0
        ts_frames = np.round(frames.timestamp * 1e6).astype(np.int64)
        out_ts = np.empty(size, dtype=np.int64)
        out_code = np.empty(size, dtype=np.int32)
        out_value = np.empty(size, dtype=np.float64)
        for d in decoded:
            base = starts[d.index]
            ts = ts_frames[d.index]
            rank: int | npt.NDArray[np.int64] = 0
            for sp, value, m in d.values:
                if m is None:
                    pos = base + rank
                    out_ts[pos] = ts
                    out_value[pos] = value
                else:
                    pos = (base + rank)[m]
                    out_ts[pos] = ts[m]
                    out_value[pos] = value[m]
                out_code[pos] = sp.code
                rank = rank + (1 if m is None else m)
        return out_ts, out_code, out_value

    def _table(
        self,
        ts: npt.NDArray[np.int64],
        code: npt.NDArray[np.int32],
        value: npt.NDArray[np.float64],
    ) -> tuple[pa.Array, pa.Array, pa.Array]:
        return (
            pa.array(ts, pa.int64()).view(UTC_US),
            self._names_array.take(pa.array(code, pa.int32())),
            pa.array(value, pa.float64()),
        )

    def decode(self, frames: CanFrames) -> pa.Table:
        """Long format: one row per decoded signal value (``ts``, ``signal``, ``value``), in
        frame order. ``signal`` is the VSS path where the DBC maps one, else
        ``Message.Signal``."""
        ts, signal, value = self._table(*self._long(frames, self._programs))
        return pa.Table.from_arrays([ts, signal, value], schema=LONG_SCHEMA)

    def decode_wide(self, frames: CanFrames) -> dict[str, pa.Table]:
        """Per message name: ``ts`` and one float64 column per signal (DBC signal names),
        null where a frame does not carry the signal (other multiplexer page, short DLC)."""
        tables: dict[str, pa.Table] = {}
        ts_frames = np.round(frames.timestamp * 1e6).astype(np.int64)
        for d in self._evaluate(frames, self._programs):
            columns = {"ts": pa.array(ts_frames[d.index], pa.int64()).view(UTC_US)}
            for sp, value, m in d.values:
                columns[sp.name] = pa.array(value, pa.float64(), mask=None if m is None else ~m)
            tables[d.program.name] = pa.table(columns)
        return tables

    def to_signals(self, frames: CanFrames, vin: str) -> pa.Table:
        """The VSS-mapped signals of ``frames`` as rows of the lake's ``signals`` table."""
        vin = validate_vin(vin)
        ts, signal, value = self._table(*self._long(frames, self._vss_programs))
        size = len(ts)
        raw = vin.encode()
        # The VIN column built straight from buffers: one copy of the VIN per row.
        offsets = np.arange(size + 1, dtype=np.int32) * np.int32(len(raw))
        vins = pa.StringArray.from_buffers(size, pa.py_buffer(offsets), pa.py_buffer(raw * size))
        return pa.Table.from_arrays([vins, ts, signal, value], schema=SIGNALS)
