"""The CAN IDS on simulated attacks, its two scorer forms, its files and bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fleetops.core.errors import ConfigError, FleetopsError
from fleetops.core.types import CanFrames
from fleetops.security.ids import (
    IdsModel,
    alerts_from_scores,
    evaluate,
    load_capture,
    score_frames,
    to_ocsf,
    train,
)
from fleetops.sim.can import simulate_can
from tests.security.ids_checks import assert_stream_equals_batch


@pytest.fixture(scope="module")
def model() -> IdsModel:
    # Two attack-free drives of the simulated EV; attacks are scored on a third one.
    return train([simulate_can({"duration_s": 90, "seed": s}).frames for s in (1, 2)])


def _scenario(attack: dict[str, Any]) -> tuple[CanFrames, np.ndarray]:
    sim = simulate_can({"duration_s": 60, "seed": 7, "attacks": [attack]})
    return sim.frames, np.asarray(sim.frames.label != "", dtype=bool)


_SIGNAL = {"message": "VCU_DriveCmd", "signal": "AccelPedalPos", "value": 100}
DETECTED: list[tuple[dict[str, Any], set[str]]] = [
    ({"type": "flooding", "start_s": 20, "duration_s": 2}, {"flooding"}),
    ({"type": "flooding", "start_s": 20, "duration_s": 2, "id": 240}, {"flooding"}),
    ({"type": "fuzzing", "start_s": 20, "duration_s": 3}, {"id_fuzzing"}),
    (
        {"type": "fuzzing", "start_s": 20, "duration_s": 3, "mode": "known_ids"},
        {"payload_fuzzing"},
    ),
    ({"type": "replay", "start_s": 30, "duration_s": 5, "message": "VCU_DriveCmd"}, {"replay"}),
    # The forged pedal value lies inside what training drives showed, so only the extra
    # frames give the spoofer away (the rate check): it may be named replay.
    ({"type": "spoofing", "start_s": 20, "duration_s": 5, **_SIGNAL}, {"spoofing", "replay"}),
]
# Without a DBC (docs/ids.md): a masquerade keeps the cycle and sends a value inside the
# trained range; with the payload rules that do not carry over to another drive dropped,
# nothing tells it apart. With the DBC it is found (test_ids_signals.py).
UNDETECTED: list[dict[str, Any]] = [
    {"type": "masquerade", "start_s": 20, "duration_s": 5, **_SIGNAL},
]


@pytest.mark.parametrize(
    ("attack", "names"), DETECTED, ids=[str(c[0]["type"]) + str(i) for i, c in enumerate(DETECTED)]
)
def test_attack_detected_and_named(
    model: IdsModel, attack: dict[str, Any], names: set[str]
) -> None:
    frames, truth = _scenario(attack)
    scores = score_frames(model, frames)
    alerts = alerts_from_scores(model, frames, scores)
    m = evaluate(frames.timestamp, truth, scores.alert, alerts)
    assert m.episodes_detected == m.episodes == 1
    assert m.window_recall >= 0.8, m
    # Payload fuzzing: the rate check also flags a few real frames right after forged ones
    # (measured 1.6 % of benign windows, all inside the attack's second).
    assert m.window_fpr <= (0.02 if "payload_fuzzing" in names else 0.01), m
    start = frames.timestamp.min() + attack["start_s"]
    named = {a.attack for a in alerts if a.time >= start - 0.01}
    assert names & named, [a.to_dict() for a in alerts][:5]


@pytest.mark.parametrize("attack", UNDETECTED, ids=[str(a["type"]) for a in UNDETECTED])
def test_in_cycle_forgery_stays_quiet(model: IdsModel, attack: dict[str, Any]) -> None:
    """What is achieved on a masquerade of VCU_DriveCmd: no false alarm storm around it
    (its detection is below goal, see docs/ids.md)."""
    frames, truth = _scenario(attack)
    scores = score_frames(model, frames)
    m = evaluate(frames.timestamp, truth, scores.alert)
    assert m.window_fpr <= 0.01, m
    assert m.window_precision >= 0.0 and m.frames == len(frames)


def test_suppression_alert(model: IdsModel) -> None:
    frames, _ = _scenario(
        {"type": "suppression", "start_s": 20, "duration_s": 5, "message": "VCU_DriveCmd"}
    )
    alerts = alerts_from_scores(model, frames, score_frames(model, frames))
    supp = [a for a in alerts if a.attack == "suppression"]
    assert supp and supp[0].arbitration_id == 240
    assert 20 <= supp[0].time - frames.timestamp.min() <= 21


@pytest.mark.parametrize("profile", ["mixed", "urban", "highway"])
def test_benign_drive_is_quiet(model: IdsModel, profile: str) -> None:
    # A fresh drive (seed and profile never trained on): goal <= 0.1 % of windows.
    frames = simulate_can({"duration_s": 60, "seed": 9, "profile": profile}).frames
    scores = score_frames(model, frames)
    alerts = alerts_from_scores(model, frames, scores)
    m = evaluate(frames.timestamp, np.zeros(len(frames), bool), scores.alert, alerts)
    assert m.window_fpr <= 0.001, m


def test_calibration_drops_rules_that_break_on_held_out_drives() -> None:
    drives = [simulate_can({"duration_s": 90, "seed": s}).frames for s in (1, 2)]
    raw = train(drives, calibrate=False)
    cal = train(drives)
    assert cal.calibration["folds"] == 2
    # Fewer frozen bits and ranges survive, never more.
    assert np.all(cal.const_mask & ~raw.const_mask == 0)
    assert np.bitwise_count(cal.const_mask).sum() < np.bitwise_count(raw.const_mask).sum()
    assert np.all(cal.byte_lo <= raw.byte_lo) and np.all(cal.byte_hi >= raw.byte_hi)
    # On a fresh drive the surviving frozen bits and ranges break far less often (the rest
    # is kept from alerting by needing timing or transition support, see detect.py).
    frames = simulate_can({"duration_s": 60, "seed": 9, "profile": "highway"}).frames
    broken = []
    for m in (raw, cal):
        r = m.index_of(frames.arbitration_id)
        bits = np.bitwise_count((frames.payload_u64 ^ m.const_val[r]) & m.const_mask[r])
        out = (frames.data < m.byte_lo[r]) | (frames.data > m.byte_hi[r])
        broken.append(int(np.count_nonzero(bits)) + int(np.count_nonzero(out.any(axis=1))))
    assert broken[1] * 4 < broken[0], broken  # measured: 14262 -> 2632 frames
    assert np.bitwise_count(cal.const_mask).sum() > 0  # not everything was dropped
    # One capture: calibrated on contiguous time blocks of it.
    assert train(drives[:1]).calibration["folds"] == 4


def test_streaming_equals_batch(model: IdsModel) -> None:
    sim = simulate_can(
        {
            "duration_s": 40,
            "seed": 5,
            "attacks": [
                {"type": "fuzzing", "start_s": 5, "duration_s": 2},
                {"type": "replay", "start_s": 20, "duration_s": 3, "message": "VCU_DriveCmd"},
                {"type": "suppression", "start_s": 30, "duration_s": 4, "message": "BMS_SOC"},
            ],
        }
    )
    frames = sim.frames
    _, streamed = assert_stream_equals_batch(model, frames)
    assert any(a["attack"] == "suppression" for a in streamed)


def test_batch_handles_unsorted_input(model: IdsModel) -> None:
    frames, _ = _scenario({"type": "fuzzing", "start_s": 20, "duration_s": 3})
    perm = np.random.default_rng(0).permutation(len(frames))
    shuffled = score_frames(model, frames.take(perm))
    ordered = score_frames(model, frames)
    assert np.array_equal(shuffled.score, ordered.score[perm])


def test_model_file_round_trip(model: IdsModel, tmp_path: Path) -> None:
    path = model.save(tmp_path / "ids.npz")
    assert path.stat().st_size < 64_000
    loaded = IdsModel.load(path)
    frames, _ = _scenario({"type": "fuzzing", "start_s": 20, "duration_s": 3, "mode": "known_ids"})
    a, b = score_frames(model, frames), score_frames(loaded, frames)
    # flip weights are stored as float16: scores agree to that precision, alerts exactly
    assert np.allclose(a.score, b.score, rtol=2e-3)
    assert (a.alert != b.alert).sum() <= 2
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a model")
    with pytest.raises(ConfigError):
        IdsModel.load(bad)


def test_ocsf_finding(model: IdsModel) -> None:
    frames, _ = _scenario({"type": "flooding", "start_s": 20, "duration_s": 2})
    alerts = alerts_from_scores(model, frames, score_frames(model, frames))
    finding = to_ocsf(alerts[0], vehicle="WVWZZZ1JZXW000001", time_origin_s=0.0)
    assert finding["class_uid"] == 2004
    assert finding["finding_info"]["title"] and finding["finding_info"]["uid"]
    assert finding["resources"][0]["type"] == "Vehicle ECU"
    assert finding["evidences"][0]["data"]["frames"] >= 1
    assert finding["severity_id"] in (3, 4, 5)


DAGA_HEAD = "timestamp,CAN_ID,DLC,PAYLOAD_HEX,PAYLOAD_BIN,ANOMALY\n"


def test_daga_quirks_and_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        DAGA_HEAD
        + "0.0,10,64,000000002FB031F8,x,False\n"
        + "0.1,290.0,64,0000000000000061,x,True\n"  # id written as a float
        + "0.2,XYZ,64,0000000000000061,x,False\n"  # bad hex id
        + "0.3,10,64,00000000002FB0,x,False\n"  # short payload
        + "0.4,10,99,000000002FB031F8,x,False\n"  # impossible DLC
        + "0.05,1D0,8,000000002FB031F8,x,FALSE\n"  # unsorted, byte DLC
        + "0.6,1D0\n"  # truncated line
    )
    cap = load_capture(path, "daga")
    assert cap.frames.arbitration_id.tolist() == [0x10, 0x290, 0x1D0]
    assert cap.truth.tolist() == [False, True, False]
    assert sum(cap.skipped.values()) == 4
    assert cap.unsorted == 1


def test_road_loader(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    head = "Time,Id,Byte1,Byte2,Byte3,Byte4,Byte5,Byte6,Byte7,Byte8,Label\n"
    path.write_text(
        head
        + "1000000000.0,20E,4E,20,03,A0,C6,3F,8F,FF,Benign\n"
        + "1000000000.5,0D0,01,02,,,,,,,Fabrication\n"  # 2-byte frame
        + "1000000001.0,0D0,ZZ,02,,,,,,,Benign\n"  # bad hex
        + "1000000001.5,0D0,01,,03,,,,,,Benign\n"  # hole in the bytes
        + "1000000002.0,0D0,01\n"  # truncated
    )
    cap = load_capture(path, "road")
    assert cap.frames.timestamp.tolist() == [0.0, 0.5]
    assert cap.frames.dlc.tolist() == [8, 2]
    assert cap.truth.tolist() == [False, True]
    assert sum(cap.skipped.values()) == 3


@pytest.mark.parametrize("content", ["", "garbage\n\x00\x01", "Time,Id\n1,2\n"])
def test_unreadable_files_raise_clear_errors(tmp_path: Path, content: str) -> None:
    path = tmp_path / "x.csv"
    path.write_text(content)
    for fmt in ("daga", "road"):
        with pytest.raises(FleetopsError):
            load_capture(path, fmt)
    with pytest.raises(ConfigError):
        load_capture(tmp_path / "missing.csv", "daga")
    with pytest.raises(ConfigError):
        load_capture(path, "nope")


def test_sequence_replay_on_simulated_traffic(model: IdsModel) -> None:
    """Half a second of the whole bus, recorded and played back in order 10 s later over
    the live traffic (the simulator replays one message; this replays the sequence)."""
    frames = simulate_can({"duration_s": 40, "seed": 7}).frames
    t = frames.timestamp
    recorded = np.flatnonzero((t >= t.min() + 10.0) & (t < t.min() + 10.5))
    shift = 10.0037  # not a whole number of any cycle: the copies land off phase
    merged_t = np.concatenate([t, t[recorded] + shift])
    order = np.argsort(merged_t, kind="stable")
    merged = CanFrames(
        merged_t[order],
        np.concatenate([frames.arbitration_id, frames.arbitration_id[recorded]])[order],
        np.concatenate([frames.dlc, frames.dlc[recorded]])[order],
        np.concatenate([frames.data, frames.data[recorded]])[order],
    )
    truth = np.concatenate([np.zeros(len(frames), bool), np.ones(recorded.size, bool)])[order]
    scores = score_frames(model, merged)
    alerts = alerts_from_scores(model, merged, scores)
    m = evaluate(merged.timestamp, truth, scores.alert, alerts)
    assert m.episodes_detected == m.episodes == 1
    assert m.window_recall >= 0.8, m
    assert m.window_fpr <= 0.01, m
    assert "sequence_replay" in {a.attack for a in alerts}, {a.attack for a in alerts}
