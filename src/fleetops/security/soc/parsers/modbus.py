"""Modbus/TCP captures (pcap or pcapng, read with dpkt) → one OT event per Modbus ADU.

``record_index`` is the 1-based packet number (as Wireshark numbers frames), so events
line up with per-packet labels. A TCP segment may carry several ADUs (one event each); an
ADU cut short, a non-zero protocol id or a PDU too short for its function is a dead letter
naming the packet. Packets that carry no Modbus ADU (TCP handshakes, ACKs, other IP
traffic such as NetBIOS inside the control network, ARP) become Network Activity events
of service ``network``, so every packet is an event or a dead letter. No TCP reassembly:
an ADU split across segments is dead-lettered.
"""

from __future__ import annotations

import io
import socket
import struct
from typing import Any, Final

import dpkt
import polars as pl

from fleetops.core.ocsf import Domain, EventBatch, EventClass, Severity, Status, conform_events
from fleetops.security.soc.parsers.common import dead_letters

MODBUS_PORT: Final = 502
FUNCTIONS: Final[dict[int, str]] = {
    1: "Read Coils",
    2: "Read Discrete Inputs",
    3: "Read Holding Registers",
    4: "Read Input Registers",
    5: "Write Single Coil",
    6: "Write Single Register",
    7: "Read Exception Status",
    8: "Diagnostics",
    11: "Get Comm Event Counter",
    12: "Get Comm Event Log",
    15: "Write Multiple Coils",
    16: "Write Multiple Registers",
    17: "Report Server ID",
    20: "Read File Record",
    21: "Write File Record",
    22: "Mask Write Register",
    23: "Read/Write Multiple Registers",
    24: "Read FIFO Queue",
    43: "Encapsulated Interface Transport",
}
EXCEPTIONS: Final[dict[int, str]] = {
    1: "Illegal Function",
    2: "Illegal Data Address",
    3: "Illegal Data Value",
    4: "Server Device Failure",
    5: "Acknowledge",
    6: "Server Device Busy",
    8: "Memory Parity Error",
    10: "Gateway Path Unavailable",
    11: "Gateway Target Device Failed to Respond",
}
_PORT_NAMES: Final = {
    502: "modbus",
    4840: "opcua",
    20000: "dnp3",
    44818: "enip",
    102: "s7comm",
    137: "netbios-ns",
    138: "netbios-dgm",
    139: "netbios-ssn",
    445: "smb",
    80: "http",
    443: "https",
    22: "ssh",
    23: "telnet",
    21: "ftp",
    53: "dns",
    3389: "rdp",
}
FIELDS: Final = (
    "direction",
    "transaction_id",
    "protocol_id",
    "unit_id",
    "function_code",
    "function_name",
    "start_address",
    "quantity",
    "value",
    "byte_count",
    "sub_function",
    "exception_code",
    "exception_name",
    "src_ip",
    "dst_ip",
    "src_port",
    "dst_port",
    "protocol",
    "app_protocol",
    "tcp_flags",
    "length",
)
"""Native field names of both Modbus and network events (all strings, null when n/a)."""

_TCP_FLAGS: Final = ((0x02, "S"), (0x10, "A"), (0x08, "P"), (0x01, "F"), (0x04, "R"), (0x20, "U"))


class _Rows:
    """Column lists, appended one event at a time."""

    def __init__(self) -> None:
        self.events: dict[str, list[Any]] = {
            name: []
            for name in (
                "time",
                "class_uid",
                "activity_id",
                "severity_id",
                "status_id",
                "message",
                "src_ip",
                "dst_ip",
                "src_port",
                "dst_port",
                "device",
                "ot_operation",
                "logsource_service",
                "record_index",
                "raw",
            )
        }
        self.fields: dict[str, list[str | None]] = {name: [] for name in FIELDS}
        self.dead: list[tuple[int, str, str]] = []

    def add(self, event: dict[str, Any], fields: dict[str, Any]) -> None:
        for name, column in self.events.items():
            column.append(event.get(name))
        for name, values in self.fields.items():
            value = fields.get(name)
            values.append(None if value is None else str(value))


def _pdu_fields(fc: int, data: bytes, request: bool) -> dict[str, int] | str:
    """Decoded PDU data of function ``fc`` or, if too short, the reason."""
    need = 0
    out: dict[str, int] = {}
    if fc & 0x80:
        need = 1
        if len(data) >= 1:
            out["exception_code"] = data[0]
    elif request and fc in (1, 2, 3, 4, 15, 16):
        need = 5 if fc in (15, 16) else 4
        if len(data) >= 4:
            out["start_address"], out["quantity"] = struct.unpack_from(">HH", data)
        if fc in (15, 16) and len(data) >= 5:
            out["byte_count"] = data[4]
    elif fc in (5, 6):
        need = 4
        if len(data) >= 4:
            out["start_address"], out["value"] = struct.unpack_from(">HH", data)
    elif fc in (15, 16):  # response: echo of start and quantity
        need = 4
        if len(data) >= 4:
            out["start_address"], out["quantity"] = struct.unpack_from(">HH", data)
    elif fc in (1, 2, 3, 4, 12, 17, 20, 21, 23):  # responses that start with a byte count
        need = 1
        if len(data) >= 1:
            out["byte_count"] = data[0]
        if request and fc == 23 and len(data) >= 8:
            out["start_address"], out["quantity"] = struct.unpack_from(">HH", data)
    elif fc == 22:
        need = 6
        if len(data) >= 2:
            out["start_address"] = struct.unpack_from(">H", data)[0]
    elif fc == 8:
        need = 2
        if len(data) >= 2:
            out["sub_function"] = struct.unpack_from(">H", data)[0]
    elif fc == 43:
        need = 1
        if len(data) >= 1:
            out["sub_function"] = data[0]
    if len(data) < need:
        kind = "request" if request else "response"
        return f"truncated Modbus PDU: function {fc & 0x7F} {kind} needs {need} data bytes, has {len(data)}"
    return out


def _adus(
    rows: _Rows,
    payload: bytes,
    index: int,
    ms: int,
    ips: tuple[str, str],
    ports: tuple[int, int],
) -> None:
    """One event per complete ADU of ``payload``; the first bad one ends the segment."""
    request = ports[1] == MODBUS_PORT
    server_ip = ips[1] if request else ips[0]
    offset = 0
    while offset < len(payload):
        rest = payload[offset:]
        if len(rest) < 8:
            rows.dead.append(
                (
                    index,
                    f"truncated Modbus ADU: {len(rest)} bytes, the MBAP header and function need 8",
                    rest.hex(),
                )
            )
            return
        tid, pid, length, unit = struct.unpack_from(">HHHB", rest)
        if pid != 0:
            rows.dead.append((index, f"not Modbus/TCP: protocol id {pid} (must be 0)", rest.hex()))
            return
        if not 2 <= length <= 254:
            rows.dead.append((index, f"bad MBAP length {length} (must be 2..254)", rest.hex()))
            return
        if 6 + length > len(rest):
            rows.dead.append(
                (
                    index,
                    f"truncated Modbus ADU: MBAP length {length} but {len(rest) - 6} bytes follow",
                    rest.hex(),
                )
            )
            return
        adu = rest[: 6 + length]
        offset += 6 + length
        fc = adu[7]
        decoded = _pdu_fields(fc, adu[8:], request)
        if isinstance(decoded, str):
            rows.dead.append((index, decoded, adu.hex()))
            continue
        base = fc & 0x7F
        name = FUNCTIONS.get(base, f"Function {base}")
        exception = decoded.get("exception_code")
        exception_name = (
            None if exception is None else EXCEPTIONS.get(exception, f"Exception {exception}")
        )
        direction = "request" if request else "response"
        message = f"Modbus {direction} {name} unit {unit} transaction {tid}"
        if exception_name is not None:
            message += f": exception {exception} {exception_name}"
        status = Status.UNKNOWN if request else (Status.FAILURE if fc & 0x80 else Status.SUCCESS)
        rows.add(
            {
                "time": ms,
                "class_uid": int(EventClass.NETWORK_ACTIVITY),
                "activity_id": 6,  # Traffic
                "severity_id": int(Severity.LOW if fc & 0x80 else Severity.INFORMATIONAL),
                "status_id": int(status),
                "message": message,
                "src_ip": ips[0],
                "dst_ip": ips[1],
                "src_port": ports[0],
                "dst_port": ports[1],
                "device": f"{server_ip}/{unit}",
                "ot_operation": name,
                "logsource_service": "modbus",
                "record_index": index,
                "raw": adu.hex(),
            },
            {
                "direction": direction,
                "transaction_id": tid,
                "protocol_id": pid,
                "unit_id": unit,
                "function_code": fc,
                "function_name": name,
                "exception_name": exception_name,
                "src_ip": ips[0],
                "dst_ip": ips[1],
                "src_port": ports[0],
                "dst_port": ports[1],
                "protocol": "tcp",
                "app_protocol": "modbus",
                "length": length,
                **decoded,
            },
        )


def _address(raw: bytes) -> str:
    try:
        return socket.inet_ntop(socket.AF_INET6 if len(raw) == 16 else socket.AF_INET, raw)
    except (OSError, ValueError):
        return raw.hex()


def _network(
    rows: _Rows,
    frame: bytes,
    index: int,
    ms: int,
    protocol: str,
    ips: tuple[str | None, str | None],
    ports: tuple[int | None, int | None],
    flags: str | None,
    length: int,
) -> None:
    app = next((_PORT_NAMES[p] for p in (ports[1], ports[0]) if p in _PORT_NAMES), None)
    src = ips[0] if ports[0] is None else f"{ips[0]}:{ports[0]}"
    dst = ips[1] if ports[1] is None else f"{ips[1]}:{ports[1]}"
    message = f"{protocol} {src} > {dst}" + (f" [{flags}]" if flags else "") + f" len {length}"
    rows.add(
        {
            "time": ms,
            "class_uid": int(EventClass.NETWORK_ACTIVITY),
            "activity_id": 6,
            "severity_id": int(Severity.INFORMATIONAL),
            "status_id": int(Status.UNKNOWN),
            "message": message,
            "src_ip": ips[0],
            "dst_ip": ips[1],
            "src_port": ports[0],
            "dst_port": ports[1],
            "logsource_service": "network",
            "record_index": index,
            "raw": frame[:256].hex(),
        },
        {
            "src_ip": ips[0],
            "dst_ip": ips[1],
            "src_port": ports[0],
            "dst_port": ports[1],
            "protocol": protocol,
            "app_protocol": app,
            "tcp_flags": flags,
            "length": length,
        },
    )


def _link_decoder(datalink: int) -> Any:
    if datalink == dpkt.pcap.DLT_EN10MB:
        return dpkt.ethernet.Ethernet
    if datalink == dpkt.pcap.DLT_LINUX_SLL:
        return dpkt.sll.SLL
    if datalink in (dpkt.pcap.DLT_RAW, 12, 14, 228):
        return lambda buf: dpkt.ip6.IP6(buf) if buf[:1] and buf[0] >> 4 == 6 else dpkt.ip.IP(buf)
    if datalink in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
        return dpkt.loopback.Loopback
    return None


def _packet(rows: _Rows, decode: Any, buf: bytes, index: int, ms: int) -> None:
    try:
        link = decode(buf)
    except (dpkt.UnpackError, struct.error, IndexError, ValueError) as exc:
        rows.dead.append((index, f"malformed frame: {exc or type(exc).__name__}", buf[:256].hex()))
        return
    layer = link.data if not isinstance(link, dpkt.ip.IP | dpkt.ip6.IP6) else link
    if not isinstance(layer, dpkt.ip.IP | dpkt.ip6.IP6):
        kind = type(layer).__name__.lower() if not isinstance(layer, bytes) else "link"
        name = "arp" if isinstance(layer, dpkt.arp.ARP) else kind
        _network(rows, buf, index, ms, name, (None, None), (None, None), None, len(buf))
        return
    ips = (_address(layer.src), _address(layer.dst))
    l4 = layer.data
    if isinstance(l4, dpkt.tcp.TCP):
        ports = (int(l4.sport), int(l4.dport))
        payload = bytes(l4.data)
        flags = "".join(ch for bit, ch in _TCP_FLAGS if l4.flags & bit)
        if payload and MODBUS_PORT in ports:
            before = len(rows.dead) + len(rows.events["time"])
            _adus(rows, payload, index, ms, ips, ports)
            if len(rows.dead) + len(rows.events["time"]) > before:
                return
        _network(rows, buf, index, ms, "tcp", ips, ports, flags, len(payload))
    elif isinstance(l4, dpkt.udp.UDP):
        ports = (int(l4.sport), int(l4.dport))
        _network(rows, buf, index, ms, "udp", ips, ports, None, len(bytes(l4.data)))
    else:
        proto = type(l4).__name__.lower() if not isinstance(l4, bytes) else f"ip-proto-{layer.p}"
        _network(rows, buf, index, ms, proto, ips, (None, None), None, len(bytes(l4)))


def parse_pcap(data: bytes, source_file: str) -> EventBatch:
    """Every packet of a pcap/pcapng capture as Modbus or network events, or dead letters."""
    rows = _Rows()
    stream = io.BytesIO(data)
    try:
        reader: Any = (
            dpkt.pcapng.Reader(stream)
            if data[:4] == b"\x0a\x0d\x0d\x0a"
            else dpkt.pcap.Reader(stream)
        )
    except (ValueError, dpkt.UnpackError, struct.error) as exc:
        rows.dead.append((1, f"not a readable pcap/pcapng capture: {exc}", data[:64].hex()))
        return _batch(rows, source_file)
    decode = _link_decoder(reader.datalink())
    index = 0
    packets = iter(reader)
    while True:
        try:
            ts, buf = next(packets)
        except StopIteration:
            break
        except (ValueError, dpkt.UnpackError, struct.error) as exc:
            rows.dead.append((index + 1, f"truncated capture after packet {index}: {exc}", ""))
            break
        index += 1
        ms = round(float(ts) * 1000)
        if decode is None:
            rows.dead.append(
                (index, f"unsupported link type {reader.datalink()}", bytes(buf[:256]).hex())
            )
            continue
        _packet(rows, decode, bytes(buf), index, ms)
    # dpkt stops quietly on a last record cut short: say so, the bytes were not all read.
    reported = bool(rows.dead) and rows.dead[-1][1].startswith("truncated capture")
    if stream.tell() < len(data) and not reported:
        left = len(data) - stream.tell()
        rows.dead.append((index + 1, f"truncated capture: {left} bytes after packet {index}", ""))
    return _batch(rows, source_file)


def _batch(rows: _Rows, source_file: str) -> EventBatch:
    columns = rows.events
    frame = pl.DataFrame(
        columns,
        schema={
            "time": pl.Int64(),
            "class_uid": pl.Int32(),
            "activity_id": pl.Int32(),
            "severity_id": pl.Int32(),
            "status_id": pl.Int32(),
            "message": pl.String(),
            "src_ip": pl.String(),
            "dst_ip": pl.String(),
            "src_port": pl.Int32(),
            "dst_port": pl.Int32(),
            "device": pl.String(),
            "ot_operation": pl.String(),
            "logsource_service": pl.String(),
            "record_index": pl.Int64(),
            "raw": pl.String(),
        },
    ).with_columns(
        pl.from_epoch("time", time_unit="ms").dt.replace_time_zone("UTC"),
        pl.lit(Domain.OT.value).alias("domain"),
        (pl.col("class_uid").cast(pl.Int64) * 100 + pl.col("activity_id")).alias("type_uid"),
        pl.lit("fleetops").alias("logsource_product"),
        pl.lit(source_file).alias("source_file"),
    )
    fields = pl.DataFrame(rows.fields, schema=dict.fromkeys(FIELDS, pl.String()))
    dead = dead_letters(source_file, sorted(rows.dead, key=lambda r: r[0]))
    return EventBatch(conform_events(frame), fields, dead)
