"""Windows JSON events: evtx_dump and flat layouts, logsource, 4688 mapping, dead letters."""

from __future__ import annotations

import zipfile

import orjson
import pytest

from fleetops.security.soc.parsers.windows import parse_windows_json
from tests.conftest import require_shared

SYSMON_1 = {
    "Event": {
        "#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
        "System": {
            "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
            "EventID": 1,
            "Level": 4,
            "TimeCreated": {"#attributes": {"SystemTime": "2025-12-25T14:30:27.369114Z"}},
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "Computer": "ws1",
        },
        "EventData": {
            "Image": "C:\\Windows\\System32\\reg.exe",
            "CommandLine": "reg add x",
            "User": "ws1\\bob",
            "ProcessId": 14144,
        },
    }
}


def test_evtx_dump_pretty_printed_concatenated_with_bad_object() -> None:
    registry = orjson.loads(orjson.dumps(SYSMON_1))
    registry["Event"]["System"]["EventID"] = 12
    registry["Event"]["EventData"] = {"EventType": "DeleteKey", "TargetObject": "HKLM\\x"}
    wmi = {
        "Event": {
            "System": {
                "EventID": {"#text": 5858, "#attributes": {"Qualifiers": 0}},
                "Channel": "Microsoft-Windows-WMI-Activity/Operational",
            },
            "UserData": {"Op": {"#attributes": {"xmlns": "u"}, "Operation": "cleareventlog"}},
        }
    }
    text = "\n".join(
        [
            orjson.dumps(SYSMON_1, option=orjson.OPT_INDENT_2).decode(),
            '{\n  "Event": {"System": ',  # cut short
            orjson.dumps(registry, option=orjson.OPT_INDENT_2).decode(),
            orjson.dumps({"Event": {"EventData": {}}}, option=orjson.OPT_INDENT_2).decode(),
            orjson.dumps(wmi, option=orjson.OPT_INDENT_2).decode(),
        ]
    )
    batch = parse_windows_json(text, "x.json")
    assert batch.parsed == 3 and batch.rejected == 2
    assert batch.dead_letters["reason"].to_list()[1] == "evtx_dump object without Event.System"
    assert batch.dead_letters["reason"][0].startswith("bad JSON")
    ev = batch.events.row(0, named=True)
    assert (ev["logsource_product"], ev["logsource_service"], ev["logsource_category"]) == (
        "windows",
        "sysmon",
        "process_creation",
    )
    assert ev["record_index"] == 1 and ev["host"] == "ws1" and ev["command_line"] == "reg add x"
    assert str(ev["time"]).startswith("2025-12-25 14:30:27.369")
    assert batch.fields["Provider_Name"][0] == "Microsoft-Windows-Sysmon"
    assert batch.fields["ProcessId"][0] == "14144" and batch.fields["EventID"][0] == "1"
    assert batch.events["logsource_category"][1] == "registry_delete"
    assert batch.events["logsource_service"][2] == "wmi"
    assert batch.fields["Operation"][2] == "cleareventlog" and batch.fields["EventID"][2] == "5858"
    assert batch.events["record_index"].to_list()[1] > 10  # line where the object starts


def test_flat_json_lines_and_security_4688_mapping() -> None:
    lines = [
        orjson.dumps(
            {
                "EventID": 4688,
                "Channel": "Security",
                "Hostname": "WS5",
                "SourceName": "Microsoft-Windows-Security-Auditing",
                "NewProcessName": "C:\\Windows\\System32\\cmd.exe",
                "ParentProcessName": "C:\\x\\explorer.exe",
                "ProcessId": "0x10",
                "NewProcessId": "0x20",
                "SubjectUserName": "bob",
                "SubjectDomainName": "CORP",
                "MandatoryLabel": "S-1-16-12288",
                "CommandLine": "cmd /c x",
            }
        ).decode(),
        "",
        "not json at all",
        orjson.dumps({"hello": 1}).decode(),
        orjson.dumps(
            {
                "EventID": 13,
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "TargetObject": "HKU\\x",
                "UtcTime": "2020-10-19 04:29:00.013",
            }
        ).decode(),
    ]
    batch = parse_windows_json("\r\n".join(lines), "otrf.json")
    assert batch.parsed == 2 and batch.rejected == 2
    assert batch.dead_letters["record_index"].to_list() == [3, 4]
    f = batch.fields.row(0, named=True)
    assert (
        f["Image"] == "C:\\Windows\\System32\\cmd.exe" and f["ParentImage"] == "C:\\x\\explorer.exe"
    )
    assert f["ProcessId"] == "0x20" and f["ParentProcessId"] == "0x10"
    assert f["User"] == "CORP\\bob" and f["IntegrityLevel"] == "High"
    assert f["Computer"] == "WS5" and f["Provider_Name"] == "Microsoft-Windows-Security-Auditing"
    assert batch.events["logsource_category"].to_list() == ["process_creation", "registry_set"]
    assert batch.events["logsource_service"].to_list() == ["security", "sysmon"]
    assert str(batch.events["time"][1]).startswith("2020-10-19 04:29:00")


def test_empty_and_non_object() -> None:
    assert parse_windows_json("", "e.json").parsed == 0
    batch = parse_windows_json("[1, 2]", "a.json")
    assert batch.parsed == 0 and batch.rejected == 2


@pytest.mark.shared_data
def test_otrf_recordings_parse_without_dead_letters() -> None:
    folder = require_shared("attack_telemetry")
    total = 0
    for archive in sorted(folder.rglob("*.zip")):
        with zipfile.ZipFile(archive) as zf:
            batch = parse_windows_json(zf.read(zf.namelist()[0]).decode(), str(archive))
        assert batch.rejected == 0
        total += batch.parsed
    assert total == 184 + 915 + 424 + 1127 + 1041 + 122
