"""Shared fixtures: a real Mosquitto broker per test session, and the public datasets."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    return Path(os.environ.get("FLEETOPS_SHARED_DATA", REPO.parent / "shared" / "data"))


def require_shared(folder: str) -> Path:
    """The dataset folder, or a skip naming what is missing (never a skip in CI)."""
    path = shared_data() / folder
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the public dataset folder {path}")
        pytest.skip(f"public dataset folder {path} is absent (set FLEETOPS_SHARED_DATA)")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Mosquitto broker on a free loopback port; yields its URL."""
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have mosquitto installed (.ci/run installs it)")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    folder = tmp_path_factory.mktemp("mosquitto")
    port = _free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "max_queued_messages 0\n"  # keep everything for an ingest that is down
    )
    log = (folder / "mosquitto.log").open("wb")
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(
                    f"mosquitto did not start: {(folder / 'mosquitto.log').read_text()}"
                ) from None
            time.sleep(0.05)
    yield f"mqtt://127.0.0.1:{port}"
    process.terminate()
    process.wait(5)
    log.close()
