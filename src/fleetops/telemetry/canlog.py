"""CAN log files and live capture, into and out of :class:`CanFrames`.

:func:`read_can_log` and :func:`write_can_log` use python-can's readers and writers (the
ones ``can.LogReader`` and ``can.Logger`` pick by suffix) for candump ``.log``, Vector
``.asc`` and ``.blf``, python-can ``.csv`` and PEAK ``.trc``. python-can goes frame by frame;
:func:`read_candump` parses candump text with Arrow and NumPy over whole columns instead.

Readers skip what :class:`CanFrames` cannot hold (remote, error and CAN FD frames) and
lines they cannot parse, and count all of it in ``frames.extra``: ``bad_lines``,
``bad_line_numbers`` (the first 20, 1-based), ``remote_frames``, ``error_frames``,
``fd_frames`` and ``channels`` (the channels seen).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO, cast

import can
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from fleetops.core.errors import ConfigError, ValidationError
from fleetops.core.types import CanFrames

log = logging.getLogger(__name__)

_TEXT_READERS: dict[str, type[can.io.generic.TextIOMessageReader]] = {
    ".log": can.CanutilsLogReader,
    ".asc": can.ASCReader,
    ".csv": can.CSVReader,
    ".trc": can.TRCReader,
}
SUPPORTED_SUFFIXES = (".log", ".asc", ".blf", ".csv", ".trc")
_KEPT_BAD_LINES = 20
_CAN_ERR_FLAG = 0x20000000
_CAN_ERR_BUSERROR = 0x00000080
_EFF_MASK = 0x1FFFFFFF


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ConfigError(
            f"{path}: unsupported CAN log format {suffix or '(no suffix)'!r}; "
            f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    return suffix


class _Collector:
    """Accumulates python-can messages as columns, skipping what CanFrames cannot hold."""

    def __init__(self, channel: str | int | None) -> None:
        self.channel = channel
        self.timestamps: list[float] = []
        self.ids: list[int] = []
        self.extended: list[bool] = []
        self.dlcs: list[int] = []
        self.data = bytearray()
        self.channels: dict[str, None] = {}  # ordered set
        self.counts = {"remote_frames": 0, "error_frames": 0, "fd_frames": 0}

    def add(self, msg: can.Message) -> bool:
        """Keep or count ``msg``; ``False`` if it is malformed (its DLC is not its length:
        python-can reads half a byte of candump text as a whole one)."""
        if not msg.is_remote_frame and not msg.is_error_frame and msg.dlc != len(msg.data):
            return False
        if msg.channel is not None:
            self.channels.setdefault(str(msg.channel), None)
        if self.channel is not None and str(msg.channel) != str(self.channel):
            return True
        if msg.is_error_frame:
            self.counts["error_frames"] += 1
        elif msg.is_remote_frame:
            self.counts["remote_frames"] += 1
        elif msg.is_fd or len(msg.data) > 8:
            self.counts["fd_frames"] += 1
        else:
            payload = bytes(msg.data)
            self.timestamps.append(float(msg.timestamp))
            self.ids.append(int(msg.arbitration_id))
            self.extended.append(bool(msg.is_extended_id))
            self.dlcs.append(len(payload))
            self.data += payload.ljust(8, b"\0")
        return True

    def frames(self, source: Path, bus: str | None, bad: list[int], bad_count: int) -> CanFrames:
        n = len(self.timestamps)
        channels = list(self.channels)
        return _make_frames(
            source,
            timestamp=np.asarray(self.timestamps, dtype=np.float64),
            arbitration_id=np.asarray(self.ids, dtype=np.uint32),
            dlc=np.asarray(self.dlcs, dtype=np.uint8),
            data=np.frombuffer(bytes(self.data), dtype=np.uint8).reshape(n, 8).copy(),
            is_extended=np.asarray(self.extended, dtype=bool),
            bus=bus,
            channel=self.channel,
            channels=channels,
            extra={**self.counts, "bad_lines": bad_count, "bad_line_numbers": bad},
        )


def _make_frames(
    source: Path,
    *,
    timestamp: npt.NDArray[np.float64],
    arbitration_id: npt.NDArray[np.uint32],
    dlc: npt.NDArray[np.uint8],
    data: npt.NDArray[np.uint8],
    is_extended: npt.NDArray[np.bool_],
    bus: str | None,
    channel: str | int | None,
    channels: list[str],
    extra: dict[str, Any],
) -> CanFrames:
    if channel is None and len(channels) > 1:
        raise ValidationError(
            f"{source} holds frames of several channels {channels}; pick one with channel="
        )
    if len(timestamp) == 0 and extra["bad_lines"]:
        first = extra["bad_line_numbers"][0]
        raise ConfigError(
            f"{source}: no readable CAN frame; {extra['bad_lines']} lines could not be "
            f"parsed (the first is line {first})"
        )
    if extra["bad_lines"]:
        log.warning(
            "%s: skipped %d unreadable lines (first: %s)",
            source,
            extra["bad_lines"],
            extra["bad_line_numbers"][:5],
        )
    if bus is None:
        named = [c for c in channels if not c.isdigit()]
        bus = str(channel) if isinstance(channel, str) else named[0] if named else "can0"
    frames = CanFrames(
        timestamp=timestamp,
        arbitration_id=arbitration_id,
        dlc=dlc,
        data=data,
        bus=bus,
        is_extended=is_extended,
    )
    frames.extra.update(extra, channels=channels)
    return frames


class _ResumableLines:
    """A text file's lines for python-can's line readers, which stop at the first line they
    cannot parse. After a failure a fresh reader continues with the next line; the header
    lines seen before the first frame are replayed to it, so it keeps the file's settings
    (ASC base and start time, TRC columns, the CSV header)."""

    def __init__(self, handle: TextIO) -> None:
        self._handle = handle
        self.line_no = 0
        self._header: list[str] = []
        self._replay: deque[str] = deque()
        self._in_header = True

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._replay:
            return self._replay.popleft()
        line = next(self._handle)
        self.line_no += 1
        if self._in_header:
            self._header.append(line)
        return line

    def message_read(self) -> None:
        if self._in_header:
            self._in_header = False
            self._header.pop()  # the line that held the first frame

    def restart(self) -> None:
        if self._in_header and self._header:
            self._header.pop()  # the failing line is no header line
        self._replay = deque(self._header)

    def close(self) -> None:
        """python-can's readers close their file when done; the caller owns this one."""


def read_can_log(
    path: str | Path,
    *,
    bus: str | None = None,
    channel: str | int | None = None,
    strict: bool = False,
) -> CanFrames:
    """Read a CAN log with python-can (``.log``, ``.asc``, ``.blf``, ``.csv``, ``.trc``).

    ``bus`` names the returned frames' bus (default: the log's channel name, else "can0");
    ``channel`` keeps only frames of that channel (as the format names it, compared as text)
    and is needed when a log holds several. Unparsable lines are skipped and counted, or
    raise :class:`ConfigError` with ``strict``.
    """
    source = Path(path)
    suffix = _suffix(source)
    if not source.is_file():
        raise ConfigError(f"CAN log {source} does not exist or is not a file")
    collector = _Collector(channel)
    bad: list[int] = []
    bad_count = 0
    if suffix == ".blf":
        try:
            with can.BLFReader(source) as reader:
                for msg in reader:
                    if not collector.add(msg):
                        bad_count += 1
        except Exception as exc:  # a corrupt binary log cannot be resumed
            raise ConfigError(f"{source}: corrupt BLF file: {exc}") from exc
        return collector.frames(source, bus, bad, bad_count)
    reader_type = _TEXT_READERS[suffix]
    with source.open(encoding="utf-8", errors="replace", newline=None) as handle:
        lines = _ResumableLines(handle)
        while True:
            mark = lines.line_no
            try:
                source_lines = cast(TextIO, lines)  # python-can only iterates over it
                text_reader = (
                    # ASC timestamps are relative to the trigger block unless asked otherwise.
                    can.ASCReader(source_lines, relative_timestamp=False)
                    if suffix == ".asc"
                    else reader_type(source_lines)
                )
                for msg in text_reader:
                    lines.message_read()
                    if not collector.add(msg):
                        if strict:
                            raise ConfigError(f"{source}:{lines.line_no}: malformed frame")
                        bad_count += 1
                        if len(bad) < _KEPT_BAD_LINES:
                            bad.append(lines.line_no)
                break
            except ConfigError:
                raise
            except Exception as exc:  # each reader fails its own way on a malformed line
                if strict:
                    raise ConfigError(f"{source}:{lines.line_no}: unreadable line: {exc}") from exc
                if lines.line_no == mark:  # no progress: the failure is not one line's
                    raise ConfigError(f"{source}: cannot be read: {exc}") from exc
                bad_count += 1
                if len(bad) < _KEPT_BAD_LINES:
                    bad.append(lines.line_no)
                lines.restart()
    return collector.frames(source, bus, bad, bad_count)


def _to_message(frames: CanFrames, i: int) -> can.Message:
    assert frames.is_extended is not None
    dlc = int(frames.dlc[i])
    return can.Message(
        timestamp=float(frames.timestamp[i]),
        arbitration_id=int(frames.arbitration_id[i]),
        is_extended_id=bool(frames.is_extended[i]),
        dlc=dlc,
        data=frames.data[i, :dlc].tobytes(),
        channel=frames.bus,
    )


def write_can_log(frames: CanFrames, path: str | Path) -> Path:
    """Write ``frames`` with python-can's writer for the suffix of ``path``."""
    target = Path(path)
    _suffix(target)
    if not target.parent.is_dir():
        raise ConfigError(f"cannot write {target}: folder {target.parent} does not exist")
    logger = can.Logger(target)
    try:
        for i in range(len(frames)):
            logger.on_message_received(_to_message(frames, i))
    finally:
        logger.stop()
    return target


def capture(
    bus: can.BusABC,
    *,
    max_frames: int,
    timeout: float,
    bus_name: str | None = None,
) -> CanFrames:
    """Receive up to ``max_frames`` data frames from a live python-can bus, for at most
    ``timeout`` seconds in all (remote, error and CAN FD frames are counted, not kept)."""
    if max_frames < 0 or timeout < 0:
        raise ValidationError("max_frames and timeout must not be negative")
    collector = _Collector(None)
    deadline = time.monotonic() + timeout
    while len(collector.timestamps) < max_frames:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        msg = bus.recv(timeout=remaining)
        if msg is None:
            break
        msg.channel = None  # one bus: its name is bus_name, not each frame's channel
        collector.add(msg)
    name = bus_name or str(getattr(bus, "channel", None) or "can0")
    return collector.frames(Path(name), name, [], 0)


# -- fast candump reader -------------------------------------------------------------------

_CANDUMP = (
    r"^[ \t]*\((?P<ts>[0-9]+(?:\.[0-9]*)?)\)[ \t]+(?P<channel>\S+)[ \t]+"
    r"(?P<id>[0-9A-Fa-f]{1,8})#(?P<data>#[0-9A-Fa-f]?[0-9A-Fa-f]*|[Rr][0-9]*|[0-9A-Fa-f]*)"
    r"(?:[ \t]+[RrTt])?\s*$"
)
_NIBBLE = np.zeros(256, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _NIBBLE[_c] = _i
    _NIBBLE[ord(chr(_c).upper())] = _i


def _fixed_width(array: pa.Array, width: int) -> npt.NDArray[np.uint8]:
    """The bytes of a string array whose values all have ``width`` bytes, as ``(n, width)``."""
    array = array.cast(pa.large_string())
    n = len(array)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + n + 1]
    if n == 0:
        return np.zeros((0, width), dtype=np.uint8)
    raw = np.frombuffer(array.buffers()[2], dtype=np.uint8)
    return raw[offsets[0] : offsets[-1]].reshape(n, width)


def _first_bytes(array: pa.Array, length: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    """The first byte of each string of ``array`` (0 for empty strings)."""
    array = array.cast(pa.large_string())
    n = len(array)
    if n == 0:
        return np.zeros(0, dtype=np.uint8)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + n]
    raw = np.frombuffer(array.buffers()[2], dtype=np.uint8)
    first = raw[np.minimum(offsets, raw.size - 1)] if raw.size else np.zeros(n, dtype=np.uint8)
    return np.where(length > 0, first, 0).astype(np.uint8)


def _lines(raw: bytes) -> pa.Array:
    buf = np.frombuffer(raw, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10) + 1
    if len(raw) and (not ends.size or ends[-1] != len(raw)):
        ends = np.append(ends, len(raw))
    offsets = np.concatenate(([0], ends)).astype(np.int64)
    # Zero-copy: the file's bytes are the string data, newline offsets the boundaries.
    lines = pa.LargeStringArray.from_buffers(
        len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(raw)
    )
    try:
        lines.validate(full=True)
    except pa.ArrowInvalid:  # not UTF-8: replace the offending bytes, keep the lines
        text = raw.decode("utf-8", errors="replace").encode("utf-8")
        return _lines(text)
    return lines


def read_candump(
    path: str | Path,
    *,
    bus: str | None = None,
    channel: str | None = None,
) -> CanFrames:
    """Read a candump ``-l`` log (``(ts) channel id#data [R|T]``) column-wise.

    Gives the frames :func:`read_can_log` gives for the same file, many times faster, with
    the same counts in ``frames.extra``.
    """
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"CAN log {source} does not exist or is not a file")
    lines = _lines(source.read_bytes())
    blank = pc.match_substring_regex(lines, r"^\s*$").to_numpy(zero_copy_only=False)
    parsed = pc.extract_regex(lines, _CANDUMP)
    matched = parsed.is_valid().to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(matched)
    parsed = parsed.filter(pa.array(matched))
    data_text = parsed.field("data")
    length = pc.utf8_length(data_text).to_numpy(zero_copy_only=False)
    first = _first_bytes(data_text, length)
    fd = first == ord("#")
    remote = (first == ord("R")) | (first == ord("r"))
    classic = ~fd & ~remote
    malformed = classic & ((length % 2 == 1) | (length > 16))
    bad_rows = np.sort(np.concatenate([np.flatnonzero(~matched & ~blank), rows[malformed]]))

    id_text = parsed.field("id")
    id_nibbles = _NIBBLE[_fixed_width(pc.utf8_lpad(id_text, 8, "0"), 8)].astype(np.uint32)
    can_id = np.zeros(len(parsed), dtype=np.uint32)
    for k in range(8):
        can_id |= id_nibbles[:, k] << np.uint32(4 * (7 - k))
    error = classic & ((can_id & _CAN_ERR_FLAG) != 0) & ((can_id & _CAN_ERR_BUSERROR) != 0)
    channels_all = parsed.field("channel")
    if channel is None:
        in_channel = np.ones(len(parsed), dtype=bool)
    else:  # python-can gives error frames no channel, so a channel filter drops them
        in_channel = pc.equal(channels_all, str(channel)).to_numpy(zero_copy_only=False) & ~error
    kept = np.flatnonzero(in_channel & classic & ~malformed & ~error)
    payload_text = pc.utf8_rpad(data_text.take(pa.array(kept)), 16, "0")
    nibbles = _NIBBLE[_fixed_width(payload_text, 16)]
    data = (nibbles[:, 0::2] << np.uint8(4)) | nibbles[:, 1::2]
    timestamps = pc.cast(parsed.field("ts").take(pa.array(kept)), pa.float64())
    extra = {
        "remote_frames": int(np.count_nonzero(in_channel & remote)),
        "error_frames": int(np.count_nonzero(in_channel & error)),
        "fd_frames": int(np.count_nonzero(in_channel & fd)),
        "bad_lines": int(bad_rows.size),
        "bad_line_numbers": (bad_rows[:_KEPT_BAD_LINES] + 1).tolist(),
    }
    names = pc.unique(channels_all.filter(pa.array(~error))).to_pylist()
    return _make_frames(
        source,
        timestamp=timestamps.to_numpy(zero_copy_only=False).astype(np.float64),
        arbitration_id=can_id[kept] & np.uint32(_EFF_MASK),
        dlc=(length[kept] // 2).astype(np.uint8),
        data=np.ascontiguousarray(data),
        is_extended=pc.utf8_length(id_text).to_numpy(zero_copy_only=False)[kept] > 3,
        bus=bus,
        channel=channel,
        channels=[str(c) for c in names],
        extra=extra,
    )
