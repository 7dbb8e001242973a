"""Parsers of the cyber defence centre: syslog, access logs, sniffing, archives."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import polars as pl
import pytest

from fleetops.core.errors import ValidationError
from fleetops.core.ocsf import EVENT_SCHEMA, EventBatch
from fleetops.security.soc.parsers import FORMATS, detect_format, parse_file, parse_text
from tests.conftest import require_shared

AUTH_LOG = """\
Jan  5 10:00:01 web1 sshd[101]: Accepted publickey for alice from 10.0.0.5 port 50123 ssh2
Jan  5 10:00:02 web1 sshd[102]: Failed password for invalid user admin from 203.0.113.9 port 4242 ssh2
Jan  5 10:00:03 web1 sshd[102]: Invalid user oracle from 203.0.113.9 port 4243
Jan  5 10:00:04 web1 sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id
Jan  5 10:00:05 web1 sudo:      bob : user NOT in sudoers ; TTY=pts/1 ; PWD=/tmp ; USER=root ; COMMAND=/bin/sh
Jan  5 10:00:06 web1 su[200]: FAILED SU (to root) bob on pts/1
Jan  5 10:00:07 web1 sshd[103]: pam_unix(sshd:session): session opened for user alice(uid=1000) by (uid=0)
Jan  5 10:00:08 web1 CRON[300]: (root) CMD (run-parts /etc/cron.hourly)
Jan  5 10:00:09 web1 kernel: [ 1.0] eth0: link up
this is not syslog at all
Jan 45 10:00:10 web1 sshd[1]: bad day
<34>1 2024-01-05T10:00:11.123Z web2 sshd 77 ID47 [exampleSDID@32473 iut="3"] Failed password for root from 198.51.100.7 port 22 ssh2
<999>1 2024-01-05T10:00:12Z web2 app - - - priority too large
"""


def _events(batch: EventBatch) -> pl.DataFrame:
    return pl.concat(
        [batch.events, batch.fields.select(pl.all().name.prefix("f."))], how="horizontal"
    )


def test_syslog_auth_lines_become_authentication_events() -> None:
    batch = parse_text(AUTH_LOG, "syslog", "auth.log", year=2024)
    assert batch.events.schema == pl.Schema(EVENT_SCHEMA)
    assert batch.parsed + batch.rejected == 13
    rows = {r["record_index"]: r for r in _events(batch).to_dicts()}
    accepted = rows[1]
    assert (accepted["class_uid"], accepted["status_id"], accepted["user"]) == (3002, 1, "alice")
    assert (accepted["src_ip"], accepted["src_port"]) == ("10.0.0.5", 50123)
    assert accepted["logsource_product"] == "linux" and accepted["logsource_service"] == "sshd"
    assert str(accepted["time"]) == "2024-01-05 10:00:01+00:00"
    assert (rows[2]["status_id"], rows[2]["user"], rows[2]["src_ip"]) == (2, "admin", "203.0.113.9")
    assert (rows[3]["status_id"], rows[3]["user"]) == (2, "oracle")
    assert (rows[4]["user"], rows[4]["command_line"], rows[4]["status_id"]) == (
        "alice",
        "/usr/bin/id",
        1,
    )
    assert rows[4]["logsource_service"] == "sudo" and rows[4]["f.target_user"] == "root"
    assert (rows[5]["user"], rows[5]["status_id"]) == ("bob", 2)
    assert rows[6]["status_id"] == 2 and rows[6]["logsource_service"] == "auth"
    assert (rows[7]["activity_id"], rows[7]["user"]) == (1, "alice")
    assert (rows[8]["class_uid"], rows[8]["command_line"], rows[8]["logsource_service"]) == (
        1006,
        "run-parts /etc/cron.hourly",
        "cron",
    )
    assert rows[9]["class_uid"] == 0 and rows[9]["f.message"] == "[ 1.0] eth0: link up"
    assert rows[9]["f.raw"].startswith("Jan  5 10:00:09 web1 kernel:")
    five = rows[12]
    assert (five["host"], five["user"], five["src_ip"], five["status_id"]) == (
        "web2",
        "root",
        "198.51.100.7",
        2,
    )
    assert five["f.structured_data"] == '[exampleSDID@32473 iut="3"]' and five["f.msgid"] == "ID47"
    assert five["severity_id"] == 5  # PRI 34 = auth.critical
    dead = dict(zip(batch.dead_letters["record_index"], batch.dead_letters["reason"], strict=True))
    assert dead[10].startswith("not syslog")
    assert dead[11] == "bad timestamp 'Jan 45 10:00:10'"
    assert dead[13] == "bad priority <999>"


def test_syslog_year_rollover_and_default_year(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (
        "Dec 31 23:59:59 h app: a\nJan  1 00:00:01 h app: b\nDec 31 23:59:58 h app: late\n"
        "Jan  1 00:00:02 h app: c\nMar  1 00:00:00 h app: d\nFeb 28 23:59:59 h app: late\n"
        "Mar  2 00:00:00 h app: e\nJan 10 00:00:00 h app: next year (sparse log)\n"
    )
    times = parse_text(text, "syslog", "x", year=2023).events["time"].dt.year().to_list()
    assert times == [2023, 2024, 2023, 2024, 2024, 2024, 2024, 2025]
    monkeypatch.setenv("FLEETOPS_LOG_YEAR", "2019")
    assert parse_text(text, "syslog", "x").events["time"].dt.year()[0] == 2019
    monkeypatch.delenv("FLEETOPS_LOG_YEAR")
    import datetime as dt

    last = parse_text(text, "syslog", "x").events["time"][1]
    assert last <= dt.datetime.now(dt.UTC)


def test_syslog_thunderbird_prefix_and_untagged_lines() -> None:
    text = (
        "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: session closed for user root\n"
        "Jun 19 04:09:11 combo syslogd 1.4.1: restart.\n"
    )
    batch = parse_text(text, "syslog", "tb", year=2005)
    assert batch.rejected == 0
    first, second = batch.events.to_dicts()
    assert (first["host"], first["user"], first["activity_id"], first["logsource_service"]) == (
        "dn228",
        "root",
        2,
        "cron",
    )
    assert str(first["time"]).startswith("2005-11-09 12:01:01")
    assert (second["process"], second["message"], second["logsource_service"]) == (
        "syslogd",
        "syslogd 1.4.1: restart.",
        "syslog",
    )


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["Linux", "OpenSSH", "Thunderbird"])
def test_syslog_loghub_every_line_accounted(name: str) -> None:
    path = require_shared("loghub") / name / f"{name}_2k.log"
    batch = parse_file(path, year=2005)
    lines = path.read_bytes().count(b"\n") + 1
    assert batch.parsed + batch.rejected == lines == 2000
    assert batch.rejected == 0
    assert batch.events["time"].null_count() == 0
    auth = batch.events.filter(pl.col("class_uid") == 3002)
    if name == "OpenSSH":
        failed = auth.filter(pl.col("message").str.contains("Failed password"))
        assert failed.height == 520
        assert failed["status_id"].unique().to_list() == [2]
        assert failed["src_ip"].null_count() == 0 and failed["user"].null_count() == 0
        assert auth.filter(pl.col("message").str.starts_with("Invalid user")).height == 113
    if name == "Linux":
        assert (
            auth.filter(pl.col("message").str.starts_with("authentication failure")).height == 490
        )
        assert set(batch.events["logsource_service"]) >= {"sshd", "auth", "syslog"}


COMBINED = """\
83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /presentations/x.png HTTP/1.1" 200 203023 "http://semicomplete.com/" "Mozilla/5.0 (Macintosh)"
10.1.1.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif?a=1&b=%27 HTTP/1.0" 200 2326
vhost.example:443 10.1.1.2 - - [10/Oct/2000:13:55:36 +0000] "POST /login HTTP/1.1" 401 - "-" "curl/8.0" "extra"
10.1.1.3 - - [10/Oct/2000:13:55:36 +0000] "\\x16\\x03\\x01" 400 157 "-" "-"
10.1.1.4 - - [10/Oct/2000:13:55:36 +0000] "GET /q?x=\\"a\\" HTTP/1.1" 200 5 "-" "UA \\"quoted\\""
46.118.127.106 - - [20/May/2015:12:05:17 +0000] "GET /scripts/configlib.py HTTP/1.1" 200 235 "-" "Mozilla/5.0 (compatible; Googlebot/2.1
10.1.1.5 - - [10/Oct/2000:13:55:36 +0000] "GET /unterminated
10.1.1.6 - - [99/Foo/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 1
10.1.1.7 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 2x0 1
garbage
"""


def test_access_combined_good_and_bad_lines() -> None:
    batch = parse_text(COMBINED, "access-combined", "nginx-access.log")
    rows = {r["record_index"]: r for r in _events(batch).to_dicts()}
    assert sorted(rows) == [1, 2, 3, 4, 5]
    one = rows[1]
    assert (one["class_uid"], one["activity_id"], one["http_method"], one["http_status"]) == (
        4002,
        3,
        "GET",
        200,
    )
    assert (one["src_ip"], one["bytes"], one["domain"]) == ("83.149.9.216", 203023, "service")
    assert (one["logsource_category"], one["logsource_product"]) == ("webserver", "nginx")
    assert (
        one["f.cs-user-agent"] == "Mozilla/5.0 (Macintosh)"
        and one["f.cs-referer"] == "http://semicomplete.com/"
    )
    two = rows[2]
    assert (two["user"], two["f.cs-uri-stem"], two["f.cs-uri-query"]) == (
        "frank",
        "/apache_pb.gif",
        "a=1&b=%27",
    )
    assert str(two["time"]) == "2000-10-10 20:55:36+00:00"  # -0700 → UTC
    assert two["f.cs-referer"] is None and two["bytes"] == 2326
    three = rows[3]
    assert (three["host"], three["dst_port"], three["status_id"], three["bytes"]) == (
        "vhost.example",
        443,
        2,
        None,
    )
    assert rows[4]["http_method"] is None and rows[4]["url"] == "\\x16\\x03\\x01"
    assert rows[5]["f.cs-uri-query"] == 'x="a"' and rows[5]["user_agent"] == 'UA "quoted"'
    dead = dict(zip(batch.dead_letters["record_index"], batch.dead_letters["reason"], strict=True))
    assert dead == {
        6: "truncated: no closing quote for user agent",
        7: "truncated: no closing quote for request",
        8: "bad timestamp '99/Foo/2000:13:55:36 +0000'",
        9: "bad status '2x0'",
        10: dead[10],
    }
    assert dead[10].startswith("not an access log line")


@pytest.mark.shared_data
def test_access_combined_real_file() -> None:
    path = require_shared("web_access") / "apache_logs"
    batch = parse_file(path)
    assert batch.parsed + batch.rejected == 10_000
    assert batch.dead_letters["record_index"].to_list() == [8899]
    assert batch.dead_letters["reason"][0] == "truncated: no closing quote for user agent"
    assert batch.events["http_method"].value_counts().sort("http_method").to_dicts() == [
        {"http_method": "GET", "count": 9951},
        {"http_method": "HEAD", "count": 42},
        {"http_method": "OPTIONS", "count": 1},
        {"http_method": "POST", "count": 5},
    ]
    assert batch.events["logsource_product"].unique().to_list() == ["apache"]
    assert batch.events.filter(pl.col("http_status") == 404).height == 213
    assert batch.fields.filter(pl.col("cs-uri-stem") == "/wp-login.php").height == 12


ACCESS_JSON = """\
{"time":"2024-05-01T10:00:00Z","client_ip":"1.2.3.4","method":"POST","path":"/api/login","query":"a=1","status":401,"bytes":12,"user_agent":"curl/8","user":"bob","client_id":"app1"}
{"time_local":"17/May/2015:10:05:03 +0000","remote_addr":"1.2.3.4","request":"GET /x?y=1 HTTP/1.1","status":"200"}
{"time":"yesterday","method":"GET","path":"/"}
[1,2]
{bad json
{"method":"GET","path":"/"}
{"time":1714557600,"method":"GET","path":"/","status":"abc"}
{"time":1714557600123,"method":"DELETE","path":"/v1/vehicles/1","status":204}
"""


def test_access_json() -> None:
    batch = parse_text(ACCESS_JSON, "access-json", "api.jsonl")
    rows = {r["record_index"]: r for r in _events(batch).to_dicts()}
    assert sorted(rows) == [1, 2, 8]
    assert (rows[1]["user"], rows[1]["url"], rows[1]["status_id"], rows[1]["f.client_id"]) == (
        "bob",
        "/api/login?a=1",
        2,
        "app1",
    )
    assert (rows[2]["http_method"], rows[2]["f.cs-uri-query"], rows[2]["http_status"]) == (
        "GET",
        "y=1",
        200,
    )
    assert (rows[8]["activity_id"], str(rows[8]["time"])) == (2, "2024-05-01 10:00:00.123000+00:00")
    reasons = dict(
        zip(batch.dead_letters["record_index"], batch.dead_letters["reason"], strict=True)
    )
    assert reasons[3] == "bad timestamp 'yesterday'"
    assert reasons[4] == "not a JSON object: list"
    assert reasons[5].startswith("bad JSON")
    assert reasons[6].startswith("missing time")
    assert reasons[7] == "bad status 'abc'"


def test_detect_format() -> None:
    assert detect_format(AUTH_LOG.encode(), "auth.log") == "syslog"
    assert detect_format(COMBINED.encode(), "access.log") == "access-combined"
    assert detect_format(ACCESS_JSON.encode(), "api.jsonl") == "access-json"
    assert detect_format(b"\xd4\xc3\xb2\xa1" + bytes(20), "x.pcap") == "modbus-pcap"
    assert detect_format(b'{"Event": {"System": {"EventID": 4624}}}', "sec.json") == "windows-json"
    assert detect_format(b"hello world\nnothing here\n", "notes.txt") is None
    assert detect_format(b"", "empty") is None
    assert set(FORMATS) >= {
        "syslog",
        "access-combined",
        "access-json",
        "modbus-pcap",
        "windows-json",
    }


def test_parse_file_gz_zip_and_errors(tmp_path: Path) -> None:
    gz = tmp_path / "auth.log.gz"
    gz.write_bytes(gzip.compress(AUTH_LOG.encode()))
    plain = parse_text(AUTH_LOG, "syslog", "auth.log", year=2024)
    from_gz = parse_file(gz, year=2024)
    assert from_gz.parsed == plain.parsed and from_gz.rejected == plain.rejected
    assert from_gz.events["source_file"][0] == str(gz)
    archive = tmp_path / "logs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/auth.log", AUTH_LOG)
        zf.writestr("access.log", COMBINED)
    both = parse_file(archive, year=2024)
    assert set(both.events["source_file"]) == {f"{archive}!a/auth.log", f"{archive}!access.log"}
    assert both.parsed == plain.parsed + 5
    assert "cs-method" in both.fields.columns and "program" in both.fields.columns
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello\nworld\n")
    with pytest.raises(ValidationError, match=r"notes\.txt"):
        parse_file(unknown)
    with pytest.raises(ValidationError, match="unknown format"):
        parse_file(gz, fmt="nope")
    broken = tmp_path / "cut.gz"
    broken.write_bytes(gzip.compress(AUTH_LOG.encode())[:-12])
    with pytest.raises(ValidationError, match=r"cut\.gz"):
        parse_file(broken)
