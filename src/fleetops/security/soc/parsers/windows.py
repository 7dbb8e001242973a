"""Windows event logs as JSON → OCSF events plus the native Windows/Sysmon fields.

Two layouts are read, told apart per object:

* ``evtx_dump`` output: ``{"Event": {"System": {...}, "EventData": {...}}}`` with XML
  attributes under ``"#attributes"``; files hold concatenated, pretty-printed objects
  (or one object per line, or a JSON array).
* flat JSON Lines exports (OTRF Security-Datasets, Logstash/NXLog/Winlogbeat style): event
  fields are top-level keys (``EventID``, ``Channel``, ``Hostname``, ``SourceName``,
  ``Image`` ...).

Native field names are the ones Sigma rules for Windows use (``EventID``, ``Channel``,
``Provider_Name``, ``Computer``, ``Image``, ``CommandLine``, ``TargetObject`` ...). The
Sigma logsource (product ``windows``, service from the channel, category from the Sysmon
event id or Security 4688) is set per event, and Security 4688 process creation events
also get the Sysmon names (``Image``, ``ParentImage``, ``User`` ...), as pySigma's Windows
audit pipeline maps them. Objects that are not JSON or not a Windows event become dead
letters with the reason.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

import orjson
import polars as pl

from fleetops.core.ocsf import (
    DEAD_LETTER_SCHEMA,
    EVENT_SCHEMA,
    EventBatch,
    EventClass,
    conform_events,
)

SERVICE_BY_CHANNEL: Final[dict[str, str]] = {
    "security": "security",
    "system": "system",
    "application": "application",
    "microsoft-windows-sysmon/operational": "sysmon",
    "microsoft-windows-powershell/operational": "powershell",
    "windows powershell": "powershell-classic",
    "microsoft-windows-taskscheduler/operational": "taskscheduler",
    "microsoft-windows-wmi-activity/operational": "wmi",
    "microsoft-windows-windows defender/operational": "windefend",
    "microsoft-windows-bits-client/operational": "bits-client",
    "microsoft-windows-dns-client/operational": "dns-client",
    "dns server": "dns-server",
    "microsoft-windows-windows firewall with advanced security/firewall": "firewall-as",
    "microsoft-windows-codeintegrity/operational": "codeintegrity-operational",
    "microsoft-windows-ntlm/operational": "ntlm",
    "microsoft-windows-terminalservices-localsessionmanager/operational": (
        "terminalservices-localsessionmanager"
    ),
    "microsoft-windows-printservice/admin": "printservice-admin",
    "microsoft-windows-printservice/operational": "printservice-operational",
    "microsoft-windows-smbclient/security": "smbclient-security",
    "microsoft-windows-shell-core/operational": "shell-core",
    "openssh/operational": "openssh",
    "microsoft-windows-ldap-client/debug": "ldap_debug",
    "microsoft-windows-driverframeworks-usermode/operational": "driver-framework",
    "microsoft-windows-diagnosis-scripted/operational": "diagnosis-scripted",
    "microsoft-windows-appxdeploymentserver/operational": "appxdeployment-server",
    "microsoft-windows-appxpackaging/operational": "appxpackaging-om",
    "microsoft-windows-capi2/operational": "capi2",
    "microsoft-windows-certificateservicesclient-lifecycle-system/operational": (
        "certificateservicesclient-lifecycle-system"
    ),
    "microsoft-windows-kernel-shimengine/operational": "shim-engine",
    "microsoft-windows-msexchange management": "msexchange-management",
    "msexchange management": "msexchange-management",
    "microsoft-windows-security-mitigations/kernel mode": "security-mitigations",
    "microsoft-windows-security-mitigations/user mode": "security-mitigations",
    "microsoft-windows-appmodel-runtime/admin": "appmodel-runtime",
    "microsoft-windows-hyper-v-worker-admin": "hyper-v-worker",
    "microsoft-windows-bitlocker/bitlocker management": "bitlocker",
    "microsoft-windows-vhdmp/operational": "vhdmp",
}
"""Windows event channel (lower case) → Sigma ``service`` (Sigma's Windows taxonomy)."""

_APPLOCKER_PREFIX: Final = "microsoft-windows-applocker/"

SYSMON_CATEGORY: Final[dict[int, str]] = {
    1: "process_creation",
    2: "file_change",
    3: "network_connection",
    4: "sysmon_status",
    5: "process_termination",
    6: "driver_load",
    7: "image_load",
    8: "create_remote_thread",
    9: "raw_access_thread",
    10: "process_access",
    11: "file_event",
    13: "registry_set",
    14: "registry_rename",
    15: "create_stream_hash",
    16: "sysmon_status",
    17: "pipe_created",
    18: "pipe_created",
    19: "wmi_event",
    20: "wmi_event",
    21: "wmi_event",
    22: "dns_query",
    23: "file_delete",
    24: "clipboard_capture",
    25: "process_tampering",
    26: "file_delete",
    27: "file_block_executable",
    28: "file_block_shredding",
    29: "file_executable_detected",
    255: "sysmon_error",
}
"""Sysmon EventID → Sigma ``category`` (12 depends on EventType, see :func:`_category`)."""

POWERSHELL_CATEGORY: Final[dict[tuple[str, int], str]] = {
    ("powershell", 4103): "ps_module",
    ("powershell", 4104): "ps_script",
    ("powershell-classic", 400): "ps_classic_start",
    ("powershell-classic", 600): "ps_classic_provider_start",
    ("powershell-classic", 800): "ps_classic_script",
}

_CLASS_BY_CATEGORY: Final[dict[str, tuple[EventClass, int]]] = {
    "process_creation": (EventClass.PROCESS_ACTIVITY, 1),
    "process_termination": (EventClass.PROCESS_ACTIVITY, 2),
    "process_access": (EventClass.PROCESS_ACTIVITY, 3),
    "create_remote_thread": (EventClass.PROCESS_ACTIVITY, 3),
    "process_tampering": (EventClass.PROCESS_ACTIVITY, 99),
    "network_connection": (EventClass.NETWORK_ACTIVITY, 1),
    "dns_query": (EventClass.DNS_ACTIVITY, 1),
    "image_load": (EventClass.MODULE_ACTIVITY, 1),
    "driver_load": (EventClass.KERNEL_ACTIVITY, 1),
    "file_event": (EventClass.FILE_ACTIVITY, 1),
    "file_change": (EventClass.FILE_ACTIVITY, 3),
    "file_delete": (EventClass.FILE_ACTIVITY, 4),
    "create_stream_hash": (EventClass.FILE_ACTIVITY, 1),
    "registry_add": (EventClass.REGISTRY_VALUE_ACTIVITY, 1),
    "registry_set": (EventClass.REGISTRY_VALUE_ACTIVITY, 3),
    "registry_delete": (EventClass.REGISTRY_VALUE_ACTIVITY, 4),
    "registry_rename": (EventClass.REGISTRY_VALUE_ACTIVITY, 99),
}

_CLASS_BY_EVENT_ID: Final[dict[tuple[str, int], tuple[EventClass, int, int]]] = {
    # (service, EventID) → class, activity, status
    ("security", 4624): (EventClass.AUTHENTICATION, 1, 1),
    ("security", 4625): (EventClass.AUTHENTICATION, 1, 2),
    ("security", 4648): (EventClass.AUTHENTICATION, 1, 0),
    ("security", 4634): (EventClass.AUTHENTICATION, 2, 1),
    ("security", 4647): (EventClass.AUTHENTICATION, 2, 1),
    ("security", 4768): (EventClass.AUTHENTICATION, 3, 0),
    ("security", 4769): (EventClass.AUTHENTICATION, 4, 0),
    ("security", 4776): (EventClass.AUTHENTICATION, 1, 0),
    ("security", 4720): (EventClass.ACCOUNT_CHANGE, 1, 1),
    ("security", 4722): (EventClass.ACCOUNT_CHANGE, 2, 1),
    ("security", 4724): (EventClass.ACCOUNT_CHANGE, 4, 1),
    ("security", 4726): (EventClass.ACCOUNT_CHANGE, 6, 1),
    ("security", 4732): (EventClass.ACCOUNT_CHANGE, 3, 1),
    ("security", 4698): (EventClass.SCHEDULED_JOB_ACTIVITY, 1, 1),
    ("security", 4699): (EventClass.SCHEDULED_JOB_ACTIVITY, 4, 1),
    ("security", 4700): (EventClass.SCHEDULED_JOB_ACTIVITY, 2, 1),
    ("security", 4701): (EventClass.SCHEDULED_JOB_ACTIVITY, 3, 1),
    ("security", 4702): (EventClass.SCHEDULED_JOB_ACTIVITY, 2, 1),
    ("security", 1102): (EventClass.EVENT_LOG_ACTIVITY, 1, 1),
    ("system", 104): (EventClass.EVENT_LOG_ACTIVITY, 1, 1),
    ("taskscheduler", 106): (EventClass.SCHEDULED_JOB_ACTIVITY, 1, 1),
    ("taskscheduler", 140): (EventClass.SCHEDULED_JOB_ACTIVITY, 2, 1),
    ("taskscheduler", 141): (EventClass.SCHEDULED_JOB_ACTIVITY, 4, 1),
    ("taskscheduler", 142): (EventClass.SCHEDULED_JOB_ACTIVITY, 3, 1),
}

_INTEGRITY_BY_LABEL: Final[dict[str, str]] = {
    "S-1-16-0": "Untrusted",
    "S-1-16-4096": "Low",
    "S-1-16-8192": "Medium",
    "S-1-16-8448": "Medium Plus",
    "S-1-16-12288": "High",
    "S-1-16-16384": "System",
    "S-1-16-20480": "Protected Process",
}

_SEVERITY_BY_LEVEL: Final[dict[str, int]] = {"1": 5, "2": 4, "3": 3, "4": 1, "0": 1, "5": 1}

_NATIVE_IP_FIELDS: Final = ("IpAddress", "SourceIp", "SourceAddress", "ClientAddress")


class _BadRecordError(ValueError):
    """An object that is JSON but not a Windows event."""


def _scalar(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def _flatten_xml_node(prefix: str, node: Any, out: dict[str, str | None]) -> None:
    """evtx_dump node → ``prefix`` (its text) and ``prefix_attr`` (its attributes)."""
    if isinstance(node, dict):
        text = node.get("#text")
        if text is not None or not node:
            out[prefix] = _scalar(text)
        attributes = node.get("#attributes")
        if isinstance(attributes, dict):
            for key, value in attributes.items():
                if key == "xmlns":
                    continue
                out[f"{prefix}_{key}"] = _scalar(value)
        for key, value in node.items():
            if key in ("#text", "#attributes"):
                continue
            _flatten_xml_node(f"{prefix}_{key}", value, out)
    else:
        out[prefix] = _scalar(node)


def _event_data(node: Any, out: dict[str, str | None]) -> None:
    """``EventData`` (named fields, or ``Data`` items with a ``Name`` attribute)."""
    if not isinstance(node, dict):
        if node is not None:
            out["Data"] = _scalar(node)
        return
    for key, value in node.items():
        if key == "#attributes":
            continue
        if key == "Data" and isinstance(value, list | dict):
            items = value if isinstance(value, list) else [value]
            unnamed: list[str] = []
            for item in items:
                if isinstance(item, dict):
                    name = (item.get("#attributes") or {}).get("Name")
                    text = _scalar(item.get("#text"))
                    if name:
                        out[str(name)] = text
                    elif text is not None:
                        unnamed.append(text)
                elif item is not None:
                    unnamed.append(str(_scalar(item)))
            if unnamed:
                out["Data"] = " ".join(unnamed)
        elif isinstance(value, dict) and "#text" in value:
            out[key] = _scalar(value["#text"])
        else:
            out[key] = _scalar(value)


def _evtx_fields(event: dict[str, Any]) -> dict[str, str | None]:
    system = event.get("System")
    if not isinstance(system, dict):
        raise _BadRecordError("evtx_dump object without Event.System")
    out: dict[str, str | None] = {}
    for key, value in system.items():
        if key == "#attributes":
            continue
        _flatten_xml_node(key, value, out)
    if "EventID" not in out:
        raise _BadRecordError("Event.System has no EventID")
    data = event.get("EventData")
    if data is not None:
        _event_data(data, out)
    user_data = event.get("UserData")
    if isinstance(user_data, dict):
        for key, value in user_data.items():
            if key == "#attributes":
                continue
            if isinstance(value, dict):  # one element named after the event template
                _event_data(value, out)
            else:
                out[key] = _scalar(value)
    return out


def _flat_fields(record: dict[str, Any]) -> dict[str, str | None]:
    if "EventID" not in record and "event_id" not in record:
        raise _BadRecordError("object has no EventID (neither evtx_dump nor flat Windows event)")
    out: dict[str, str | None] = {}
    for key, value in record.items():
        if type(value) is str:  # most values: skip _scalar's checks
            out[key] = value
        elif isinstance(value, dict):
            for sub_key, sub_value in value.items():
                out[f"{key}_{sub_key}"] = _scalar(sub_value)
        else:
            out[key] = _scalar(value)
    if "EventID" not in out:
        out["EventID"] = out.get("event_id")
    if "Provider_Name" not in out:
        out["Provider_Name"] = out.get("SourceName") or out.get("ProviderName")
    if "Computer" not in out:
        out["Computer"] = out.get("Hostname") or out.get("computer_name")
    return out


def _service(channel: str | None) -> str | None:
    if not channel:
        return None
    low = channel.lower()
    service = SERVICE_BY_CHANNEL.get(low)
    if service is None and low.startswith(_APPLOCKER_PREFIX):
        return "applocker"
    return service


def _category(
    service: str | None, event_id: int | None, fields: dict[str, str | None]
) -> str | None:
    if event_id is None:
        return None
    if service == "sysmon":
        if event_id == 12:
            kind = (fields.get("EventType") or "").lower()
            return "registry_delete" if kind.startswith("delete") else "registry_add"
        return SYSMON_CATEGORY.get(event_id)
    if service == "security" and event_id == 4688:
        return "process_creation"
    if service is not None:
        return POWERSHELL_CATEGORY.get((service, event_id))
    return None


def _map_security_4688(fields: dict[str, str | None]) -> None:
    """Sysmon names for Security 4688, as pySigma's Windows audit pipeline maps them."""
    creator_pid = fields.get("ProcessId")
    mapping = {
        "Image": fields.get("NewProcessName"),
        "ParentImage": fields.get("ParentProcessName"),
        "ProcessId": fields.get("NewProcessId"),
        "ParentProcessId": creator_pid,
        "LogonId": fields.get("SubjectLogonId"),
    }
    user = fields.get("SubjectUserName")
    if user and user != "-":
        domain = fields.get("SubjectDomainName")
        mapping["User"] = f"{domain}\\{user}" if domain and domain != "-" else user
    label = fields.get("MandatoryLabel")
    if label:
        mapping["IntegrityLevel"] = _INTEGRITY_BY_LABEL.get(label.upper(), label)
    for key, value in mapping.items():
        if value is not None:
            fields[key] = value


def _time_ms(fields: dict[str, str | None], flat: bool) -> int | None:
    # Sysmon UtcTime is real UTC; flat exports' TimeCreated/@timestamp may be local time
    candidates = (
        ("UtcTime", "TimeCreated_SystemTime", "@timestamp", "TimeCreated", "EventTime")
        if flat
        else ("TimeCreated_SystemTime", "UtcTime")
    )
    for name in candidates:
        text = fields.get(name)
        if not text:
            continue
        ms = _iso_ms(text)
        if ms is not None:
            return ms
    return None


@lru_cache(maxsize=4096)
def _iso_ms(text: str) -> int | None:
    """Epoch ms of an ISO 8601 stamp (naive = UTC), None if it is not one.

    Cached: events of one burst share their stamp text.
    """
    try:
        stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1000)


def _clean(value: str | None) -> str | None:
    return None if value in (None, "", "-") else value


def _event_row(
    fields: dict[str, str | None], flat: bool, source_file: str, index: int, raw: str
) -> dict[str, Any]:
    try:
        event_id: int | None = int(str(fields.get("EventID")).strip())
    except ValueError:
        raise _BadRecordError(f"EventID {fields.get('EventID')!r} is not a number") from None
    channel = fields.get("Channel")
    service = _service(channel)
    category = _category(service, event_id, fields)
    if category == "process_creation" and service == "security":
        _map_security_4688(fields)
    klass, activity, status = EventClass.BASE, 0, 0
    if category in _CLASS_BY_CATEGORY:
        klass, activity = _CLASS_BY_CATEGORY[category]
    elif service is not None and event_id is not None and (service, event_id) in _CLASS_BY_EVENT_ID:
        klass, activity, status = _CLASS_BY_EVENT_ID[(service, event_id)]
    user = _clean(fields.get("User")) or _clean(fields.get("TargetUserName"))
    user = user or _clean(fields.get("SubjectUserName"))
    src_ip = next((v for f in _NATIVE_IP_FIELDS if (v := _clean(fields.get(f)))), None)
    message = fields.get("Message") or " ".join(
        part
        for part in (channel or "windows", f"EventID {event_id}", fields.get("CommandLine"))
        if part
    )
    process = fields.get("Image") or fields.get("ProcessName") or fields.get("NewProcessName")
    return {
        "time": _time_ms(fields, flat),
        "domain": "it",
        "class_uid": int(klass),
        "activity_id": activity,
        "type_uid": int(klass) * 100 + activity,
        "severity_id": _SEVERITY_BY_LEVEL.get(fields.get("Level") or "", 1),
        "status_id": status,
        "message": message,
        "user": user,
        "host": fields.get("Computer"),
        "src_ip": src_ip,
        "dst_ip": _clean(fields.get("DestinationIp")),
        "src_port": _port(fields.get("SourcePort") or fields.get("IpPort")),
        "dst_port": _port(fields.get("DestinationPort")),
        "process": process,
        "parent_process": fields.get("ParentImage"),
        "command_line": fields.get("CommandLine"),
        "logsource_product": "windows",
        "logsource_category": category,
        "logsource_service": service,
        "source_file": source_file,
        "record_index": index,
        "raw": raw,
    }


_INT_COLUMNS: Final = (
    "time",
    "class_uid",
    "activity_id",
    "type_uid",
    "severity_id",
    "status_id",
    "src_port",
    "dst_port",
    "record_index",
)
_ROW_SCHEMA: Final[dict[str, pl.DataType]] = {
    name: pl.Int64() if name in _INT_COLUMNS else pl.String()
    for name in (
        "time",
        "domain",
        "class_uid",
        "activity_id",
        "type_uid",
        "severity_id",
        "status_id",
        "message",
        "user",
        "host",
        "src_ip",
        "dst_ip",
        "src_port",
        "dst_port",
        "process",
        "parent_process",
        "command_line",
        "logsource_product",
        "logsource_category",
        "logsource_service",
        "source_file",
        "record_index",
        "raw",
    )
}
"""The columns of :func:`_event_row`'s rows and their types."""


def _port(text: str | None) -> int | None:
    if text and text.isdigit() and int(text) < 65536:
        return int(text)
    return None


def _objects(text: str) -> list[tuple[int, str, Any]]:
    """(1-based line where the object starts, its text, the decoded value or an exception)."""
    found: list[tuple[int, str, Any]] = []
    lines = text.splitlines()
    # JSON Lines (every non-blank line is one value) is the fast path
    first = next((line for line in lines if line.strip()), "")
    if first.lstrip().startswith("{"):
        try:
            orjson.loads(first)
            jsonl = True
        except orjson.JSONDecodeError:
            jsonl = False
        if jsonl:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    found.append((number, line, orjson.loads(line)))
                except orjson.JSONDecodeError as exc:
                    found.append((number, line, exc))
            return found
    decoder = json.JSONDecoder()
    pos, line_no, size = 0, 1, len(text)
    while pos < size:
        skip = pos
        while skip < size and text[skip] in " \t\r\n,":
            skip += 1
        line_no += text.count("\n", pos, skip)
        pos = skip
        if pos >= size:
            break
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            # skip to the next line that starts an object at column 0
            nxt = text.find("\n{", pos + 1)
            end = size if nxt < 0 else nxt + 1
            found.append((line_no, text[pos:end].rstrip(), exc))
        else:
            if isinstance(value, list) and not found and pos == len(text) - len(text.lstrip()):
                for item in value:
                    found.append((line_no, orjson.dumps(item).decode(), item))
            else:
                found.append((line_no, text[pos:end], value))
        line_no += text.count("\n", pos, end)
        pos = end
    return found


def parse_windows_json(text: str, source_file: str) -> EventBatch:
    """Windows events as JSON (evtx_dump layout or flat JSON Lines) → an :class:`EventBatch`."""
    rows: list[dict[str, Any]] = []
    natives: list[dict[str, str | None]] = []
    dead: list[dict[str, Any]] = []
    for index, raw, value in _objects(text):
        if isinstance(value, Exception):
            dead.append(
                {
                    "source_file": source_file,
                    "record_index": index,
                    "reason": f"bad JSON: {value}",
                    "raw": raw,
                }
            )
            continue
        try:
            if not isinstance(value, dict):
                raise _BadRecordError(f"JSON {type(value).__name__} is not an event object")
            event = value.get("Event")
            if isinstance(event, dict):
                fields, flat = _evtx_fields(event), False
            else:
                fields, flat = _flat_fields(value), True
            row = _event_row(fields, flat, source_file, index, raw)
        except _BadRecordError as exc:
            dead.append(
                {"source_file": source_file, "record_index": index, "reason": str(exc), "raw": raw}
            )
            continue
        rows.append(row)
        natives.append(fields)
    if rows:
        # Built by column with the types _event_row gives (ints or strings, or None).
        events = pl.DataFrame(
            {name: [row[name] for row in rows] for name in _ROW_SCHEMA},
            schema=_ROW_SCHEMA,
        )
        events = events.with_columns(
            pl.from_epoch(pl.col("time"), time_unit="ms").dt.replace_time_zone("UTC")
        )
        events = conform_events(events)
        names = list(dict.fromkeys(name for native in natives for name in native))
        # Polars fills the keys an object lacks with nulls (most objects lack most names).
        fields_frame = pl.from_dicts(natives, schema=dict.fromkeys(names, pl.String))
    else:
        events = pl.DataFrame(schema=EVENT_SCHEMA)
        fields_frame = pl.DataFrame()
    dead_frame = pl.DataFrame(dead, schema=DEAD_LETTER_SCHEMA)
    return EventBatch(events, fields_frame, dead_frame)
