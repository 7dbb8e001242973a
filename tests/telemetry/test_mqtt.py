"""Ingest through a real Mosquitto broker, including a real ``kill -9`` mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fleetops.core.errors import ServiceUnavailableError
from fleetops.core.lake import Lake
from fleetops.telemetry.ingest import Ingestor
from fleetops.telemetry.mqtt import BrokerAddress, MqttIngest, publish_messages

from .helpers import SIGNALS, make_vin, stream

pytestmark = pytest.mark.broker


def expected_rows(lake: Lake, vehicles: int, per_vehicle: int, samples: int) -> None:
    """Every value present exactly once, and equal to what was published."""
    rows = lake.query(
        """
        SELECT count(*) AS n, count(DISTINCT (vin, ts, signal)) AS distinct_rows,
               count(DISTINCT vin) AS vins
        FROM signals
        """
    ).to_pylist()[0]
    total = vehicles * per_vehicle * samples * len(SIGNALS)
    assert rows == {"n": total, "distinct_rows": total, "vins": vehicles}
    # spot-check values against the generator's formula: (v*7 + seq*3 + sample + k*11) % 30
    check = lake.query(
        "SELECT vin, epoch_ms(ts) AS ms, signal, value FROM signals USING SAMPLE 200 ROWS"
    ).to_pylist()
    vin_no = {make_vin(v): v for v in range(vehicles)}
    for row in check:
        index = (row["ms"] - 1_767_225_600_000) // 1000
        seq, sample = divmod(index, samples)
        k = SIGNALS.index(row["signal"])
        assert row["value"] == (vin_no[row["vin"]] * 7 + seq * 3 + sample + k * 11) % 30


def test_broker_url_parsing() -> None:
    address = BrokerAddress.parse("mqtts://user:p%40ss@broker.example:8884")
    assert (address.host, address.port, address.tls) == ("broker.example", 8884, True)
    assert (address.username, address.password) == ("user", "p@ss")
    assert BrokerAddress.parse("localhost").port == 1883


def test_unreachable_broker_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ServiceUnavailableError, match="cannot reach MQTT broker"):
        publish_messages("mqtt://127.0.0.1:1", iter([]))


def test_publish_and_ingest_round_trip(mosquitto: str, tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    source = MqttIngest(mosquitto, Ingestor(lake), client_id="round-trip")
    result: dict[str, object] = {}
    worker = threading.Thread(target=lambda: result.update(stats=source.run(idle_timeout=2)))
    worker.start()
    time.sleep(0.5)  # let it subscribe
    assert publish_messages(mosquitto, stream(5, 10)) == 50
    worker.join(30)
    assert not worker.is_alive()
    expected_rows(lake, 5, 10, 20)


def _ingest_process(broker: str, lake: Path, idle: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleetops",
            "ingest",
            "--broker",
            broker,
            "--lake",
            str(lake),
            "--consumer",
            "killtest",
            "--idle-timeout",
            str(idle),
            "--batch-messages",
            "100",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _committed_batches(lake: Path) -> int:
    folder = lake / "_ingest" / "killtest" / "commits"
    return len(list(folder.glob("*.json"))) if folder.is_dir() else 0


@pytest.mark.slow
def test_kill_9_mid_stream_loses_nothing_and_duplicates_nothing(
    mosquitto: str, tmp_path: Path
) -> None:
    lake_dir = tmp_path / "lake"
    vehicles, per_vehicle, samples = 40, 60, 20
    # a first short run creates the persistent session and its subscription
    first = _ingest_process(mosquitto, lake_dir, idle=0.5)
    assert first.wait(30) == 0, first.stderr.read() if first.stderr else ""

    publisher = threading.Thread(
        target=publish_messages, args=(mosquitto, stream(vehicles, per_vehicle, samples))
    )
    victim = _ingest_process(mosquitto, lake_dir, idle=30)
    publisher.start()
    deadline = time.monotonic() + 60
    while _committed_batches(lake_dir) < 3:  # kill it in the middle of the stream
        assert time.monotonic() < deadline, "ingest committed nothing"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    landed = Lake(lake_dir).query("SELECT count(*) AS n FROM signals").to_pylist()[0]["n"]
    assert landed < vehicles * per_vehicle * samples * len(SIGNALS)  # really mid-stream
    publisher.join(120)

    survivor = _ingest_process(mosquitto, lake_dir, idle=3)
    assert survivor.wait(120) == 0, survivor.stderr.read() if survivor.stderr else ""
    print(survivor.stdout.read().decode() if survivor.stdout else "")
    expected_rows(Lake(lake_dir), vehicles, per_vehicle, samples)


def test_local_broker_serves_and_stops(tmp_path: Path) -> None:
    from fleetops.telemetry.broker import LocalMosquitto, find_mosquitto

    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    with LocalMosquitto(folder=tmp_path) as broker:
        assert publish_messages(broker.url, stream(1, 2)) == 2
    with pytest.raises(ServiceUnavailableError):
        publish_messages(broker.url, stream(1, 1))
