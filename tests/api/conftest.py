"""Fixtures: one simulated lake and one console for the whole session (read-mostly)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import Console, build_console, build_lake


@pytest.fixture(scope="session")
def console(tmp_path_factory: pytest.TempPathFactory) -> Console:
    lake = build_lake(tmp_path_factory.mktemp("lake"))
    return build_console(tmp_path_factory.mktemp("console"), lake)


@pytest.fixture
def client(console: Console) -> Iterator[TestClient]:
    with TestClient(console.app) as c:
        yield c
