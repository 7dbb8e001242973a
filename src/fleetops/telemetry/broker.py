"""A private Mosquitto broker for development, tests and benchmarks.

Production runs against the site's broker; this starts the ``mosquitto`` binary (Debian:
``apt-get install mosquitto``) on a loopback port with the settings ingest relies on, so a
developer — or a test — gets a real broker with one call.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from fleetops.core.errors import ConfigError, ServiceUnavailableError

_DEBIAN_PATH = Path("/usr/sbin/mosquitto")


def find_mosquitto() -> str | None:
    """The mosquitto binary, on PATH or where Debian installs it, or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return str(_DEBIAN_PATH) if _DEBIAN_PATH.exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalMosquitto:
    """``with LocalMosquitto() as broker: …`` — a broker on 127.0.0.1, gone on exit.

    ``max_queued_messages 0`` keeps everything for an ingest that is down, so nothing is
    dropped by the broker while ingest restarts.
    """

    def __init__(self, port: int | None = None, folder: Path | None = None) -> None:
        self.port = port or free_port()
        self._folder = folder
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> LocalMosquitto:
        binary = find_mosquitto()
        if binary is None:
            raise ConfigError(
                "mosquitto is not installed (Debian/Ubuntu: apt-get install mosquitto)"
            )
        folder = self._folder or Path(tempfile.mkdtemp(prefix="fleetops-mosquitto-"))
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_queued_messages 0\n"
        )
        log = folder / "mosquitto.log"
        with log.open("wb") as sink:
            self._process = subprocess.Popen([binary, "-c", str(conf)], stdout=sink, stderr=sink)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise ServiceUnavailableError(
                        f"mosquitto did not start on port {self.port}: {log.read_text()[-500:]}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None

    def wait(self) -> None:
        """Block until the broker exits (the CLI's foreground mode)."""
        if self._process is not None:
            self._process.wait()

    def __enter__(self) -> LocalMosquitto:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
