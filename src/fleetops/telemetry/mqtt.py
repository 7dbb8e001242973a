"""MQTT transport: vehicles publish on one topic per VIN, ingest subscribes and commits.

Topics are ``<prefix>/<VIN>/signals`` (default prefix ``fleetops/v1``). Ingest uses MQTT 5
with a persistent session (``clean_start=False`` and a session expiry) and QoS 1 with
*manual* acknowledgement: a PUBACK leaves only after the message's batch is committed to
the lake, so a crash at any point makes the broker deliver the unacknowledged messages
again, and the ingestor's ``(vin, seq)`` index drops those it had already committed.

Broker settings that matter (mosquitto): ``max_queued_messages`` bounds what is kept for
an ingest that is down (0 = no bound); for MQTT 5 clients the number of unacknowledged
messages in flight is the client's *Receive Maximum*, which ingest sets to 65535 so that
whole batches can be held unacknowledged.

Scaled out, several ingest workers share one subscription (``share_group``): MQTT 5
shared subscriptions (``$share/<group>/<prefix>/+/signals``) make the broker hand each
message to one worker of the group. Each worker keeps its own persistent session (client
id per worker) and writes its own files; the ingestor's group mode de-duplicates across
workers (see ``ingest.py`` and docs/scale.md).
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any
from urllib.parse import unquote, urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleetops.core.errors import ConfigError, ServiceUnavailableError
from fleetops.telemetry.ingest import Ingestor, IngestStats, RawMessage

DEFAULT_PREFIX = "fleetops/v1"
SESSION_EXPIRY_S = 7 * 24 * 3600
RECEIVE_MAXIMUM = 65535


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://…`` (TLS)."""
        parsed = urlparse(url if "://" in url else f"mqtt://{url}")
        if parsed.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ConfigError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
        if not parsed.hostname:
            raise ConfigError(f"broker URL {url!r} names no host")
        tls = parsed.scheme in ("mqtts", "ssl")
        try:
            port = parsed.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise ConfigError(f"broker URL {url!r}: {exc}") from None
        return cls(
            host=parsed.hostname,
            port=port,
            tls=tls,
            username=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
        )


def signals_topic(vin: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}/{vin}/signals"


def _client(address: BrokerAddress, client_id: str, *, manual_ack: bool = False) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if address.username:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set()
    return client


def _connect(
    client: mqtt.Client,
    address: BrokerAddress,
    *,
    persistent: bool,
    on_connected: Callable[[mqtt.Client], None] | None = None,
) -> None:
    """Connect and start the network loop; ``on_connected`` runs on every (re)connect."""
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    if persistent:
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        elif on_connected is not None:
            on_connected(client)
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(
            address.host,
            address.port,
            keepalive=30,
            clean_start=not persistent,
            properties=properties,
        )
    except OSError as exc:
        raise ServiceUnavailableError(
            f"cannot reach MQTT broker {address.host}:{address.port}: {exc}"
        ) from exc
    client.loop_start()
    if not connected.wait(10):
        client.loop_stop()
        raise ServiceUnavailableError(
            f"MQTT broker {address.host}:{address.port} did not answer CONNECT"
        )
    if refused:
        client.loop_stop()
        raise ServiceUnavailableError(
            f"MQTT broker {address.host}:{address.port} refused: {refused[0]}"
        )


class MqttIngest:
    """Subscribes to vehicle topics and commits what arrives through an :class:`Ingestor`."""

    def __init__(
        self,
        broker: str,
        ingestor: Ingestor,
        *,
        prefix: str = DEFAULT_PREFIX,
        client_id: str = "fleetops-ingest",
        batch_messages: int = 5000,
        batch_seconds: float = 0.5,
        share_group: str | None = None,
    ) -> None:
        self.address = BrokerAddress.parse(broker)
        self.ingestor = ingestor
        self.topic = f"{prefix}/+/signals"
        if share_group is not None:
            if not share_group or any(c in share_group for c in "/+#"):
                raise ConfigError(f"share group {share_group!r} may not be empty or hold / + #")
            self.topic = f"$share/{share_group}/{self.topic}"
        self.client_id = client_id
        self.batch_messages = batch_messages
        self.batch_seconds = batch_seconds
        self._inbox: queue.Queue[tuple[int, mqtt.MQTTMessage]] = queue.Queue()
        self._generation = 0  # bumps on every (re)connect: older message ids are void
        self._stop = threading.Event()

    def stop(self) -> None:
        """Finish the batch in hand, acknowledge it and leave (safe from a signal handler)."""
        self._stop.set()

    def run(
        self,
        *,
        idle_timeout: float | None = None,
        max_messages: int | None = None,
        on_batch: Callable[[IngestStats], None] | None = None,
        handle_signals: bool = False,
        retire: bool = False,
    ) -> IngestStats:
        """Ingest until stopped, idle for ``idle_timeout`` s, or ``max_messages`` are in.

        ``retire`` takes this worker out of its share group for good: it resumes its
        session, unsubscribes (the broker stops assigning it messages), commits what its
        session still held until idle, then ends the session. Needs ``idle_timeout``.
        """
        if retire and idle_timeout is None:
            raise ConfigError("retiring an ingest worker needs an idle timeout")
        client = _client(self.address, self.client_id, manual_ack=True)

        def on_connected(client: mqtt.Client) -> None:
            self._generation += 1
            if retire:
                client.unsubscribe(self.topic)
            else:
                client.subscribe(self.topic, qos=1)

        def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
            self._inbox.put((self._generation, message))

        client.on_message = on_message
        if handle_signals:
            self._install_signal_handlers()
        _connect(client, self.address, persistent=True, on_connected=on_connected)
        last_message = time.monotonic()
        drained = False
        try:
            while not self._stop.is_set():
                batch = self._collect()
                if batch:
                    last_message = time.monotonic()
                    self._commit(client, batch)
                    if on_batch is not None:
                        on_batch(self.ingestor.stats)
                    if max_messages is not None and self.ingestor.stats.messages >= max_messages:
                        break
                elif idle_timeout is not None and time.monotonic() - last_message > idle_timeout:
                    drained = True
                    break
            leftover = self._drain()
            if leftover:
                self._commit(client, leftover)
        finally:
            self.ingestor.close()
            if retire and drained:  # everything committed and acknowledged: end the session
                ending = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
                ending.SessionExpiryInterval = 0
                client.disconnect(properties=ending)
            else:
                client.disconnect()
            client.loop_stop()
        return self.ingestor.stats

    def _collect(self) -> list[tuple[int, mqtt.MQTTMessage]]:
        batch: list[tuple[int, mqtt.MQTTMessage]] = []
        try:
            batch.append(self._inbox.get(timeout=0.2))
        except queue.Empty:
            return batch
        deadline = time.monotonic() + self.batch_seconds
        while len(batch) < self.batch_messages:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.is_set():
                break
            try:
                batch.append(self._inbox.get(timeout=min(remaining, 0.05)))
            except queue.Empty:
                continue
        return batch

    def _drain(self) -> list[tuple[int, mqtt.MQTTMessage]]:
        items = []
        while True:
            try:
                items.append(self._inbox.get_nowait())
            except queue.Empty:
                return items

    def _commit(self, client: mqtt.Client, batch: list[tuple[int, mqtt.MQTTMessage]]) -> None:
        self.ingestor.ingest(
            RawMessage(bytes(m.payload), m.topic, _vin_of(m.topic)) for _, m in batch
        )
        for generation, message in batch:  # durable now: acknowledge
            if generation == self._generation:
                client.ack(message.mid, message.qos)

    def _install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def _vin_of(topic: str) -> str | None:
    parts = topic.split("/")
    return parts[-2] if len(parts) >= 2 else None


def publish_messages(
    broker: str,
    messages: Iterable[tuple[str, bytes]],
    *,
    prefix: str = DEFAULT_PREFIX,
    client_id: str = "",
    qos: int = 1,
    max_inflight: int = 1000,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Publish ``(vin, payload)`` messages as vehicles would; returns how many the broker took.

    Waits until the broker has acknowledged every QoS 1 message.
    """
    address = BrokerAddress.parse(broker)
    client = _client(address, client_id)
    client.max_inflight_messages_set(max_inflight)
    acked = 0
    lock = threading.Lock()

    def on_publish(client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        nonlocal acked
        with lock:
            acked += 1

    client.on_publish = on_publish
    _connect(client, address, persistent=False)
    sent = 0
    try:
        for vin, payload in messages:
            while sent - acked >= max_inflight * 4:  # bound what waits in our own queue
                time.sleep(0.0005)
            info = client.publish(signals_topic(vin, prefix), payload, qos=qos)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise ServiceUnavailableError(f"publish failed: {mqtt.error_string(info.rc)}")
            sent += 1
            if on_progress is not None:
                on_progress(1)
        deadline = time.monotonic() + 60
        while acked < sent:
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(
                    f"broker acknowledged {acked} of {sent} messages in 60 s"
                )
            time.sleep(0.005)
    finally:
        client.disconnect()
        client.loop_stop()
    return sent
