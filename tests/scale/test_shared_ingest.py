"""Ingest scaled out: workers sharing one MQTT 5 subscription, one killed with kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fleetops.core.errors import ConfigError
from fleetops.core.lake import Lake
from fleetops.telemetry.ingest import Ingestor, RawMessage, SeqIndex
from fleetops.telemetry.mqtt import publish_messages
from tests.telemetry.helpers import SIGNALS, make_vin, message, stream


def exactly_once(lake: Lake, vehicles: int, per_vehicle: int, samples: int) -> None:
    """Every published value is in the lake once, with the value the generator gave it."""
    total = vehicles * per_vehicle * samples * len(SIGNALS)
    counts = lake.query(
        "SELECT count(*) AS n, count(DISTINCT (vin, ts, signal)) AS d, count(DISTINCT vin) AS v "
        "FROM signals"
    ).to_pylist()[0]
    assert counts == {"n": total, "d": total, "v": vehicles}
    vin_no = {make_vin(v): v for v in range(vehicles)}
    rows = lake.query(
        "SELECT vin, epoch_ms(ts) AS ms, signal, value FROM signals USING SAMPLE 300 ROWS"
    ).to_pylist()
    for row in rows:
        seq, sample = divmod((row["ms"] - 1_767_225_600_000) // 1000, samples)
        k = SIGNALS.index(row["signal"])
        assert row["value"] == (vin_no[row["vin"]] * 7 + seq * 3 + sample + k * 11) % 30


def raw(vehicles: int, per_vehicle: int) -> list[RawMessage]:
    return [RawMessage(p, f"fleetops/v1/{v}/signals", v) for v, p in stream(vehicles, per_vehicle)]


def test_seq_index_merges_runs() -> None:
    index = SeqIndex(window=1000)
    for lo, hi in [(10, 12), (20, 22), (0, 3), (14, 15), (13, 13), (4, 9), (30, 30)]:
        index.add_run("V", lo, hi)
    assert index.to_json() == {"V": [[0, 15], [20, 22], [30, 30]]}
    index.add_run("V", 16, 29)
    assert index.to_json() == {"V": [[0, 30]]}
    index.merge({"V": [[40, 41]], "W": [[1, 2]]})
    assert index.verdict("W", 2) == "duplicate" and index.verdict("V", 35) is None


def test_redelivery_to_another_worker_is_dropped(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    first = Ingestor(lake, consumer="w1", group="g")
    second = Ingestor(lake, consumer="w2", group="g")
    messages = raw(3, 4)
    committed = first.ingest(messages[:7])  # w1 commits, then dies before acknowledging
    assert len(committed.keys) == 7
    # the broker gives those 7 (and the rest) to w2: only the 5 new ones land
    again = second.ingest(messages)
    assert (len(again.keys), again.duplicates) == (5, 7)
    # a restarted w1 knows what w2 committed (the shared index), also after checkpoints
    second.close()
    first.close()
    restarted = Ingestor(lake, consumer="w1", group="g")
    assert restarted.ingest(messages).duplicates == 12
    restarted.close()
    exactly_once(lake, 3, 4, 20)


def test_workers_racing_on_the_same_messages_commit_each_once(tmp_path: Path) -> None:
    """A worker the broker gave up on (a 'zombie') and its replacement commit at once."""
    lake = Lake(tmp_path)
    messages = raw(4, 30)
    workers = [Ingestor(lake, consumer=f"w{i}", group="g", checkpoint_every=3) for i in range(3)]

    def run(worker: Ingestor, offset: int) -> None:
        for lo in range(0, len(messages), 10):
            worker.ingest(messages[(lo + offset) % len(messages) :][:10])

    threads = [threading.Thread(target=run, args=(w, 10 * i)) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    new = sum(w.stats.messages - w.stats.duplicates for w in workers)
    assert new == len(messages)
    assert sum(w.stats.duplicates for w in workers) == 2 * len(messages)
    for worker in workers:
        worker.close()
    exactly_once(lake, 4, 30, 20)


def test_a_worker_name_runs_once_per_group(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    first = Ingestor(lake, consumer="w1", group="g")
    with pytest.raises(ConfigError, match="already runs"):
        Ingestor(lake, consumer="w1", group="g")
    first.close()
    Ingestor(lake, consumer="w1", group="g").close()  # free again once closed


def _worker(
    broker: str, lake: Path, name: str, idle: float, *extra: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleetops.scale",
            "ingest",
            "--broker",
            broker,
            "--lake",
            str(lake),
            "--group",
            "killtest",
            "--worker",
            name,
            "--idle-timeout",
            str(idle),
            "--batch-messages",
            "100",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _commits(lake: Path, worker: str) -> int:
    folder = lake / "_ingest" / "killtest" / worker / "commits"
    return len(list(folder.glob("*.json"))) if folder.is_dir() else 0


@pytest.mark.broker
def test_two_workers_one_killed_mid_stream_lose_and_duplicate_nothing(
    mosquitto: str, tmp_path: Path
) -> None:
    lake_dir = tmp_path / "lake"
    vehicles, per_vehicle, samples = 40, 60, 20
    # first short runs create each worker's persistent session and shared subscription
    for name in ("w1", "w2"):
        first = _worker(mosquitto, lake_dir, name, idle=0.5)
        assert first.wait(30) == 0, first.stderr.read() if first.stderr else ""

    victim = _worker(mosquitto, lake_dir, "w1", idle=30)
    other = _worker(mosquitto, lake_dir, "w2", idle=4)
    time.sleep(1.0)  # both connected
    publisher = threading.Thread(
        target=publish_messages, args=(mosquitto, stream(vehicles, per_vehicle, samples))
    )
    publisher.start()
    deadline = time.monotonic() + 60
    while _commits(lake_dir, "w1") < 3:  # kill it in the middle of the stream
        assert time.monotonic() < deadline, "worker w1 committed nothing"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    landed = Lake(lake_dir).query("SELECT count(*) AS n FROM signals").to_pylist()[0]["n"]
    assert landed < vehicles * per_vehicle * samples * len(SIGNALS)  # really mid-stream
    publisher.join(120)

    # the supervisor restarts w1: its session gets back what it held unacknowledged
    restarted = _worker(mosquitto, lake_dir, "w1", idle=4)
    assert restarted.wait(120) == 0, restarted.stderr.read() if restarted.stderr else ""
    assert other.wait(120) == 0, other.stderr.read() if other.stderr else ""
    lake = Lake(lake_dir)
    exactly_once(lake, vehicles, per_vehicle, samples)
    writers = {p.name.split("-")[1] for p in lake.files("signals")}
    assert writers == {"killtest.w1", "killtest.w2"}  # both shared the stream


@pytest.mark.broker
def test_a_retired_worker_hands_its_share_back(mosquitto: str, tmp_path: Path) -> None:
    lake_dir = tmp_path / "lake"
    for name in ("w1", "w2"):  # both sessions exist, then both are offline
        first = _worker(mosquitto, lake_dir, name, idle=0.5)
        assert first.wait(30) == 0, first.stderr.read() if first.stderr else ""
    vehicles = 10
    publish_messages(mosquitto, stream(vehicles, 20))  # the broker splits it between them
    retired = _worker(mosquitto, lake_dir, "w1", 1.0, "--retire")
    assert retired.wait(60) == 0, retired.stderr.read() if retired.stderr else ""
    # w1 has left: everything published now is w2's, none waits in w1's ended session
    later = (message(v, seq) for seq in range(20, 40) for v in range(vehicles))
    publish_messages(mosquitto, later)
    survivor = _worker(mosquitto, lake_dir, "w2", idle=2)
    assert survivor.wait(60) == 0, survivor.stderr.read() if survivor.stderr else ""
    lake = Lake(lake_dir)
    exactly_once(lake, vehicles, 40, 20)
    w1_last = lake.query(
        "SELECT max(epoch_ms(ts)) AS ms, count(*) AS n FROM read_parquet(?)",
        [[str(f) for f in lake.files("signals") if "killtest.w1-" in f.name]],
    ).to_pylist()[0]
    assert w1_last["n"] > 0  # it did drain its share of the first stream
    assert w1_last["ms"] < 1_767_225_600_000 + 20 * 20 * 1000  # and took nothing later
