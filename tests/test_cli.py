"""The command line as a user drives it: real commands, real files, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fleetops.cli import app
from fleetops.core.lake import Lake

runner = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_every_command_has_help() -> None:
    for command in (
        "simulate",
        "ingest",
        "query",
        "demo",
        "tables",
        "catalog",
        "broker",
        "footprint plan",
        "ids evaluate",
        "maintenance cmapss",
        "can simulate",
        "can decode",
    ):
        assert "Usage" in run(*command.split(), "--help")


def test_demo_end_to_end_on_a_small_fleet(tmp_path: Path) -> None:
    output = run("demo", "--out", str(tmp_path), "--scenario", "smoke")
    assert "report" in output
    report = (tmp_path / "report.html").read_text()
    assert report.count("data:image/png;base64,") >= 4
    lake = Lake(tmp_path / "lake")
    counts = lake.query(
        "SELECT (SELECT count(*) FROM vehicles) AS v, (SELECT count(*) FROM signals) AS s, "
        "(SELECT count(*) FROM can_frames) AS c, (SELECT count(*) FROM failures) AS f"
    ).to_pylist()[0]
    assert counts["v"] == 10 and counts["s"] > 100_000 and counts["c"] > 10_000 and counts["f"] > 0
    assert "ids attacks detected" in output


def test_demo_intrusion_detector_finds_each_simulated_attack(tmp_path: Path) -> None:
    from fleetops.demo import watch_can_bus
    from fleetops.report import can_section
    from fleetops.sim import load_scenario, simulate_can

    section = load_scenario("demo").can
    sim = simulate_can(section)
    alerts = watch_can_bus(section, sim.frames).to_pylist()
    for attack in sim.attacks.to_pylist():
        during = [
            a for a in alerts if a["time"] <= attack["end"] and a["last_time"] >= attack["start"]
        ]
        assert during, f"{attack['attack']} at {attack['start']:%H:%M:%S} not detected"

    # The report's attack table says what the detector reported during each attack.
    lake = Lake(tmp_path / "lake")
    lake.write("can_frames", sim.frames.to_arrow())
    lake.replace("can_attacks", sim.attacks)
    lake.replace("ids_alerts", watch_can_bus(section, sim.frames))
    can = can_section(lake)
    assert can is not None
    header, rows = can.tables[0]
    assert header[-1] == "IDS alerts" and len(rows) == sim.attacks.num_rows
    assert all(row[-1] != "—" for row in rows)
    spoofing = next(row for row in rows if row[0] == "spoofing")
    assert "spoofing" in spoofing[-1] and "VehicleSpeed" in spoofing[-1]


def test_simulate_to_messages_then_ingest_equals_simulate_to_lake(tmp_path: Path) -> None:
    run("simulate", "--scenario", "smoke", "--days", "1", "--lake", str(tmp_path / "direct"))
    messages = tmp_path / "m.jsonl"
    run(
        "simulate",
        "--scenario",
        "smoke",
        "--days",
        "1",
        "--lake",
        str(tmp_path / "via"),
        "--messages",
        str(messages),
    )
    run("ingest", str(messages), "--lake", str(tmp_path / "via"))
    sql = "SELECT vin, ts, signal, value FROM signals ORDER BY ALL"
    assert Lake(tmp_path / "direct").query(sql).equals(Lake(tmp_path / "via").query(sql))


def test_query_formats(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    run("simulate", "--scenario", "smoke", "--days", "1", "--lake", lake)
    rows = json.loads(
        run("query", "SELECT vin, model FROM vehicles ORDER BY vin", "--lake", lake, "-f", "json")
    )
    assert len(rows) == 10 and set(rows[0]) == {"vin", "model"}
    csv = run("query", "SELECT count(*) AS n FROM vehicles", "--lake", lake, "-f", "csv")
    assert csv.splitlines() == ['"n"', "10"]
    target = tmp_path / "out.parquet"
    run("query", "SELECT * FROM dtcs", "--lake", lake, "-f", "parquet", "-o", str(target))
    assert pq.read_table(target).num_rows > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("query", "SELECT * FROM no_such_table"), "query failed"),
        (("simulate", "--scenario", "no-such-scenario"), "no shipped scenario"),
        (("simulate", "--vehicles", "0"), "must be at least 1"),
        (("ingest",), "either message FILES or --broker"),
        (("can", "decode", "missing.log", "--output", "x.parquet"), "does not exist"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    output = run(*args, "--lake", str(tmp_path), code=2) if args[0] != "can" else run(*args, code=2)
    assert message in " ".join(output.split())


def test_unreachable_broker_exits_3(tmp_path: Path) -> None:
    output = run("ingest", "--broker", "mqtt://127.0.0.1:1", "--lake", str(tmp_path), code=3)
    assert "cannot reach MQTT broker" in output


def test_can_simulate_then_decode_into_the_lake(tmp_path: Path) -> None:
    log = tmp_path / "bus.log"
    truth = tmp_path / "truth.csv"
    output = run("can", "simulate", str(log), "--scenario", "demo", "--truth", str(truth))
    assert "injected" in output and log.stat().st_size > 0
    assert truth.read_text().count("\n") == 7  # header + six attacks
    lake = str(tmp_path / "lake")
    run("can", "decode", str(log), "--vin", "1M8GDM9AXKP042788", "--lake", lake)
    speeds = (
        Lake(tmp_path / "lake")
        .query(
            "SELECT count(*) AS n, max(value) AS top FROM signals WHERE signal = 'Vehicle.Speed'"
        )
        .to_pylist()[0]
    )
    assert speeds["n"] > 100 and 0 < speeds["top"] < 250
