"""``fleetops soc``: the detect contract (JSONL), the incident workflow, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from fleetops.security.soc.cli import soc_app
from fleetops.security.soc.scenarios import generate

PACK = Path(__file__).resolve().parents[3] / "src" / "fleetops" / "security" / "soc" / "rules"
runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    history, live = generate(20_000, seed=5).split()
    root = tmp_path_factory.mktemp("soc")
    return {"history": history.write(root / "history"), "live": live.write(root / "live")}


def _run(args: list[str], env: dict[str, str]) -> Any:
    return runner.invoke(soc_app, args, env=env, catch_exceptions=False)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "FLEETOPS_DATA": str(tmp_path / "data"),
        "FLEETOPS_SOC_DSN": "",
        "FLEETOPS_ACTOR": "tester",
        "COLUMNS": "200",
    }


def test_detect_writes_the_findings_contract_and_saves_incidents(
    files: dict[str, dict[str, Path]], env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "findings.jsonl"
    args = ["detect", "--rules", str(PACK), "--out", str(out)]
    for path in files["live"].values():
        args += ["--input", str(path)]
    for path in files["history"].values():
        args += ["--baseline", str(path)]
    result = _run(args, env)
    assert result.exit_code == 0, result.output
    lines = out.read_bytes().splitlines()
    records = [orjson.loads(line) for line in lines]
    assert records
    keys = {
        "finding_uid",
        "time",
        "source",
        "rule_id",
        "model",
        "title",
        "techniques",
        "severity_id",
        "severity",
        "domain",
        "entities",
        "score",
        "source_file",
        "record_index",
        "incident_id",
        "evidence",
    }
    live_files = {str(p) for p in files["live"].values()}
    for rec in records:
        assert set(rec) == keys
        assert rec["source"] in ("sigma", "anomaly")
        assert rec["rule_id"]
        assert rec["source_file"] in live_files
        assert isinstance(rec["record_index"], int) and rec["record_index"] >= 1
        assert isinstance(rec["entities"], dict) and rec["entities"]
        assert all(isinstance(t, str) for t in rec["techniques"])
    # the record a finding names is the line it came from
    plc = next(r for r in records if r["rule_id"] == "anomaly.plc")
    line = files["live"]["ot.jsonl"].read_text().splitlines()[plc["record_index"] - 1]
    assert plc["entities"]["device"] in line and plc["entities"]["src_ip"] in line
    assert any(r["source"] == "sigma" and r["techniques"] for r in records)
    incidents = {r["incident_id"] for r in records if r["incident_id"]}
    assert len(incidents) == 4  # one per scenario

    listed = _run(["incidents", "list", "--json"], env)
    assert listed.exit_code == 0, listed.output
    rows = orjson.loads(listed.stdout)
    assert {r["incident_id"] for r in rows} == incidents
    first = rows[0]["incident_id"]
    assert _run(["incidents", "assign", first, "alice"], env).exit_code == 0
    assert _run(["incidents", "status", first, "acknowledged"], env).exit_code == 0
    assert _run(["incidents", "comment", first, "on it"], env).exit_code == 0
    shown = orjson.loads(_run(["incidents", "show", first, "--json"], env).stdout)
    assert (shown["assignee"], shown["status"]) == ("alice", "acknowledged")
    assert shown["comments"][0] == {**shown["comments"][0], "author": "tester", "body": "on it"}
    text = _run(["incidents", "show", first], env)
    assert text.exit_code == 0 and "kill chain" in text.stdout
    assert (
        _run(["incidents", "list", "--status", "acknowledged", "--json"], env).stdout.count(first)
        == 1
    )


def test_ingest_counts_parsed_and_dead_letters(tmp_path: Path, env: dict[str, str]) -> None:
    log = tmp_path / "auth.log"
    log.write_text(
        "<38>1 2026-03-02T10:00:00.000Z srv1 sshd 42 - - Accepted password for bob from "
        "10.0.0.1 port 5000 ssh2\nthis is not syslog\n"
    )
    result = _run(["ingest", str(log), "--format", "syslog", "--lake", str(tmp_path / "lake")], env)
    assert result.exit_code == 0, result.output
    assert "auth.log" in result.stdout
    assert (tmp_path / "lake" / "soc_events").is_dir()
    assert (tmp_path / "lake" / "soc_dead_letters").is_dir()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["detect", "--input", "missing.log", "--out", "x.jsonl"], "is not a file"),
        (["detect", "--input", "{log}", "--out", "x.jsonl", "--format", "nope"], "unknown format"),
        (
            ["detect", "--input", "{log}", "--out", "x.jsonl", "--rules", "nowhere/"],
            "does not exist",
        ),
        (["detect", "--input", "{log}", "--out", "x.jsonl", "--no-models"], "nothing to detect"),
        (["ingest", "missing.log"], "is not a file"),
        (["incidents", "show", "INC-NONE"], "no incident"),
        (["incidents", "status", "INC-NONE", "closed"], "unknown status"),
        (["incidents", "list", "--status", "closed"], "unknown status"),
    ],
)
def test_bad_input_exits_2(
    args: list[str], message: str, tmp_path: Path, env: dict[str, str]
) -> None:
    log = tmp_path / "a.log"
    log.write_text("x\n")
    result = _run([a.replace("{log}", str(log)) for a in args], env)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_unreachable_postgres_exits_3(env: dict[str, str]) -> None:
    result = _run(["incidents", "list", "--dsn", "postgresql://x@127.0.0.1:1/none"], env)
    assert result.exit_code == 3, result.output


def test_rules_app_is_mounted() -> None:
    result = runner.invoke(soc_app, ["rules", "--help"])
    assert result.exit_code == 0
    assert "test" in result.stdout
