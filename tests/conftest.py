"""Shared fixtures: a real Mosquitto broker per test session, and the public datasets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetops.telemetry.broker import LocalMosquitto, find_mosquitto

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


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Mosquitto broker on a free loopback port; yields its URL."""
    if find_mosquitto() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have mosquitto installed (.ci/run installs it)")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    with LocalMosquitto(folder=tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker.url


def postgres_dsn() -> str:
    """A reachable PostgreSQL DSN for store tests, or a skip (never a skip in CI).

    ``$FLEETOPS_TEST_PG_DSN`` (``scripts/postgres.sh`` prepares one), else the local
    server on 127.0.0.1:5432 with trust authentication.
    """
    import psycopg

    dsn = os.environ.get("FLEETOPS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        with psycopg.connect(dsn, connect_timeout=3) as connection:
            connection.execute("select 1")
    except psycopg.OperationalError as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have PostgreSQL at {dsn} (.ci/run starts it): {error}")
        pytest.skip(f"PostgreSQL at {dsn} is unreachable (bash scripts/postgres.sh): {error}")
    return dsn
