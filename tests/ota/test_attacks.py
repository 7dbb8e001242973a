"""The Uptane attack suite: each attack is built for real (real signed metadata, real
bytes, served by a man in the middle or a compromised repository) and the vehicle must
refuse it, say why, and install nothing."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from fleetops.ota._tuf import (
    CryptoSigner,
    Metadata,
    MetaFile,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from fleetops.ota.keys import generate_signer
from fleetops.ota.repository import to_bytes, utcnow
from fleetops.ota.vehicle import CycleResult
from tests.ota.conftest import BMS_HW, World

FIRMWARE = b"BMS firmware 3.0.0\n" * 200
MALWARE = b"MALWARE " * 400


def serve(data: bytes) -> Callable[[bytes], Iterator[bytes]]:
    return lambda real: iter([data])


def assert_refused(world: World, result: CycleResult, kind: str, running: dict[str, bytes]) -> None:
    assert result.refused is not None, result
    assert result.refused.kind == kind, result.refused
    assert not result.installed
    for serial, image in running.items():  # nothing installed: same images run
        assert world.car.ecus[serial].running() == image
    # and the refusal is reported to the director in the next manifest
    world.mitm.replace.clear()
    world.mitm.check_in_reply = None
    inventory = _report(world)
    assert inventory[world.gw]["last_result"]["success"] is False
    assert kind in inventory[world.gw]["last_result"]["reason"]


def _report(world: World) -> dict[str, dict[str, Any]]:
    world.server.director.check_in(world.vin, world.car.manifest())
    return world.server.director.inventory(world.vin)


def running(world: World) -> dict[str, bytes]:
    return {s: e.running() for s, e in world.car.ecus.items()}


def sign_with(signed: Targets | Snapshot | Timestamp, *signers: CryptoSigner) -> bytes:
    md: Metadata[Any] = Metadata(signed)
    for signer in signers:
        md.sign(signer, append=True)
    return to_bytes(md)


def director_targets(world: World) -> Targets:
    return (
        Metadata[Targets]
        .from_bytes(world.server.director.metadata(world.vin, "targets.json") or b"")
        .signed
    )


# -- rollback ------------------------------------------------------------------------------


def test_rollback_of_metadata_to_an_older_version(world: World) -> None:
    old_timestamp = world.server.image.metadata("timestamp.json") or b""
    world.publish("bms-3.0.0.bin", FIRMWARE)
    assert world.car.update().ok  # the vehicle now trusts the newer image metadata
    before = running(world)
    world.mitm.replace["image/metadata/timestamp.json"] = serve(old_timestamp)  # replay old
    assert_refused(world, world.car.update(), "rollback", before)


def test_rollback_to_an_older_image(world: World) -> None:
    world.publish("bms-3.0.0.bin", b"old firmware")
    world.publish("bms-3.1.0.bin", FIRMWARE)
    assert world.car.update().installed == {world.bms: "bms-3.1.0.bin"}
    before = running(world)
    world.server.assignments.by_hardware[BMS_HW] = "bms-3.0.0.bin"  # signed, valid, but older
    assert_refused(world, world.car.update(), "rollback", before)


def test_secondary_refuses_older_director_targets(world: World) -> None:
    old = world.server.director.metadata(world.vin, "targets.json") or b""
    world.publish("bms-3.0.0.bin", FIRMWARE)
    assert world.car.update().ok
    from fleetops.ota.errors import UpdateRefused

    with pytest.raises(UpdateRefused) as err:
        world.car.secondaries[world.bms].receive(old, FIRMWARE, 9)
    assert err.value.kind == "rollback"


# -- freeze ------------------------------------------------------------------------------


def test_freeze_with_an_expired_timestamp(world: World) -> None:
    world.publish("bms-3.0.0.bin", FIRMWARE)
    before = running(world)
    real = (
        Metadata[Timestamp]
        .from_bytes(world.server.director.metadata(world.vin, "timestamp.json") or b"")
        .signed
    )
    stale = Timestamp(
        version=real.version + 1,
        expires=utcnow() - timedelta(hours=1),
        snapshot_meta=MetaFile(version=real.snapshot_meta.version),
    )
    key = world.server.director.root.signers("timestamp")[0]  # genuinely signed, but stale
    world.mitm.check_in_reply = lambda ts: sign_with(stale, key)
    assert_refused(world, world.car.update(), "freeze", before)


def test_secondary_refuses_expired_director_targets(world: World) -> None:
    targets = director_targets(world)
    targets.version += 5
    targets.expires = utcnow() - timedelta(days=1)
    data = sign_with(targets, world.server.director.root.signers("targets")[0])
    from fleetops.ota.errors import UpdateRefused

    with pytest.raises(UpdateRefused) as err:
        world.car.secondaries[world.bms].receive(data, FIRMWARE, 1)
    assert err.value.kind == "freeze"


# -- arbitrary software ----------------------------------------------------------------------


def test_arbitrary_software_with_a_bad_hash(world: World) -> None:
    world.publish("bms-3.0.0.bin", FIRMWARE)
    before = running(world)
    tampered = MALWARE[: len(FIRMWARE)].ljust(len(FIRMWARE), b"X")  # same length, other bytes
    world.mitm.replace["image/targets/bms-3.0.0.bin"] = serve(tampered)
    assert_refused(world, world.car.update(), "bad-hash", before)


def test_arbitrary_software_with_a_bad_signature(world: World) -> None:
    world.publish("bms-3.0.0.bin", FIRMWARE)
    before = running(world)
    attacker = generate_signer()
    forged = director_targets(world)
    forged.version += 1
    forged.targets["evil.bin"] = TargetFile.from_data("evil.bin", MALWARE)
    forged.targets["evil.bin"].unrecognized_fields["custom"] = {
        "ecu_serial": world.bms,
        "hardware_id": BMS_HW,
    }
    world.mitm.replace[world.director_path("targets")] = serve(sign_with(forged, attacker))
    assert_refused(world, world.car.update(), "bad-signature", before)


# -- mix-and-match ----------------------------------------------------------------------


def test_mix_and_match_targets_from_another_snapshot(world: World) -> None:
    world.publish("bms-3.0.0.bin", FIRMWARE)
    old_targets = world.server.image.metadata("targets.json") or b""  # genuinely signed, v2
    world.publish("bms-3.1.0.bin", FIRMWARE + b"1")  # snapshot now lists targets v3
    before = running(world)
    world.mitm.replace["image/metadata/targets.json"] = serve(old_targets)
    assert_refused(world, world.car.update(), "mix-and-match", before)


# -- endless data ----------------------------------------------------------------------------


def endless(real: bytes) -> Iterator[bytes]:
    return itertools.repeat(b"\0" * 65536)


def test_endless_metadata_stops_at_the_limit(world: World) -> None:
    world.publish("bms-3.0.0.bin", FIRMWARE)
    before = running(world)
    world.mitm.replace["image/metadata/timestamp.json"] = endless
    result = world.car.update()
    assert world.mitm.served["image/metadata/timestamp.json"] <= world.car.limits.timestamp + 65536
    assert_refused(world, result, "endless-data", before)


def test_endless_image_stops_at_its_signed_length(world: World) -> None:
    world.publish("bms-3.0.0.bin", FIRMWARE)
    before = running(world)
    world.mitm.replace["image/targets/bms-3.0.0.bin"] = endless
    result = world.car.update()
    assert world.mitm.served["image/targets/bms-3.0.0.bin"] <= len(FIRMWARE) + 65536
    assert_refused(world, result, "endless-data", before)


# -- partial bundle / partial installation --------------------------------------------------


def test_partial_bundle_installs_nothing(world: World) -> None:
    world.publish("bms-3.0.0.bin", FIRMWARE)
    world.publish("gw-2.0.0.bin", b"GW firmware" * 50, hw="EVX-GW-C")
    before = running(world)
    # the connection drops half-way through the second image: the first is not installed either
    world.mitm.replace["image/targets/gw-2.0.0.bin"] = lambda real: iter([real[: len(real) // 2]])
    assert_refused(world, world.car.update(), "bad-hash", before)


def test_partial_installation_keeps_the_old_image_running(world: World) -> None:
    world.publish("bms-3.0.0.bin", FIRMWARE)
    before = running(world)
    world.car.interrupt = lambda serial: 100 if serial == world.bms else None  # power loss
    result = world.car.update()
    assert result.refused is None and world.bms in result.failed and not result.installed
    assert world.car.ecus[world.bms].running() == before[world.bms]  # A/B: old slot still active
    inventory = _report(world)
    assert inventory[world.bms]["last_result"]["success"] is False
    assert "power lost" in inventory[world.bms]["last_result"]["reason"]
    world.car.interrupt = lambda serial: None  # power back: the next cycle completes
    assert world.car.update().installed == {world.bms: "bms-3.0.0.bin"}


# -- compromised director key alone ------------------------------------------------------------


def test_compromised_director_keys_cannot_install_unlisted_images(world: World) -> None:
    before = running(world)
    director = world.server.director
    stolen = {r: director.root.signers(r)[0] for r in ("targets", "snapshot", "timestamp")}
    evil = TargetFile.from_data("evil.bin", MALWARE)
    evil.unrecognized_fields["custom"] = {"ecu_serial": world.bms, "hardware_id": BMS_HW}
    world.forge_director({"evil.bin": evil}, stolen)  # a perfectly signed director chain
    world.mitm.replace["image/targets/evil.bin"] = serve(MALWARE)
    result = world.car.update()
    assert "image repository does not" in str(result.refused)
    assert_refused(world, result, "director-image-mismatch", before)


# -- revoked key ------------------------------------------------------------------------------


def test_signature_by_a_revoked_key_is_refused(world: World) -> None:
    director = world.server.director
    world.publish("bms-3.0.0.bin", FIRMWARE)
    old_key = director.root.signers("targets")[0]
    director.root.rotate("targets")  # old key revoked: new root signed by old + new root keys
    assert world.car.update().ok  # the vehicle learns the new root
    before = running(world)
    rec = director.record(world.vin)
    forged = director_targets(world)
    forged.version = rec.versions["targets"] + 1
    world.mitm.replace[world.director_path("targets")] = serve(sign_with(forged, old_key))
    world.server.image.add_image("bms-3.1.0.bin", FIRMWARE + b"!", [BMS_HW], "3.1.0")
    world.server.assignments.by_hardware[BMS_HW] = "bms-3.1.0.bin"  # director re-signs
    assert_refused(world, world.car.update(), "bad-signature", before)
    from fleetops.ota.errors import UpdateRefused

    with pytest.raises(UpdateRefused) as err:  # the secondary, after its root update, too
        world.car.secondaries[world.bms].receive(sign_with(forged, old_key), FIRMWARE, 5)
    assert err.value.kind == "bad-signature"
