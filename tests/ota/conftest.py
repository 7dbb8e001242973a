"""A small real OTA world: both repositories (root 2-of-3), one published image and a
vehicle (GW primary + BMS secondary), plus a man-in-the-middle transport for attacks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from fleetops.core.types import vin_check_digit
from fleetops.ota._tuf import (
    CryptoSigner,
    Metadata,
    MetaFile,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from fleetops.ota.repository import Thresholds, to_bytes, utcnow
from fleetops.ota.store import OtaServer
from fleetops.ota.transport import LocalTransport
from fleetops.ota.vehicle import Primary, provision

BMS_HW = "EVX-BMS-C"
GW_HW = "EVX-GW-C"


def make_vin(serial: int) -> str:
    body = f"5YJ3E1EA0KF{serial:06d}"
    return body[:8] + vin_check_digit(body) + body[9:]


@dataclass
class Mitm:
    """Sits between the vehicle and the real repositories; can rewrite any answer."""

    inner: LocalTransport
    replace: dict[str, Callable[[bytes], Iterator[bytes]]] = field(default_factory=dict)
    check_in_reply: Callable[[bytes], bytes] | None = None
    served: dict[str, int] = field(default_factory=dict)

    def get(self, path: str) -> Iterator[bytes]:
        if path in self.replace:
            real = b"".join(self.inner.get(path))
            for chunk in self.replace[path](real):
                self.served[path] = self.served.get(path, 0) + len(chunk)
                yield chunk
            return
        yield from self.inner.get(path)

    def check_in(self, vin: str, manifest: bytes, max_length: int) -> tuple[bytes, int]:
        ts, root = self.inner.check_in(vin, manifest, max_length)
        if self.check_in_reply is not None:
            ts = self.check_in_reply(ts)
        return ts, root


@dataclass
class World:
    tmp: Path
    server: OtaServer
    vin: str
    mitm: Mitm
    car: Primary

    @property
    def gw(self) -> str:
        return f"{self.vin}-GW"

    @property
    def bms(self) -> str:
        return f"{self.vin}-BMS"

    def publish(
        self, name: str, data: bytes, hw: str = BMS_HW, version: str = "1", assign: bool = True
    ) -> None:
        self.server.image.add_image(name, data, [hw], version)
        if assign:
            self.server.assignments.by_hardware[hw] = name

    def forge_director(self, entries: dict[str, TargetFile], keys: dict[str, CryptoSigner]) -> None:
        """Serve this vehicle a director chain (targets, snapshot, timestamp) signed by ``keys``."""
        rec = self.server.director.record(self.vin)
        expires = utcnow() + timedelta(days=1)
        targets = Targets(version=rec.versions["targets"] + 1, expires=expires, targets=entries)
        snapshot = Snapshot(
            version=rec.versions["snapshot"] + 1,
            expires=expires,
            meta={"targets.json": MetaFile(version=targets.version)},
        )
        timestamp = Timestamp(
            version=rec.versions["timestamp"] + 1,
            expires=expires,
            snapshot_meta=MetaFile(version=snapshot.version),
        )
        signed = {
            role: to_bytes(_signed(md, keys[role]))
            for role, md in (("targets", targets), ("snapshot", snapshot), ("timestamp", timestamp))
        }
        self.mitm.replace[self.director_path("targets")] = lambda real: iter([signed["targets"]])
        self.mitm.replace[self.director_path("snapshot")] = lambda real: iter([signed["snapshot"]])
        self.mitm.check_in_reply = lambda real: signed["timestamp"]

    def director_path(self, role: str) -> str:
        return f"director/{self.vin}/metadata/{role}.json"


def _signed(signed: Targets | Snapshot | Timestamp, key: CryptoSigner) -> Metadata[Any]:
    md: Metadata[Any] = Metadata(signed)
    md.sign(key)
    return md


@pytest.fixture
def world(tmp_path: Path) -> World:
    server = OtaServer.init(
        tmp_path / "repo", root_keys=tmp_path / "root-keys", thresholds=Thresholds(root=(3, 2))
    )
    vin = make_vin(317000)
    primary, infos = provision(
        tmp_path / "car",
        vin,
        [("GW", GW_HW, "1.8.0"), ("BMS", BMS_HW, "2.8.1")],
        server.director.root.root_bytes() or b"",
        server.image.metadata("root.json") or b"",
    )
    server.director.register(vin, primary, infos)
    mitm = Mitm(LocalTransport(server.image, server.director))
    return World(tmp_path, server, vin, mitm, Primary(tmp_path / "car", mitm))
