"""The columnar fast paths give exactly what the parsers gave before them.

``legacy_parsers`` is a frozen copy of the parsers as they were before the fast paths
(one full regex per header, every column from it); each case parses the same text with
both and compares events, native fields and dead letters (reasons, line numbers) frame
for frame. Inputs: the real shared logs, the generated scenario files, the unit tests'
hand-written bad lines, and real lines mutated at random (cut short, a character
inserted) so that lines on both sides of the fast path's acceptance are covered.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from fleetops.core.ocsf import EventBatch
from fleetops.security.soc.parsers.access import parse_access_combined, parse_access_json
from fleetops.security.soc.parsers.common import parse_time
from fleetops.security.soc.parsers.ot import parse_ot_json
from fleetops.security.soc.parsers.syslog import parse_syslog
from fleetops.security.soc.parsers.vehicle import parse_vehicle_json
from fleetops.security.soc.scenarios import generate
from tests.conftest import require_shared
from tests.security.soc.legacy_parsers import access as old_access
from tests.security.soc.legacy_parsers import ot as old_ot
from tests.security.soc.legacy_parsers import syslog as old_syslog
from tests.security.soc.legacy_parsers import vehicle as old_vehicle
from tests.security.soc.test_parsers import ACCESS_JSON, AUTH_LOG, COMBINED

Parser = Callable[[str, str], EventBatch]

PAIRS: dict[str, tuple[Parser, Parser]] = {
    "access-combined": (parse_access_combined, old_access.parse_access_combined),
    "access-json": (parse_access_json, old_access.parse_access_json),
    "syslog": (
        lambda text, name: parse_syslog(text, name, year=2005),
        lambda text, name: old_syslog.parse_syslog(text, name, year=2005),
    ),
    "ot-json": (parse_ot_json, old_ot.parse_ot_json),
    "vehicle-json": (parse_vehicle_json, old_vehicle.parse_vehicle_json),
}
# Characters that sit on the edges of the regexes: quotes, escapes, brackets, Unicode
# and ASCII whitespace, separators of the syslog tag and the JSON syntax.
_NOISE = ' "\\[]:<>()-?{},\t\u00a0\u2003é\x1f0'


def assert_same(fmt: str, text: str, name: str = "nginx-access.log") -> EventBatch:
    new, old = (parse(text, name) for parse in PAIRS[fmt])
    assert_frame_equal(new.events, old.events)
    assert_frame_equal(new.fields, old.fields)
    assert_frame_equal(new.dead_letters, old.dead_letters)
    return new


def mutated(text: str, seed: int, share: float = 0.3) -> str:
    """``text`` with about ``share`` of its lines cut short or given a noise character."""
    rng = random.Random(seed)
    out = []
    for line in text.split("\n"):
        if not line or rng.random() >= share:
            out.append(line)
            continue
        at = rng.randrange(len(line) + 1)
        cut = rng.random() < 0.3
        out.append(line[:at] if cut else line[:at] + rng.choice(_NOISE) + line[at:])
    return "\n".join(out)


def _shared_text(folder: str, name: str) -> str:
    return (require_shared(folder) / name).read_text(encoding="utf-8", errors="replace")


@pytest.mark.parametrize(("fmt", "text"), [("syslog", AUTH_LOG), ("access-combined", COMBINED)])
def test_hand_written_lines(fmt: str, text: str) -> None:
    assert_same(fmt, text)
    assert_same(fmt, text.replace("\n", "\r\n") + "\n\n  \n")


def test_access_json_hand_written() -> None:
    assert_same("access-json", ACCESS_JSON, "api.jsonl")


def test_access_combined_edge_lines() -> None:
    lines = [
        'vh.example:443 10.0.0.1 - bob [10/Oct/2000:13:55:36 -0700] "GET /a?b=1 HTTP/1.1" 200 5 "-" "UA"',
        '::1 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "UA"',
        '2001:db8::1 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "UA"',
        '10.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 5',
        '10.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "UA" 0.003 "x"',
        '10.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "UA"   ',
        '10.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET /\\x22q\\x22 HTTP/1.1" 200 5 "-" "UA"',
        '10.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "-" 400 0 "-" "-"',
        '10.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "" 400 - "-" "-"',
        '10.0.0.1\t- - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "UA"',
        '10.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "get /x?y?z http/1.1" 999 5 "-" "UA"',
        '10.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "UA"\u00a0',
        'host:80 [a] b c [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "UA"',
    ]
    assert_same("access-combined", "\n".join(lines))


@pytest.mark.shared_data
@pytest.mark.parametrize("seed", [None, 1, 2])
def test_access_combined_real_file(seed: int | None) -> None:
    text = _shared_text("web_access", "apache_logs")
    assert_same("access-combined", text if seed is None else mutated(text, seed), "apache_logs")


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["Linux", "OpenSSH", "Thunderbird"])
@pytest.mark.parametrize("seed", [None, 3])
def test_syslog_real_files(name: str, seed: int | None) -> None:
    text = _shared_text("loghub", f"{name}/{name}_2k.log")
    assert_same("syslog", text if seed is None else mutated(text, seed), name)


def test_syslog_header_styles() -> None:
    lines = [
        "<34>1 2024-01-05T10:00:11.123Z web2 sshd 77 ID47 - Accepted password for bob from 10.0.0.1 port 22 ssh2",
        '<13>1 2024-01-05T10:00:11+02:00 web2 - - - [a@1 x="]"][b@2] \ufeffhello',
        "<13>1 - web2 app - - -",
        "2024-01-05T10:00:11,123+0100 web3 sshd[5]: Failed password for root from 10.0.0.2 port 1 ssh2",
        "<86>2024-01-05 10:00:11 web3 su: (to root) alice on pts/0",
        "<191>Jan  5 10:00:01 web1 sudo:    alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/id",
        "<192>Jan  5 10:00:01 web1 x: y",
        "Jan  5 10:00:01.250 web1 -- MARK --",
        "Jan  5 10:00:01 web1/web1 login(pam_unix)[1]: ROOT LOGIN ON tty1 FROM 10.0.0.3",
        "Dec 31 23:59:59 web1 kernel: [1.0] from 10.0.0.4",
        "Jan  1 00:00:01 web1 sshd[1]: Invalid user x from 10.0.0.5",
        "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: session closed for user root",
        "Feb 30 10:00:00 web1 x: impossible date",
        "Jan  5 10:00:01 web1 untagged message here",
        "Jan  5 10:00:01 web1",
    ]
    assert_same("syslog", "\n".join(lines))
    for year in (None, 1999):
        new = parse_syslog("\n".join(lines), "x", year=year)
        old = old_syslog.parse_syslog("\n".join(lines), "x", year=year)
        assert_frame_equal(new.events, old.events)
        assert_frame_equal(new.dead_letters, old.dead_letters)


@pytest.fixture(scope="module")
def scenario_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    live = generate(6_000, seed=3, days=2, history_days=1).split()[1]
    return live.write(tmp_path_factory.mktemp("scenario"))


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("auth.log", "syslog"),
        ("ota_access.log", "access-combined"),
        ("services_access.log", "access-combined"),
        ("ot.jsonl", "ot-json"),
        ("vehicles.jsonl", "vehicle-json"),
    ],
)
@pytest.mark.parametrize("seed", [None, 4])
def test_scenario_files(
    scenario_files: dict[str, Path], name: str, fmt: str, seed: int | None
) -> None:
    text = scenario_files[name].read_text(encoding="utf-8")
    assert_same(fmt, text if seed is None else mutated(text, seed), name)


def test_parse_time_fast_path() -> None:
    from tests.security.soc.legacy_parsers.common import parse_time as old_parse_time

    stamps = [
        "2026-03-03T00:00:00.592+00:00",
        "2026-03-03T00:00:00Z",
        "2026-03-03T00:00:00.123456789Z",
        "2026-03-03T00:00:00.5-07:30",
        "2026-03-03T00:00:00z",
        "2026-03-03 00:00:00",
        "2026-03-03 00:00:00.25+01:00",
        " 2026-03-03T00:00:00Z ",
        "2026-13-03T00:00:00Z",
        "2026-02-30T00:00:00+00:00",
        "2026-03-03T24:00:00Z",
        "2026-03-03T00:00:00+0100",
        "2026-03-03T00:00:00",
        "1714557600",
        "1714557600123",
        "1714557600123456",
        "1.5e9",
        "yesterday",
        "",
        None,
    ]
    frame = pl.DataFrame({"t": stamps}, schema={"t": pl.String()})
    assert_frame_equal(
        frame.select(parse_time(pl.col("t"))), frame.select(old_parse_time(pl.col("t")))
    )
