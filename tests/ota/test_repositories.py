"""Repositories, keys, director inventory and a clean update cycle."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fleetops.core.errors import ConfigError, ValidationError
from fleetops.ota._tuf import Metadata, Root, Targets
from fleetops.ota.errors import KeyStoreError
from fleetops.ota.keys import KeyStore
from fleetops.ota.store import OtaServer
from tests.ota.conftest import BMS_HW, World


def test_keys_are_private_and_root_keys_separate(world: World) -> None:
    keys = list((world.tmp / "repo" / "keys").glob("*.pem"))
    root_keys = list((world.tmp / "root-keys").glob("*.pem"))
    assert len(root_keys) == 6  # 3 per repository, offline folder only
    assert not [k for k in keys if ".root." in k.name]
    for path in keys + root_keys:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_root_is_two_of_three(world: World) -> None:
    root = Metadata[Root].from_bytes(world.server.image.metadata("root.json") or b"").signed
    assert root.roles["root"].threshold == 2 and len(root.roles["root"].keyids) == 3
    assert not root.consistent_snapshot


def test_clean_update_installs_and_reports(world: World) -> None:
    world.publish("bms-3.0.0.bin", b"BMS firmware 3.0.0" * 100)
    result = world.car.update()
    assert result.ok and result.installed == {world.bms: "bms-3.0.0.bin"}
    assert world.car.ecus[world.bms].running() == b"BMS firmware 3.0.0" * 100
    second = world.car.update()
    assert second.ok and second.up_to_date and not second.installed
    inv = world.server.director.inventory(world.vin)
    assert inv[world.bms]["installed"] == "bms-3.0.0.bin"
    assert inv[world.bms]["last_result"]["success"] is True


def test_director_targets_carry_ecu_serial_and_hardware_id(world: World) -> None:
    world.publish("bms-3.0.0.bin", b"x" * 10)
    world.car.update()
    data = world.server.director.metadata(world.vin, "targets.json") or b""
    entry = Metadata[Targets].from_bytes(data).signed.targets["bms-3.0.0.bin"]
    assert entry.custom == {"ecu_serial": world.bms, "hardware_id": BMS_HW}


def test_image_for_other_hardware_is_never_assigned(world: World) -> None:
    world.server.image.add_image("gw-9.bin", b"gw", ["OTHER-HW"], "9")
    world.server.assignments.by_hardware["EVX-GW-C"] = "gw-9.bin"
    result = world.car.update()
    assert result.ok and result.up_to_date


def test_publish_refuses_bad_names_and_duplicates(world: World) -> None:
    with pytest.raises(ValidationError, match="not allowed"):
        world.server.image.add_image("../evil", b"x", [BMS_HW], "1")
    world.server.image.add_image("a.bin", b"x", [BMS_HW], "1")
    with pytest.raises(ValidationError, match="immutable"):
        world.server.image.add_image("a.bin", b"y", [BMS_HW], "1")
    with pytest.raises(ValidationError, match="hardware"):
        world.server.image.add_image("b.bin", b"y", [], "1")


def test_root_rotation_needs_offline_keys(world: World) -> None:
    online_only = OtaServer.open(world.tmp / "repo")  # no --root-keys
    with pytest.raises(KeyStoreError, match="root keys"):
        online_only.image.root.rotate("timestamp")


def test_root_rotation_is_followed_by_vehicle_and_secondaries(world: World) -> None:
    world.publish("bms-1.bin", b"one")
    assert world.car.update().ok
    world.server.director.root.rotate("root")  # new root keys, signed by old and new
    world.server.director.root.rotate("targets")
    world.server.image.root.rotate("snapshot")
    world.server.image.resign_all()
    world.publish("bms-2.bin", b"two")
    result = world.car.update()
    assert result.ok and result.installed == {world.bms: "bms-2.bin"}
    assert world.car.secondaries[world.bms].director_root.signed.version == 3


def test_revoke_refuses_to_break_threshold(world: World) -> None:
    keyid = world.server.image.root.role("targets").keyids[0]
    with pytest.raises(ValidationError, match="threshold"):
        world.server.image.root.revoke("targets", keyid)


def test_missing_repository_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="keys init"):
        OtaServer.open(tmp_path / "nothing")
    assert KeyStore(tmp_path).signers("image", "targets", []) == []
