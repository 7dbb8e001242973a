"""Bad input on both sides gets a clear refusal and changes nothing."""

from __future__ import annotations

import orjson
import pytest

from fleetops.ota import manifest as mf
from fleetops.ota._tuf import TargetFile
from fleetops.ota.director import EcuInfo
from fleetops.ota.errors import ManifestRejected, UnknownVehicle, UpdateRefused
from fleetops.ota.keys import generate_signer, public_key_dict
from fleetops.ota.store import OtaServer
from tests.ota.conftest import BMS_HW, World, make_vin

FIRMWARE = b"firmware" * 100


def refused_kind(world: World, body: bytes) -> str:
    counter = world.server.director.record(world.vin).counter
    with pytest.raises(ManifestRejected) as err:
        world.server.director.check_in(world.vin, body)
    assert world.server.director.record(world.vin).counter == counter  # nothing recorded
    return err.value.kind


def test_malformed_metadata_json_is_refused(world: World) -> None:
    world.publish("bms-3.0.0.bin", FIRMWARE)
    before = world.car.ecus[world.bms].running()
    world.mitm.replace["image/metadata/timestamp.json"] = lambda real: iter(
        [b'{"signed": {"_type"']
    )
    result = world.car.update()
    assert result.refused is not None and result.refused.kind == "malformed"
    assert world.car.ecus[world.bms].running() == before


def test_malformed_director_targets_refused_by_secondary(world: World) -> None:
    with pytest.raises(UpdateRefused) as err:
        world.car.secondaries[world.bms].receive(b"not json", FIRMWARE, 1)
    assert err.value.kind == "malformed"


def test_manifest_not_json(world: World) -> None:
    assert refused_kind(world, b"\x00garbage") == "malformed"
    assert refused_kind(world, b"[1, 2]") == "malformed"


def test_manifest_oversize(world: World) -> None:
    assert refused_kind(world, b" " * (mf.MAX_MANIFEST_BYTES + 1)) == "oversize"


def test_manifest_wrong_signature(world: World) -> None:
    body = orjson.loads(world.car.manifest())
    body["signed"]["counter"] += 100  # changed after signing
    assert refused_kind(world, orjson.dumps(body)) == "bad-signature"
    impostor = mf.vehicle_manifest(
        generate_signer(),
        vin=world.vin,
        primary_ecu_serial=world.gw,
        counter=10**6,
        timestamp="",
        reports={},
    )
    assert refused_kind(world, impostor) == "bad-signature"


def test_manifest_signature_not_hex_or_truncated(world: World) -> None:
    body = orjson.loads(world.car.manifest())
    sig = body["signatures"][0]["sig"]
    for bad in ("zz" + sig[2:], sig[:-2], "", sig[:64] + "00" * 32):
        body["signatures"][0]["sig"] = bad
        assert refused_kind(world, orjson.dumps(body)) == "bad-signature"
    body["signatures"] = [{"keyid": body["signatures"][0]["keyid"]}]  # no sig at all
    assert refused_kind(world, orjson.dumps(body)) == "bad-signature"


def test_reregistered_key_replaces_the_loaded_one(world: World) -> None:
    """The director keeps each ECU's key object loaded: re-registration must replace it."""
    world.server.director.check_in(world.vin, world.car.manifest())  # old key loaded
    new_primary = generate_signer()
    infos = [
        EcuInfo(
            serial,
            ecu.hardware_id,
            public_key_dict(new_primary if serial == world.gw else ecu.signer),
        )
        for serial, ecu in world.car.ecus.items()
    ]
    world.server.director.register(world.vin, world.gw, infos, replace=True)
    assert refused_kind(world, world.car.manifest()) == "bad-signature"  # old key: refused
    world.car.primary.signer = new_primary
    world.server.director.check_in(world.vin, world.car.manifest())  # new key: accepted


def test_ecu_report_wrong_signature(world: World) -> None:
    ecu = world.car.ecus[world.bms]
    ecu.signer = generate_signer()  # a swapped ECU
    ecu.note({"target": None, "success": True, "reason": ""})
    assert refused_kind(world, world.car.manifest()) == "bad-signature"


def test_manifest_replay(world: World) -> None:
    body = world.car.manifest()
    world.server.director.check_in(world.vin, body)
    assert refused_kind(world, body) == "replay"


def test_ecu_report_replay(world: World) -> None:
    ecu = world.car.ecus[world.bms]
    old_report = ecu.report()
    world.server.director.check_in(world.vin, world.car.manifest())
    ecu.note({"target": None, "success": True, "reason": ""})
    world.server.director.check_in(world.vin, world.car.manifest())
    manifest = orjson.loads(world.car.manifest())
    signed = manifest["signed"]
    signed["ecu_version_reports"][world.bms] = old_report  # an old, genuinely signed report
    forged = mf.sign(signed, world.car.primary.signer)  # even a cooperating primary cannot
    assert refused_kind(world, orjson.dumps(forged)) == "replay"


def test_unknown_ecu(world: World) -> None:
    stranger = generate_signer()
    signed = orjson.loads(world.car.manifest())["signed"]
    signed["ecu_version_reports"]["SOMEONE-ELSE"] = mf.ecu_report(
        stranger,
        ecu_serial="SOMEONE-ELSE",
        hardware_id="X",
        installed_image=None,
        report_counter=1,
        timestamp="",
    )
    assert (
        refused_kind(world, orjson.dumps(mf.sign(signed, world.car.primary.signer)))
        == "unknown-ecu"
    )


def test_unknown_vehicle(world: World) -> None:
    with pytest.raises(UnknownVehicle, match="not registered"):
        world.server.director.check_in(make_vin(999999), world.car.manifest())
    with pytest.raises(UnknownVehicle, match="not a VIN"):
        world.server.director.metadata("../../etc", "targets.json")


def test_director_assigning_to_an_ecu_the_vehicle_lacks(world: World) -> None:
    world.publish("bms-3.0.0.bin", FIRMWARE, assign=False)
    before = world.car.ecus[world.bms].running()
    director = world.server.director
    entry = TargetFile.from_data("bms-3.0.0.bin", FIRMWARE, ["sha256", "sha512"])
    entry.unrecognized_fields["custom"] = {"ecu_serial": "GHOST", "hardware_id": BMS_HW}
    world.forge_director(
        {"bms-3.0.0.bin": entry},
        {r: director.root.signers(r)[0] for r in ("targets", "snapshot", "timestamp")},
    )
    result = world.car.update()
    assert result.refused is not None and result.refused.kind == "unknown-ecu"
    assert "GHOST" in result.refused.reason
    assert world.car.ecus[world.bms].running() == before


def test_replay_is_refused_after_a_director_restart(world: World) -> None:
    body = world.car.manifest()
    world.server.director.check_in(world.vin, body)  # recorded in the check-in journal
    restarted = OtaServer.open(world.tmp / "repo")
    with pytest.raises(ManifestRejected) as err:
        restarted.director.check_in(world.vin, body)
    assert err.value.kind == "replay"
    restarted.director.compact()  # folded into inventory.json: still refused
    with pytest.raises(ManifestRejected):
        OtaServer.open(world.tmp / "repo").director.check_in(world.vin, body)
