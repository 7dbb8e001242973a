"""The CAN-level simulator: timing, payloads, E2E protection and every attack's footprint."""

from __future__ import annotations

import json
from typing import Any

import cantools
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest
from cantools.database.can import Database

from fleetops.core.dbc import cycle_times, e2e_specs, load_dbc, verify_e2e
from fleetops.core.errors import ConfigError
from fleetops.sim.can import ATTACKS_SCHEMA, CanScenario, CanSimulation, simulate_can
from fleetops.telemetry.can_decode import CanDecoder

DB = load_dbc()
SPECS = e2e_specs(DB)
START = 1_735_689_600.0  # 2025-01-01T00:00:00Z


def frame_id(name: str) -> int:
    frame: int = DB.get_message_by_name(name).frame_id
    return frame


ATTACKS: list[dict[str, Any]] = [
    {"type": "flooding", "start_s": 10, "duration_s": 2, "rate_hz": 1000},
    {"type": "fuzzing", "start_s": 20, "duration_s": 5, "rate_hz": 100},
    {"type": "spoofing", "start_s": 30, "duration_s": 5, "signal": "Vehicle.Speed", "value": 0},
    {
        "type": "spoofing",
        "start_s": 40,
        "duration_s": 5,
        "message": "MCU_Status",
        "signal": "MotorSpeed",
        "shape": "continuous",
        "drift_per_s": 200,
    },
    {
        "type": "replay",
        "start_s": 50,
        "duration_s": 4,
        "message": "EPS_Steering",
        "source_start_s": 5,
    },
    {"type": "suppression", "start_s": 60, "duration_s": 3, "message": "BMS_PackStatus"},
    {
        "type": "masquerade",
        "start_s": 70,
        "duration_s": 5,
        "message": "ESP_Dynamics",
        "signal": "VehicleSpeed",
        "value": 180,
    },
]


@pytest.fixture(scope="module")
def attacked() -> CanSimulation:
    return simulate_can(
        {
            "duration_s": 90,
            "seed": 11,
            "profile": "highway",
            "start": "2025-01-01T00:00:00Z",
            "attacks": ATTACKS,
        }
    )


@pytest.fixture(scope="module")
def clean() -> CanSimulation:
    return simulate_can({"duration_s": 60, "seed": 5, "profile": "urban"})


def in_window(sim: CanSimulation, start: float, end: float) -> npt.NDArray[np.bool_]:
    t = sim.frames.timestamp - START
    return (t >= start) & (t < end)


def labelled(sim: CanSimulation, label: str) -> npt.NDArray[np.intp]:
    assert sim.frames.label is not None
    return np.flatnonzero(sim.frames.label == label)


def decoded(sim: CanSimulation, index: npt.NDArray[np.intp], message: str, signal: str) -> Any:
    frames = sim.frames.take(index)
    return CanDecoder(DB).decode_wide(frames)[message].column(signal).to_numpy()


# -- scenario ----------------------------------------------------------------------------


def test_scenario_from_dict_defaults_and_parsing() -> None:
    s = CanScenario.from_dict(
        {
            "duration_s": 5,
            "start": "2025-03-01T12:00:00+01:00",
            "attacks": [{"type": "flooding", "start_s": 1, "duration_s": 1, "id": "0x010"}],
        }
    )
    assert s.start_epoch == 1_740_826_800.0
    assert s.attacks[0].id == 0x10 and s.profile == "mixed" and s.seed == 0
    assert CanScenario.from_dict(None) == CanScenario()


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"duration": 5}, "unknown keys"),
        ({"profile": "rally"}, "profile"),
        ({"duration_s": -1}, "duration_s"),
        ({"seed": 1.5}, "seed"),
        ({"attacks": [{"type": "teleport", "start_s": 1, "duration_s": 1}]}, "teleport"),
        (
            {
                "attacks": [
                    {"type": "spoofing", "start_s": 1, "duration_s": 1, "signal": "Vehicle.Speed"}
                ]
            },
            "plateau needs the value",
        ),
        (
            {
                "attacks": [
                    {
                        "type": "replay",
                        "start_s": 5,
                        "duration_s": 10,
                        "message": "MCU_Status",
                        "source_start_s": 0,
                    }
                ]
            },
            "recorded window",
        ),
        ({"attacks": [{"type": "suppression", "start_s": 1, "duration_s": 1}]}, "needs a message"),
        (
            {"duration_s": 10, "attacks": [{"type": "flooding", "start_s": 20, "duration_s": 1}]},
            "after the scenario ends",
        ),
        ({"attacks": [{"type": "flooding", "start_s": 1, "duration_s": 1, "id": "x"}]}, "CAN id"),
    ],
)
def test_bad_scenarios_are_config_errors(section: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        CanScenario.from_dict(section)


def test_unknown_targets_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="no message"):
        simulate_can(
            {
                "duration_s": 5,
                "attacks": [
                    {"type": "suppression", "start_s": 1, "duration_s": 1, "message": "Nope"}
                ],
            }
        )
    with pytest.raises(ConfigError, match="no signal"):
        simulate_can(
            {
                "duration_s": 5,
                "attacks": [
                    {
                        "type": "spoofing",
                        "start_s": 1,
                        "duration_s": 1,
                        "message": "MCU_Status",
                        "signal": "Nope",
                        "value": 1,
                    }
                ],
            }
        )


# -- normal traffic ----------------------------------------------------------------------


def test_same_seed_same_bus_other_seed_other_bus(attacked: CanSimulation) -> None:
    again = simulate_can(attacked.scenario)
    for column in ("timestamp", "arbitration_id", "dlc", "data", "label"):
        np.testing.assert_array_equal(
            getattr(again.frames, column), getattr(attacked.frames, column)
        )
    assert again.attacks.equals(attacked.attacks)
    other = simulate_can({"duration_s": 90, "seed": 12, "profile": "highway", "attacks": ATTACKS})
    assert len(other.frames) != len(attacked.frames) or not np.array_equal(
        other.frames.data, attacked.frames.data
    )


def test_cycle_times_follow_the_dbc(clean: CanSimulation) -> None:
    frames = clean.frames
    assert (np.diff(frames.timestamp) > 0).all()  # one frame at a time on the bus
    for fid, cycle in cycle_times(DB).items():
        t = frames.timestamp[frames.arbitration_id == fid]
        assert abs(t.size - 60 / cycle) <= 1, hex(fid)
        gaps = np.diff(t)
        assert np.median(gaps) == pytest.approx(cycle, rel=0.01), hex(fid)
        assert gaps.std() < 0.05 * cycle + 5e-4  # jitter, not chaos
    assert (frames.timestamp >= START).all() and (frames.timestamp < START + 61).all()
    bus_load = (len(frames) * 120 / 500_000) / 60
    assert 0.05 < bus_load < 0.3


def test_counters_and_checksums_are_valid(clean: CanSimulation) -> None:
    frames = clean.frames
    assert verify_e2e(frames, SPECS).all()
    for fid, spec in SPECS.items():
        assert spec.counter is not None
        words = frames.payload_u64[frames.arbitration_id == fid]
        if spec.counter.big_endian:
            words = words.byteswap()
        counter = (words >> np.uint64(spec.counter.shift)) & spec.counter.mask
        assert ((np.diff(counter.astype(np.int64)) % 16) == 1).all(), hex(fid)


def test_payloads_are_what_cantools_encodes(clean: CanSimulation) -> None:
    frames = clean.frames
    for i in np.random.default_rng(0).choice(len(frames), 400, replace=False):
        message = DB.get_message_by_frame_id(int(frames.arbitration_id[i]))
        payload = frames.data[i, : frames.dlc[i]].tobytes()
        assert frames.dlc[i] == message.length
        values = message.decode(payload, decode_choices=False)
        assert message.encode(values, strict=False) == payload


def test_payloads_carry_the_simulated_state(clean: CanSimulation) -> None:
    frames = clean.frames
    speed = decoded(clean, np.arange(len(frames)), "ESP_Dynamics", "VehicleSpeed")
    sent = frames.timestamp[frames.arbitration_id == frame_id("ESP_Dynamics")]
    # Frames are stamped once on the wire, a little after the state they carry was read:
    # allow the quantisation (scale 0.01) and the change over a millisecond.
    truth = clean.truth("Vehicle.Speed", sent)
    assert np.abs(speed - truth).max() <= 0.005 + 0.015
    assert speed.max() > 20 and speed.min() == pytest.approx(0, abs=0.01)  # urban: stop and go
    rpm = decoded(clean, np.arange(len(frames)), "MCU_Status", "MotorSpeed")
    assert (
        np.corrcoef(
            np.interp(np.arange(rpm.size) / rpm.size, np.arange(speed.size) / speed.size, speed),
            rpm,
        )[0, 1]
        > 0.99
    )


@pytest.mark.parametrize("profile", ["urban", "highway", "mixed", "charging", "parked"])
def test_every_profile_runs(profile: str) -> None:
    sim = simulate_can({"duration_s": 20, "seed": 2, "profile": profile})
    signals = CanDecoder(DB).to_signals(sim.frames, "WVWZZZ1JZXW000001").to_pydict()
    by_path: dict[str, list[float]] = {}
    for path, value in zip(signals["signal"], signals["value"], strict=True):
        by_path.setdefault(path, []).append(value)
    charging = by_path["Vehicle.Powertrain.TractionBattery.Charging.IsCharging"]
    assert set(charging) == ({1.0} if profile == "charging" else {0.0})
    if profile in ("charging", "parked"):
        assert set(by_path["Vehicle.Speed"]) == {0.0}


def test_another_dbc_is_simulated_too() -> None:
    db = cantools.database.load_string(  # a tiny DBC of someone else's car
        'VERSION ""\nNS_ :\nBS_:\nBU_: A\n'
        "BO_ 1280 Custom: 4 A\n"
        ' SG_ Level : 7|12@0+ (0.5,0) [0|2047.5] "" A\n'
        ' SG_ Flag : 16|1@1+ (1,0) [0|1] "" A\n'
        'BA_DEF_ BO_ "GenMsgCycleTime" INT 0 10000;\n'
        'BA_DEF_DEF_ "GenMsgCycleTime" 0;\n'
        'BA_ "GenMsgCycleTime" BO_ 1280 200;\n',
        "dbc",
    )
    assert isinstance(db, Database)
    sim = simulate_can({"duration_s": 10, "seed": 1}, db)
    assert set(sim.frames.arbitration_id.tolist()) == {1280}
    assert 49 <= len(sim.frames) <= 51
    assert (sim.frames.dlc == 4).all()


# -- attacks -----------------------------------------------------------------------------


def truth(sim: CanSimulation, attack: str) -> list[dict[str, Any]]:
    return [r for r in sim.attacks.to_pylist() if r["attack"] == attack]


def test_ground_truth_matches_the_labels(attacked: CanSimulation) -> None:
    table = attacked.attacks
    assert table.schema == ATTACKS_SCHEMA and table.num_rows == len(ATTACKS)
    labels = attacked.frames.label
    assert labels is not None
    index = attacked.attack_index
    assert set(np.unique(labels).tolist()) == {
        "",
        "flooding",
        "fuzzing",
        "spoofing",
        "replay",
        "masquerade",
    }
    assert ((labels == "") == (index < 0)).all()
    kinds = np.array(table.column("attack").to_pylist())
    assert (labels[index >= 0] == kinds[index[index >= 0]]).all()
    for row, record in enumerate(table.to_pylist()):
        injected = int((index == row).sum())
        assert record["frames"] == injected or record["attack"] == "suppression"
        assert record["start"].timestamp() == START + ATTACKS[row]["start_s"]
        assert json.loads(record["params"]) is not None
    # Normal frames are all E2E-valid; attackers that compute the CRC are too.
    valid = verify_e2e(attacked.frames, SPECS)
    assert valid[labels == ""].all()
    for kind in ("spoofing", "replay", "masquerade"):
        assert valid[labels == kind].all(), kind


def test_flooding(attacked: CanSimulation) -> None:
    [record] = truth(attacked, "flooding")
    hits = labelled(attacked, "flooding")
    assert record["arbitration_id"] == 0 and hits.size == 2000 == record["frames"]
    assert (attacked.frames.arbitration_id[hits] == 0).all()
    t = attacked.frames.timestamp[hits] - START
    assert t.min() >= 10 and t.max() < 12.1
    # While the flood runs, id 0 outnumbers all the ECUs together.
    window = in_window(attacked, 10, 12)
    assert (attacked.frames.arbitration_id[window] == 0).mean() > 0.6


def test_fuzzing(attacked: CanSimulation) -> None:
    hits = labelled(attacked, "fuzzing")
    assert hits.size == 500
    ids = attacked.frames.arbitration_id[hits]
    assert np.unique(ids).size > 400  # random 11-bit ids
    t = attacked.frames.timestamp[hits] - START
    assert t.min() >= 20 and t.max() < 25.1
    assert truth(attacked, "fuzzing")[0]["arbitration_id"] is None


def test_spoofing_plateau_beside_the_real_sender(attacked: CanSimulation) -> None:
    [plateau, _] = truth(attacked, "spoofing")
    assert (plateau["message"], plateau["signal"]) == ("ESP_Dynamics", "VehicleSpeed")
    fid = frame_id("ESP_Dynamics")
    hits = labelled(attacked, "spoofing")
    hits = hits[attacked.frames.arbitration_id[hits] == fid]
    assert hits.size == 250  # at the message's own 20 ms cycle for 5 s
    assert (decoded(attacked, hits, "ESP_Dynamics", "VehicleSpeed") == 0).all()
    real = np.flatnonzero(
        in_window(attacked, 30, 35)
        & (attacked.frames.arbitration_id == fid)
        & (attacked.frames.label == "")
    )
    assert real.size == pytest.approx(250, abs=2)  # the real ECU keeps sending
    assert decoded(attacked, real, "ESP_Dynamics", "VehicleSpeed").min() > 60  # highway


def test_spoofing_continuous_drifts_away(attacked: CanSimulation) -> None:
    fid = frame_id("MCU_Status")
    hits = labelled(attacked, "spoofing")
    hits = hits[attacked.frames.arbitration_id[hits] == fid]
    assert hits.size == 500
    spoofed = decoded(attacked, hits, "MCU_Status", "MotorSpeed")
    t = attacked.frames.timestamp[hits] - START
    real = attacked.truth("Vehicle.Powertrain.ElectricMotor.Speed", attacked.frames.timestamp[hits])
    offset = spoofed - real
    np.testing.assert_allclose(offset, 200 * (t - 40), atol=30)  # 200 rpm/s from the truth
    assert offset[-1] > 900


def test_replay_resends_recorded_frames(attacked: CanSimulation) -> None:
    fid = frame_id("EPS_Steering")
    hits = labelled(attacked, "replay")
    assert (attacked.frames.arbitration_id[hits] == fid).all()
    source = np.flatnonzero(in_window(attacked, 5, 9) & (attacked.frames.arbitration_id == fid))
    assert hits.size == pytest.approx(400, abs=1)
    np.testing.assert_array_equal(
        attacked.frames.data[hits], attacked.frames.data[source][: hits.size]
    )
    t = attacked.frames.timestamp[hits] - START
    assert t.min() >= 50 and t.max() < 54.1


def test_suppression_removes_the_frames(attacked: CanSimulation) -> None:
    fid = frame_id("BMS_PackStatus")
    [record] = truth(attacked, "suppression")
    ours = attacked.frames.arbitration_id == fid
    assert not (ours & in_window(attacked, 60.001, 63)).any()
    assert (ours & in_window(attacked, 57, 60)).sum() == pytest.approx(60, abs=1)
    assert (ours & in_window(attacked, 63.1, 66)).sum() == pytest.approx(58, abs=1)
    assert record["frames"] == pytest.approx(60, abs=1)
    assert record["arbitration_id"] == fid


def test_masquerade_takes_over_with_valid_counter_and_checksum(attacked: CanSimulation) -> None:
    fid = frame_id("ESP_Dynamics")
    frames = attacked.frames
    ours = frames.arbitration_id == fid
    real_in_window = ours & in_window(attacked, 70.001, 74.99) & (frames.label == "")
    assert not real_in_window.any()  # the real sender is silenced
    hits = labelled(attacked, "masquerade")
    assert (frames.arbitration_id[hits] == fid).all()
    assert np.median(np.diff(frames.timestamp[hits])) == pytest.approx(0.02, rel=0.01)
    assert verify_e2e(frames.take(hits), SPECS).all()
    assert (decoded(attacked, hits, "ESP_Dynamics", "VehicleSpeed") == 180).all()
    counters = decoded(attacked, hits, "ESP_Dynamics", "AliveCounter").astype(int)
    assert ((np.diff(counters) % 16) == 1).all()
    before = np.flatnonzero(ours & (frames.timestamp < START + 70) & (frames.label == ""))
    last_real = decoded(attacked, before[-1:], "ESP_Dynamics", "AliveCounter")[0]
    assert counters[0] == (int(last_real) + 1) % 16  # the counter carries on seamlessly


def test_frames_round_trip_through_arrow(attacked: CanSimulation) -> None:
    table = attacked.frames.to_arrow()
    assert table.column("label").type == pa.string()
    assert table.num_rows == len(attacked.frames)


def test_attacks_on_one_message_compose() -> None:
    """Suppression then masquerade of the same id: the attacker still continues the real
    sender's counter sequence, and no real frame appears in either window."""
    sim = simulate_can(
        {
            "duration_s": 20,
            "seed": 3,
            "attacks": [
                {"type": "suppression", "start_s": 5, "duration_s": 2, "message": "MCU_Status"},
                {
                    "type": "masquerade",
                    "start_s": 6,
                    "duration_s": 4,
                    "message": "MCU_Status",
                    "signal": "Vehicle.Powertrain.ElectricMotor.Speed",
                    "value": 1234,
                },
            ],
        }
    )
    fid = frame_id("MCU_Status")
    frames = sim.frames
    ours = frames.arbitration_id == fid
    assert not (ours & in_window(sim, 5.001, 9.99) & (frames.label == "")).any()
    hits = labelled(sim, "masquerade")
    assert hits.size == pytest.approx(400, abs=1)
    assert (decoded(sim, hits, "MCU_Status", "MotorSpeed") == 1234).all()
    counters = decoded(sim, hits, "MCU_Status", "AliveCounter").astype(int)
    assert ((np.diff(counters) % 16) == 1).all()
    assert sim.attacks.column("signal").to_pylist() == [None, "MotorSpeed"]
