"""The front door: format names, sniffing, and parsing text, bytes or files (plain, .gz, .zip)."""

from __future__ import annotations

import gzip
import importlib
import io
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Final, cast

import orjson

from fleetops.core.errors import ConfigError, ValidationError
from fleetops.core.ocsf import EventBatch

FORMATS: Final[tuple[str, ...]] = (
    "syslog",
    "access-combined",
    "access-json",
    "apache-error",
    "proxy",
    "modbus-pcap",
    "ot-json",
    "ot-csv",
    "vehicle-json",
    "windows-json",
)
"""Every ``fmt`` name :func:`parse_text`, :func:`parse_bytes` and :func:`parse_file` take."""

_PCAP_MAGICS: Final = (
    b"\xd4\xc3\xb2\xa1",  # libpcap little-endian, µs
    b"\xa1\xb2\xc3\xd4",  # big-endian, µs
    b"\x4d\x3c\xb2\xa1",  # little-endian, ns
    b"\xa1\xb2\x3c\x4d",  # big-endian, ns
    b"\x0a\x0d\x0d\x0a",  # pcapng section header block
)
# One regex per line-based format; the one matching most sample lines wins.
_LINE_SNIFFERS: Final[dict[str, re.Pattern[str]]] = {
    "syslog": re.compile(
        r"^(?:\S+ \d{9,11} \d{4}\.\d\d\.\d\d \S+ )?(?:<\d{1,3}>)?"
        r"(?:\d{1,2} \d{4}-\d\d-\d\dT\S+ |\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d\S* |"
        r"[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)? )\S+ \S"
    ),
    "access-combined": re.compile(r'^(?:\S+:\d+ )?\S+ \S+ \S+ \[[^\]]+\] "'),
    "apache-error": re.compile(
        r"^\[(?:[A-Z][a-z]{2} ){2}[ \d]?\d \d\d:\d\d:\d\d(?:\.\d+)? \d{4}\] \["
    ),
    "proxy": re.compile(r"^\[(?:\d\d\.)?\d\d\.\d\d \d\d:\d\d:\d\d(?:\.\d+)?\] \S+ "),
}
_SNIFF_LINES: Final = 50


def detect_format(sample: bytes, name: str) -> str | None:
    """The format of a file from its first bytes (and name), or None if unrecognised."""
    if sample[:4] in _PCAP_MAGICS:
        return "modbus-pcap"
    text = _decode(sample)
    stripped = text.lstrip()
    if stripped.startswith("{") or re.match(r"\[\s*[{\]]", stripped):  # not "[time] ..."
        return _sniff_json(stripped)
    lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()][:_SNIFF_LINES]
    if not lines:
        return None
    header = [h.strip().strip('"').lower() for h in lines[0].split(",")]
    if {"time", "device", "operation"} <= set(header):
        return "ot-csv"
    if len(lines) > 1 and not _complete(sample):
        lines = lines[:-1]  # the sample may cut the last line short
    votes = {fmt: sum(1 for line in lines if rx.match(line)) for fmt, rx in _LINE_SNIFFERS.items()}
    best = max(votes, key=lambda fmt: votes[fmt])
    if votes[best] * 2 >= len(lines) and votes[best] > 0:
        return best
    _ = name  # the name is not trusted over the content; kept for future hints
    return None


def _complete(sample: bytes) -> bool:
    return sample.endswith((b"\n", b"\r"))


def _sniff_json(text: str) -> str | None:
    head = text[:65536]
    if '"Event"' in head or '"EventID"' in head:
        return "windows-json"
    first = head.split("\n", 1)[0].strip()
    try:
        value = orjson.loads(first)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    keys = set(value)
    if "class_uid" in keys or "vin" in keys:
        return "vehicle-json"
    if "operation" in keys and ("device" in keys or "protocol" in keys):
        return "ot-json"
    http = {"method", "request_method", "request", "path", "uri", "request_uri", "status"}
    if len(keys & http) >= 2:
        return "access-json"
    return None


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    return data.decode("utf-8", errors="replace").removeprefix("\ufeff")


def parse_text(text: str, fmt: str, source_file: str, *, year: int | None = None) -> EventBatch:
    """Events of ``text`` in format ``fmt`` (one of :data:`FORMATS`, not ``auto``).

    ``year`` applies to formats whose stamps lack one (RFC 3164 syslog, Proxifier).
    """
    if fmt == "syslog":
        from fleetops.security.soc.parsers.syslog import parse_syslog

        return parse_syslog(text, source_file, year=year)
    if fmt == "access-combined":
        from fleetops.security.soc.parsers.access import parse_access_combined

        return parse_access_combined(text, source_file)
    if fmt == "access-json":
        from fleetops.security.soc.parsers.access import parse_access_json

        return parse_access_json(text, source_file)
    if fmt == "apache-error":
        from fleetops.security.soc.parsers.weblogs import parse_apache_error

        return parse_apache_error(text, source_file)
    if fmt == "proxy":
        from fleetops.security.soc.parsers.weblogs import parse_proxifier

        return parse_proxifier(text, source_file, year=year)
    if fmt in ("ot-json", "ot-csv"):
        from fleetops.security.soc.parsers.ot import parse_ot_csv, parse_ot_json

        return (parse_ot_json if fmt == "ot-json" else parse_ot_csv)(text, source_file)
    if fmt == "vehicle-json":
        from fleetops.security.soc.parsers.vehicle import parse_vehicle_json

        return parse_vehicle_json(text, source_file)
    if fmt == "windows-json":
        return _windows_parser()(text, source_file)
    if fmt == "modbus-pcap":
        raise ValidationError(f"{source_file}: modbus-pcap is binary, use parse_bytes")
    raise ValidationError(f"{source_file}: unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def _windows_parser() -> Callable[[str, str], EventBatch]:
    # Written separately (windows.py); imported by name so this package works without it.
    try:
        module = importlib.import_module("fleetops.security.soc.parsers.windows")
    except ModuleNotFoundError as exc:
        raise ConfigError("the windows-json parser (parsers/windows.py) is not installed") from exc
    return cast(Callable[[str, str], EventBatch], module.parse_windows_json)


def parse_bytes(data: bytes, fmt: str, source_file: str, *, year: int | None = None) -> EventBatch:
    """As :func:`parse_text` for raw bytes; the only way in for ``modbus-pcap``."""
    if fmt == "auto":
        found = detect_format(data[:65536], source_file)
        if found is None:
            raise ValidationError(
                f"{source_file}: format not recognised (known: {', '.join(FORMATS)})"
            )
        fmt = found
    if fmt == "modbus-pcap":
        from fleetops.security.soc.parsers.modbus import parse_pcap

        return parse_pcap(data, source_file)
    return parse_text(_decode(data), fmt, source_file, year=year)


def parse_file(path: Path, fmt: str = "auto", *, year: int | None = None) -> EventBatch:
    """Events of a file, a ``.gz`` or every member of a ``.zip`` (``archive.zip!member``).

    ``fmt="auto"`` sniffs each file's content; an unrecognised one raises
    :class:`~fleetops.core.errors.ValidationError` naming it.
    """
    path = Path(path)
    if fmt != "auto" and fmt not in FORMATS:
        raise ValidationError(f"{path}: unknown format {fmt!r} (known: auto, {', '.join(FORMATS)})")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from exc
    if data[:4] == b"PK\x03\x04" or (data[:4] == b"PK\x05\x06" and zipfile.is_zipfile(path)):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                return EventBatch.concat(
                    [
                        parse_bytes(
                            _gunzip(archive.read(m), f"{path}!{m.filename}"),
                            fmt,
                            f"{path}!{m.filename}",
                            year=year,
                        )
                        for m in members
                    ]
                )
        except (zipfile.BadZipFile, OSError) as exc:
            raise ValidationError(f"{path}: broken zip archive: {exc}") from exc
    return parse_bytes(_gunzip(data, str(path)), fmt, str(path), year=year)


def _gunzip(data: bytes, name: str) -> bytes:
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise ValidationError(f"{name}: broken gzip file: {exc}") from exc
