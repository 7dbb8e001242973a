"""Parsers: Modbus captures, OT records, vehicle events, Apache error and Proxifier logs."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import dpkt
import orjson
import polars as pl
import pytest

from fleetops.security.ids.detect import Alert
from fleetops.security.ids.ocsf import to_ocsf
from fleetops.security.soc.parsers import (
    bench_end_to_end,
    bench_parsers,
    detect_format,
    parse_bytes,
    parse_file,
    parse_text,
)
from tests.conftest import require_shared

PLC, HMI = "192.168.1.104", "192.168.1.100"


def _mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def _frame(src: str, dst: str, sport: int, dport: int, payload: bytes, udp: bool = False) -> bytes:
    l4: dpkt.Packet = (
        dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
        if udp
        else dpkt.tcp.TCP(
            sport=sport, dport=dport, flags=dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, data=payload
        )
    )
    ip = dpkt.ip.IP(
        src=bytes(map(int, src.split("."))),
        dst=bytes(map(int, dst.split("."))),
        p=dpkt.ip.IP_PROTO_UDP if udp else dpkt.ip.IP_PROTO_TCP,
        data=l4,
    )
    return bytes(dpkt.ethernet.Ethernet(src=b"\x00" * 6, dst=b"\x01" * 6, data=ip))


def _pcap(frames: list[bytes]) -> bytes:
    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out, linktype=dpkt.pcap.DLT_EN10MB)
    for i, frame in enumerate(frames):
        writer.writepkt(frame, ts=1424800000.0 + i)
    return out.getvalue()


def test_modbus_pcap_adus_exceptions_and_bad_packets() -> None:
    read = _mbap(1, 3, bytes([3]) + struct.pack(">HH", 100, 10))
    write = _mbap(2, 3, bytes([5]) + struct.pack(">HH", 7, 0xFF00))
    frames = [
        _frame(HMI, PLC, 40000, 502, read + write),  # 1: two requests in one segment
        _frame(PLC, HMI, 502, 40000, _mbap(1, 3, bytes([3, 20]) + bytes(20))),  # 2: response
        _frame(PLC, HMI, 502, 40000, _mbap(2, 3, bytes([0x85, 2]))),  # 3: exception
        _frame(HMI, PLC, 40000, 502, read[:9]),  # 4: truncated ADU
        _frame(HMI, PLC, 40000, 502, struct.pack(">HHHB", 9, 7, 6, 1) + bytes(5)),  # 5: pid 7
        _frame(HMI, "192.168.1.101", 1039, 139, b"\x00" * 40),  # 6: NetBIOS
        _frame(HMI, "192.168.1.255", 137, 137, b"x" * 10, udp=True),  # 7: UDP
        _frame(HMI, PLC, 40000, 502, _mbap(3, 3, bytes([3, 0]))),  # 8: PDU too short
        b"\x00\x01",  # 9: not even an Ethernet header
    ]
    data = _pcap(frames)
    assert detect_format(data[:64], "x.pcap") == "modbus-pcap"
    batch = parse_bytes(data, "auto", "lab.pcap")
    ev = pl.concat(
        [batch.events, batch.fields.select(pl.all().name.prefix("f."))], how="horizontal"
    )
    assert ev["record_index"].to_list() == [1, 1, 2, 3, 6, 7]
    first, second, response, exception, netbios, udp = ev.to_dicts()
    assert (first["ot_operation"], first["f.start_address"], first["f.quantity"]) == (
        "Read Holding Registers",
        "100",
        "10",
    )
    assert (first["device"], first["f.transaction_id"], first["f.unit_id"]) == (
        f"{PLC}/3",
        "1",
        "3",
    )
    assert (first["src_ip"], first["dst_port"], first["domain"], first["logsource_service"]) == (
        HMI,
        502,
        "ot",
        "modbus",
    )
    assert (second["ot_operation"], second["f.value"], second["f.direction"]) == (
        "Write Single Coil",
        str(0xFF00),
        "request",
    )
    assert (response["f.byte_count"], response["status_id"], response["device"]) == (
        "20",
        1,
        f"{PLC}/3",
    )
    assert (
        exception["f.exception_code"],
        exception["f.exception_name"],
        exception["status_id"],
    ) == ("2", "Illegal Data Address", 2)
    assert exception["ot_operation"] == "Write Single Coil" and exception["f.function_code"] == str(
        0x85
    )
    assert (netbios["logsource_service"], netbios["f.app_protocol"], netbios["ot_operation"]) == (
        "network",
        "netbios-ssn",
        None,
    )
    assert (udp["f.protocol"], udp["dst_port"]) == ("udp", 137)
    assert str(first["time"]) == "2015-02-24 17:46:40+00:00"
    reasons = dict(
        zip(batch.dead_letters["record_index"], batch.dead_letters["reason"], strict=True)
    )
    assert reasons[4] == "truncated Modbus ADU: MBAP length 6 but 3 bytes follow"
    assert reasons[5] == "not Modbus/TCP: protocol id 7 (must be 0)"
    assert reasons[8].startswith("truncated Modbus PDU: function 3 request needs 4")
    assert reasons[9].startswith("malformed frame")
    # a capture cut in the middle of a packet record
    cut = parse_bytes(data[:-3], "modbus-pcap", "cut.pcap")
    assert cut.dead_letters["reason"][-1].startswith("truncated capture")
    assert parse_bytes(b"not a capture", "modbus-pcap", "x").dead_letters[
        "record_index"
    ].to_list() == [1]


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "name",
    [
        "characterization_modbus_6RTU_with_operate",
        "CnC_uploading_exe_modbus_6RTU_with_operate",
        "moving_two_files_modbus_6RTU",
    ],
)
def test_modbus_real_captures_align_with_labels(name: str) -> None:
    folder = require_shared("ot_modbus")
    batch = parse_file(folder / f"{name}.pcap")
    labels = pl.read_csv(
        folder / f"{name}_labeled.csv",
        has_header=False,
        separator=";",
        new_columns=["frame", "label"],
    )
    covered = set(batch.events["record_index"]) | set(batch.dead_letters["record_index"])
    assert covered == set(range(1, labels.height + 1))
    assert batch.events["time"].min().year == 2015  # type: ignore[union-attr]
    modbus = batch.events.filter(pl.col("logsource_service") == "modbus")
    assert modbus.height > 200 and modbus["device"].null_count() == 0
    attack = batch.events.join(labels, left_on="record_index", right_on="frame").filter(
        pl.col("label") == 1
    )
    if name.startswith("characterization"):
        scan = attack.filter(
            (pl.col("src_ip") == "192.168.1.101")
            & (pl.col("ot_operation") == "Read Input Registers")
        )
        assert scan.height > 3000
        assert modbus.filter(pl.col("status_id") == 2).height > 3000  # exception responses
    else:  # the attack is IT traffic inside the control network
        assert attack["logsource_service"].unique().to_list() == ["network"]


OT_JSON = """\
{"time":"2024-03-01T08:00:00Z","device":"line3-plc1","protocol":"opcua","operation":"ActivateSession","user":"eng1","src_ip":"10.20.0.5","status":"Bad_UserAccessDenied"}
{"time":"2024-03-01T08:00:05Z","device":"line3-plc1","protocol":"opcua","operation":"Write","user":"eng1","node_id":"ns=2;s=Line3.Speed","value":1500,"status":"Good"}
{"time":1709280060000,"device":"line3-plc1","operation":"program_download","user":"eng1","program_name":"main","program_hash":"ab12","previous_hash":"99ff","status":"success"}
{"device":"x","operation":"Read"}
{"time":"2024-03-01T08:00:05Z","operation":"Read"}
not json
"""


def test_ot_json_and_csv() -> None:
    assert detect_format(OT_JSON.encode(), "ot.jsonl") == "ot-json"
    batch = parse_text(OT_JSON, "ot-json", "ot.jsonl")
    rows = batch.events.to_dicts()
    assert [r["class_uid"] for r in rows] == [3002, 6003, 5019]
    assert [r["logsource_service"] for r in rows] == ["opcua", "opcua", "plc"]
    assert [r["status_id"] for r in rows] == [2, 1, 1]
    assert rows[2]["software_version"] == "ab12" and rows[2]["device"] == "line3-plc1"
    assert batch.fields["value"][1] == "1500" and batch.fields["previous_hash"][2] == "99ff"
    reasons = batch.dead_letters["reason"].to_list()
    assert reasons[:2] == ["missing time", "missing device"] and reasons[2].startswith("bad JSON")
    csv = (
        "time,device,protocol,operation,user,src_ip,status,extra\n"
        "2024-03-01T08:00:00Z,plc1,opcua,Read,op,10.0.0.1,Good,x\n"
        "bad,plc1,opcua,Read,op,10.0.0.1,Good,x\n"
        "2024-03-01T08:00:00Z,plc2,,mode_change,op\n"
    )
    assert detect_format(csv.encode(), "ot.csv") == "ot-csv"
    batch = parse_text(csv, "ot-csv", "ot.csv")
    assert batch.events["record_index"].to_list() == [2, 4]
    assert batch.events["logsource_service"].to_list() == ["opcua", "plc"]
    assert batch.dead_letters.row(0)[1:3] == (3, "bad timestamp 'bad'")


def test_vehicle_json() -> None:
    alert = Alert(
        time=10.0,
        last_time=12.0,
        attack="spoofing",
        arbitration_id=0x1A0,
        score=9.0,
        frames=40,
        evidence=["rate"],
    )
    finding = to_ocsf(alert, vehicle="WVWZZZ1JZXW000001", time_origin_s=1_700_000_000)
    lines = [
        orjson.dumps(finding).decode(),
        '{"type":"dtc","ts":"2024-01-01T00:00:00Z","vin":"V1","ecu":"BMS","code":"P0A80","status":"confirmed","description":"Replace hybrid battery"}',
        '{"type":"ota","time":"2024-01-02T00:00:00Z","vin":"V1","ecu":"TCU","campaign_id":"C-42","from_version":"1.0","to_version":"1.1","result":"failure","reason":"signature"}',
        '{"type":"ecu_software","time":"2024-01-03T00:00:00Z","vin":"V2","ecu":"ADAS","from_version":"3.0","to_version":"3.1","campaign_id":"C-42","result":"success"}',
        '{"type":"weather","time":"2024-01-03T00:00:00Z","vin":"V2"}',
        '{"type":"dtc","time":"2024-01-03T00:00:00Z","code":"P1"}',
        '{"type":"dtc","time":"soon","vin":"V3","code":"P1"}',
        "{oops",
    ]
    text = "\n".join(lines)
    assert detect_format(text.encode(), "v.jsonl") == "vehicle-json"
    batch = parse_text(text, "vehicle-json", "v.jsonl")
    ids, dtc, ota, sw = batch.events.to_dicts()
    assert (ids["class_uid"], ids["vin"], ids["ecu"], ids["severity_id"]) == (
        2004,
        "WVWZZZ1JZXW000001",
        "WVWZZZ1JZXW000001:can0:0x1A0",
        4,
    )
    assert ids["logsource_service"] == "ids" and ids["domain"] == "vehicle"
    assert batch.fields["attack"][0] == "spoofing" and batch.fields["arbitration_id"][0] == "0x1A0"
    assert (dtc["logsource_service"], dtc["ecu"], batch.fields["code"][1]) == (
        "dtc",
        "BMS",
        "P0A80",
    )
    assert (
        ota["status_id"],
        ota["campaign_id"],
        ota["software_version"],
        ota["logsource_service"],
    ) == (2, "C-42", "1.1", "ota")
    assert (sw["status_id"], sw["vin"], sw["logsource_service"]) == (1, "V2", "ota")
    reasons = dict(
        zip(batch.dead_letters["record_index"], batch.dead_letters["reason"], strict=True)
    )
    assert reasons[5].startswith("unknown vehicle event kind 'weather'")
    assert reasons[6] == "missing vin" and reasons[7] == "bad timestamp 'soon'"
    assert reasons[8].startswith("bad JSON")


def test_vehicle_json_wrongly_typed_lines_are_dead_letters_not_a_failed_file() -> None:
    alert = Alert(
        time=10.0,
        last_time=12.0,
        attack="flooding",
        arbitration_id=0x10,
        score=9.0,
        frames=4,
        evidence=["rate"],
    )
    good = to_ocsf(alert, vehicle="WVWZZZ1JZXW000001", time_origin_s=1_700_000_000)
    bad = dict(good, severity_id="high")  # int("high") fails inside the finding reader
    dtc = {"type": "dtc", "time": "2024-01-01T00:00:00Z", "vin": "V1", "code": "P1"}
    objs = [good, bad, dict(dtc, vin=["V1"]), dict(dtc, type=["dtc"]), dtc, good]
    text = "\n".join(orjson.dumps(obj).decode() for obj in objs)
    batch = parse_text(text, "vehicle-json", "v.jsonl")
    assert batch.events["record_index"].to_list() == [1, 5, 6]
    reasons = dict(
        zip(batch.dead_letters["record_index"], batch.dead_letters["reason"], strict=True)
    )
    assert reasons[2].startswith("bad ids record: ValueError")
    assert reasons[3] == "bad dtc record: 'vin' is a JSON array"
    assert reasons[4].startswith("unknown vehicle event kind ['dtc']")


APACHE_ERROR = """\
[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok /etc/httpd/conf/workers2.properties
[Sun Dec 04 20:47:17 2005] [error] [client 82.177.96.6] Directory index forbidden by rule: /var/www/html/
[Wed Oct 11 14:32:52.123456 2000] [core:crit] [pid 35708:tid 4328636416] [client 72.15.99.187:5003] AH00124: exit signal Segmentation Fault
2024/01/05 10:00:00 [alert] 100#0: worker process 101 exited on signal 6 (core dumped)
[Sun Dec 99 04:47:44 2005] [notice] bad day
random text
"""


def test_apache_error_and_proxifier() -> None:
    assert detect_format(APACHE_ERROR.encode(), "error_log") == "apache-error"
    batch = parse_text(APACHE_ERROR, "apache-error", "error_log")
    rows = batch.events.to_dicts()
    assert [r["logsource_service"] for r in rows] == ["apache", "apache", "apache", "nginx"]
    assert rows[1]["src_ip"] == "82.177.96.6" and rows[2]["src_ip"] == "72.15.99.187"
    assert [r["severity_id"] for r in rows] == [1, 3, 4, 5]
    assert batch.fields["error_code"][2] == "AH00124" and batch.fields["module"][2] == "core"
    assert rows[3]["message"].endswith("(core dumped)")
    reasons = batch.dead_letters["reason"].to_list()
    assert reasons[0].startswith("bad timestamp") and reasons[1].startswith("not an Apache")
    proxy = (
        "[10.30 16:49:06] chrome.exe - proxy.cse.cuhk.edu.hk:5070 open through proxy proxy.cse.cuhk.edu.hk:5070 HTTPS\n"
        "[10.30 16:49:08] chrome.exe - 10.0.0.8:443 close, 1190 bytes (1.16 KB) sent, 1671 bytes (1.63 KB) received, lifetime 00:02\n"
        "[10.30 16:49:09] putty.exe - host:22 error : Could not connect to proxy proxy:5070 - connection attempt failed with error 10061\n"
        "[13.45 16:49:09] x - y:1 open directly\n"
        "nonsense\n"
    )
    assert detect_format(proxy.encode(), "proxifier.log") == "proxy"
    batch = parse_text(proxy, "proxy", "proxifier.log", year=2016)
    rows = batch.events.to_dicts()
    assert [r["activity_id"] for r in rows] == [1, 2, 4]
    assert (rows[1]["dst_ip"], rows[1]["dst_port"], rows[1]["bytes"]) == ("10.0.0.8", 443, 2861)
    assert rows[2]["status_id"] == 2 and rows[0]["logsource_category"] == "proxy"
    assert str(rows[0]["time"]) == "2016-10-30 16:49:06+00:00"
    assert batch.dead_letters["record_index"].to_list() == [4, 5]


@pytest.mark.shared_data
@pytest.mark.parametrize(("folder", "fmt"), [("Apache", "apache-error"), ("Proxifier", "proxy")])
def test_loghub_apache_proxifier(folder: str, fmt: str) -> None:
    path = require_shared("loghub") / folder / f"{folder}_2k.log"
    batch = parse_file(path)
    assert batch.parsed == 2000 and batch.rejected == 0
    assert batch.events["source_file"][0] == str(path)


@pytest.mark.shared_data
def test_bench_parsers_reports_every_format(tmp_path: Path) -> None:
    rows = bench_parsers(require_shared("loghub").parent, repeat=1)
    assert {r["format"] for r in rows} >= {"syslog", "access-combined", "modbus-pcap"}
    assert all(r["events"] > 0 and r["events_per_s"] > 0 for r in rows)
    assert all(r["events_per_cpu_s"] > 0 for r in rows)
    assert bench_parsers(tmp_path) == []


@pytest.mark.shared_data
def test_bench_end_to_end_same_findings_as_naive(tmp_path: Path) -> None:
    got = bench_end_to_end(
        require_shared("sigma_rules").parent, copies=1, naive_events=400, repeat=1
    )
    assert got is not None
    assert got["rules"] >= 100 and got["refused"] == 0
    assert got["events"] == 9_999 + 4_000  # the web log's one bad line is dead-lettered
    assert got["naive_events"] == 400 and got["agrees_with_columnar"]
    assert got["events_per_cpu_s"] > 0 and got["ratio"] > 1
    assert bench_end_to_end(tmp_path) is None
