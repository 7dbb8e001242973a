"""End to end through Mosquitto on loopback: vehicles publish, ingest commits to the lake.

    .venv/bin/python -m bench.mqtt_e2e [--messages 4000] [--broker mqtt://127.0.0.1:1883]

Without ``--broker`` it starts a private mosquitto on a free port. Ours is
``fleetops ingest --broker`` in its own process (decode, validate, de-duplicate, commit,
then acknowledge); throughput is values committed per second from the first publish
to the last commit. The baseline, in the same run, is a bare paho QoS 1 subscriber in
its own process that only counts the same messages: the transport's ceiling here.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import Row, print_table
from bench.ingest import T0_MS, float_signals, vins
from fleetops.core.envelope import encode_message
from fleetops.core.lake import Lake
from fleetops.telemetry.broker import LocalMosquitto
from fleetops.telemetry.mqtt import BrokerAddress, publish_messages

SAMPLES, SIGNAL_COUNT = 60, 8


def payloads(count: int) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(3)
    paths = float_signals(SIGNAL_COUNT)
    fleet = vins(500)
    out = []
    for n in range(count):
        vin, seq = fleet[n % len(fleet)], n // len(fleet)
        ts = T0_MS + (seq * SAMPLES + np.arange(SAMPLES)) * 1000
        signals = {p: rng.uniform(0, 30, SAMPLES).round(2) for p in paths}
        out.append((vin, encode_message(vin, seq, ts, signals)))
    return out


def counting_subscriber(broker: str, expected: int, ready: Event, done: Queue[float]) -> None:
    address = BrokerAddress.parse(broker)
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-counter"
    )
    received = 0
    first = 0.0

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        nonlocal received, first
        if received == 0:
            first = time.perf_counter()
        received += 1
        if received == expected:
            done.put(time.perf_counter() - first)

    client.on_message = on_message
    client.connect(address.host, address.port)
    client.subscribe("fleetops/v1/+/signals", qos=1)
    client.loop_start()
    ready.set()
    time.sleep(600)


def run_baseline(broker: str, messages: list[tuple[str, bytes]]) -> float:
    ready: Event = mp.Event()
    done: Queue[float] = mp.Queue()
    worker = mp.Process(target=counting_subscriber, args=(broker, len(messages), ready, done))
    worker.start()
    ready.wait(10)
    time.sleep(0.3)
    start = time.perf_counter()
    publish_messages(broker, messages)
    done.get(timeout=300)
    elapsed = time.perf_counter() - start
    worker.kill()
    return elapsed


def run_ours(broker: str, messages: list[tuple[str, bytes]], lake: Path) -> float:
    command = [
        sys.executable,
        "-m",
        "fleetops",
        "ingest",
        "--broker",
        broker,
        "--lake",
        str(lake),
        "--consumer",
        "bench",
        "--max-messages",
        str(len(messages)),
    ]
    subprocess.run([*command[:-2], "--idle-timeout", "0.3"], check=True, capture_output=True)
    ingest = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # connected and subscribed
    start = time.perf_counter()
    publish_messages(broker, messages)
    if ingest.wait(300) != 0:
        raise RuntimeError("ingest failed")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--broker")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fleetops-e2e-"))
    private = None if args.broker else LocalMosquitto(folder=work / "broker").start()
    try:
        broker = args.broker or (private.url if private else "")
        messages = payloads(args.messages)
        values = args.messages * SAMPLES * SIGNAL_COUNT
        base = values / run_baseline(broker, messages)
        ours_s = run_ours(broker, messages, work / "lake")
        stored = Lake(work / "lake").query("SELECT count(*) AS n FROM signals").to_pylist()[0]["n"]
        if stored != values:
            raise RuntimeError(f"lake holds {stored} values, expected {values}")
        rows = [Row("publish → broker → committed lake", values / ours_s, base, "values/s")]
    finally:
        if private is not None:
            private.stop()
        shutil.rmtree(work, ignore_errors=True)
    print_table(
        f"MQTT end to end on loopback, {args.messages:,} messages × {SAMPLES * SIGNAL_COUNT} values "
        "(goal ≥ 100,000 values/s)",
        rows,
        "fleetops ingest",
        "bare paho subscriber",
    )


if __name__ == "__main__":
    main()
