"""Per-signal checks of the CAN IDS (trained with the EV's DBC) on simulated attacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cantools.database.can import Database
from typer.testing import CliRunner

from fleetops.core.dbc import default_dbc_path, load_dbc
from fleetops.core.errors import ConfigError
from fleetops.core.types import CanFrames
from fleetops.security.ids import (
    IdsModel,
    IdsParams,
    alerts_from_scores,
    evaluate,
    iter_frames,
    score_frames,
    to_ocsf,
    train,
)
from fleetops.security.ids.cli import ids_app
from fleetops.security.ids.signals import (
    SignalState,
    check_dbc,
    decode,
    is_inferred,
    score_signals,
)
from fleetops.sim.can import simulate_can
from fleetops.telemetry.can_decode import CanDecoder
from tests.security.ids_checks import assert_stream_equals_batch


@pytest.fixture(scope="module")
def db() -> Database:
    return load_dbc()


@pytest.fixture(scope="module")
def drives() -> list[CanFrames]:
    return [simulate_can({"duration_s": 90, "seed": s}).frames for s in (1, 2)]


@pytest.fixture(scope="module")
def model(drives: list[CanFrames], db: Database) -> IdsModel:
    return train(drives, dbc=db)


PEDAL = {"message": "VCU_DriveCmd", "signal": "AccelPedalPos"}
WHEEL = {"message": "ESP_WheelSpeeds", "signal": "WheelSpeedFL"}
FORGERIES: list[dict[str, Any]] = [
    {"type": "spoofing", "start_s": 20, "duration_s": 5, **PEDAL, "value": 100},
    {"type": "spoofing", "start_s": 20, "duration_s": 5, **PEDAL, "shape": "continuous"},
    {"type": "masquerade", "start_s": 20, "duration_s": 5, **PEDAL, "value": 100},
    # Default drift: 1 % of the signal's DBC range per second (4 km/h/s).
    {"type": "masquerade", "start_s": 20, "duration_s": 5, **WHEEL, "shape": "continuous"},
]


@pytest.mark.parametrize(
    "attack", FORGERIES, ids=[f"{a['type']}-{a.get('shape', 'plateau')}" for a in FORGERIES]
)
def test_forged_signal_detected_and_named(model: IdsModel, attack: dict[str, Any]) -> None:
    sim = simulate_can({"duration_s": 60, "seed": 7, "attacks": [attack]})
    frames, truth = sim.frames, np.asarray(sim.frames.label != "", dtype=bool)
    scores = score_frames(model, frames)
    alerts = alerts_from_scores(model, frames, scores)
    m = evaluate(frames.timestamp, truth, scores.alert, alerts)
    assert m.episodes_detected == m.episodes == 1
    assert m.window_recall >= 0.8, m
    assert m.window_fpr <= 0.01, m
    row = sim.attacks.to_pylist()[0]  # the ground truth names message and signal
    wanted = f"{row['message']}.{row['signal']}"
    start = frames.timestamp.min() + attack["start_s"]
    named = {(a.attack, a.arbitration_id, a.signal) for a in alerts if a.time >= start - 0.01}
    assert any(i == row["arbitration_id"] and s == wanted for _, i, s in named), named
    assert any(k == attack["type"] and s == wanted for k, _, s in named), named
    finding = to_ocsf(next(a for a in alerts if a.signal == wanted))
    assert finding["evidences"][0]["data"]["signal"] == wanted
    assert wanted in finding["finding_info"]["title"]


def test_masquerade_needs_the_dbc(drives: list[CanFrames]) -> None:
    """Without a DBC the in-cycle masquerade of a 12-bit wheel speed is not seen
    (docs/ids.md): inferred words are aligned 16-bit ones; without them nothing is
    modelled per signal."""
    plain = train(drives)
    assert plain.signals is not None
    assert all(is_inferred(name) for name in plain.signals.names)
    sim = simulate_can({"duration_s": 60, "seed": 7, "attacks": [FORGERIES[2]]})
    scores = score_frames(plain, sim.frames)
    m = evaluate(sim.frames.timestamp, np.asarray(sim.frames.label != "", bool), scores.alert)
    assert m.window_recall == 0.0
    bare = train(drives, IdsParams(infer_words=False))
    assert bare.signals is None
    assert score_frames(bare, sim.frames).signal is None


@pytest.mark.parametrize("profile", ["mixed", "urban", "highway"])
def test_benign_drive_with_dbc_is_quiet(model: IdsModel, profile: str) -> None:
    frames = simulate_can({"duration_s": 60, "seed": 9, "profile": profile}).frames
    scores = score_frames(model, frames)
    alerts = alerts_from_scores(model, frames, scores)
    m = evaluate(frames.timestamp, np.zeros(len(frames), bool), scores.alert, alerts)
    assert m.window_fpr == 0.0, [a.to_dict() for a in alerts][:3]


def test_streaming_equals_batch_with_dbc(model: IdsModel) -> None:
    sim = simulate_can(
        {
            "duration_s": 40,
            "seed": 5,
            "attacks": [
                {"type": "spoofing", "start_s": 5, "duration_s": 3, **WHEEL, "value": 0},
                {"type": "masquerade", "start_s": 15, "duration_s": 4, **PEDAL, "value": 90},
                {"type": "fuzzing", "start_s": 25, "duration_s": 2, "mode": "known_ids"},
                {"type": "suppression", "start_s": 30, "duration_s": 4, "message": "BMS_SOC"},
            ],
        }
    )
    frames = sim.frames
    _, streamed = assert_stream_equals_batch(model, frames, signals=True)
    assert {a["signal"] for a in streamed} >= {
        "ESP_WheelSpeeds.WheelSpeedFL",
        "VCU_DriveCmd.AccelPedalPos",
    }


def test_streaming_equals_batch_with_late_ids_and_short_frames(model: IdsModel) -> None:
    """The streaming scorer redoes a signal's relations only when a value they read
    changed or was first seen: an id whose signals predict another message's starts late
    while that message's payload is held, and frames too short for their signals are not
    judged (nor their cache refreshed)."""
    sm = model.signals
    assert sm is not None
    pairs = [
        (int(sm.frame_id[s]), int(sm.frame_id[j]))
        for s, j in zip(*np.nonzero(sm.feat >= 0), strict=True)
        if sm.frame_id[sm.feat[s, j]] != sm.frame_id[s]
    ]
    assert pairs
    judged, late = pairs[0]
    assert int(sm.min_dlc[sm.frame_id == judged].max()) > 1
    frames = simulate_can({"duration_s": 20, "seed": 11}).frames
    t0 = float(frames.timestamp.min())
    frames = frames.take(~((frames.arbitration_id == late) & (frames.timestamp < t0 + 5)))
    # The judged id's payload held from 3 s to 8 s: its values do not change when the late
    # id's first frame arrives, only what its relations read does.
    held = np.flatnonzero(
        (frames.arbitration_id == judged)
        & (frames.timestamp >= t0 + 3)
        & (frames.timestamp < t0 + 8)
    )
    frames.data[held] = frames.data[held[0]]
    short = np.flatnonzero(frames.arbitration_id == judged)[1::7]
    frames.dlc[short] = 1
    frames.data[short, 1:] = 0
    assert_stream_equals_batch(model, frames, signals=True)
    # The signal scores themselves, before the frame's other scores can hide them.
    early = np.zeros(len(frames), dtype=bool)
    best, _, _ = score_signals(
        sm, frames.timestamp, frames.arbitration_id, frames.payload_u64, frames.dlc, early
    )
    state = SignalState(sm)
    ours = [
        state.push(t, a, d, int.from_bytes(p, "little"), p, False)[0]
        for t, a, d, p in iter_frames(frames)
    ]
    assert np.array_equal(np.array(ours), best)


def test_decoding_matches_the_project_decoder(model: IdsModel, db: Database) -> None:
    frames = simulate_can({"duration_s": 5, "seed": 3}).frames
    wide = CanDecoder(db).decode_wide(frames)
    sm = model.signals
    assert sm is not None
    for s, name in enumerate(sm.names):
        message, signal = name.split(".")
        rows = frames.arbitration_id == sm.frame_id[s]
        ours = decode(sm, s, frames.payload_u64[rows])
        assert np.array_equal(ours, wide[message].column(signal).to_numpy()), name


def test_model_round_trip_with_signals(
    model: IdsModel, drives: list[CanFrames], tmp_path: Path
) -> None:
    path = model.save(tmp_path / "ids.npz")
    plain = train(drives, IdsParams(infer_words=False)).save(tmp_path / "plain.npz")
    assert path.stat().st_size < 32_000
    assert path.stat().st_size > plain.stat().st_size
    loaded = IdsModel.load(path)
    assert loaded.signals is not None and model.signals is not None
    assert loaded.signals.names == model.signals.names
    for name in ("lo", "hi", "dlo", "dhi", "rate_thr", "feat", "coef", "rel_thr", "frame_id"):
        assert np.array_equal(getattr(loaded.signals, name), getattr(model.signals, name))
    sim = simulate_can({"duration_s": 60, "seed": 7, "attacks": [FORGERIES[2]]})
    a, b = score_frames(model, sim.frames), score_frames(loaded, sim.frames)
    assert a.signal is not None and b.signal is not None
    assert np.array_equal(a.signal, b.signal)
    assert IdsModel.load(plain).signals is None


def _dbc(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "x.dbc"
    path.write_text(f'VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_: ECU\n\n{body}\n')
    return path


def test_dbc_that_does_not_match_the_traffic(drives: list[CanFrames], tmp_path: Path) -> None:
    # No id in common: a clear error.
    other = _dbc(tmp_path, 'BO_ 1234 Other: 8 ECU\n SG_ A : 0|8@1+ (1,0) [0|255] "" ECU\n')
    with pytest.raises(ConfigError, match="none of the training traffic"):
        train(drives, dbc=other)
    # The right id, the wrong layout (its values leave the declared range): left out and
    # counted; when nothing is left, a clear error.
    wrong = _dbc(tmp_path, 'BO_ 240 VCU_DriveCmd: 8 ECU\n SG_ A : 0|16@1+ (1,0) [0|10] "" ECU\n')
    with pytest.raises(ConfigError, match="decodes outside"):
        train(drives, dbc=wrong)
    with pytest.raises(ConfigError):
        train(drives, dbc=tmp_path / "missing.dbc")


def test_detect_checks_the_dbc(model: IdsModel, drives: list[CanFrames], tmp_path: Path) -> None:
    check_dbc(model.signals, default_dbc_path())
    with pytest.raises(ConfigError, match="trained without a DBC"):
        check_dbc(train(drives).signals, default_dbc_path())
    other = _dbc(tmp_path, 'BO_ 240 VCU_DriveCmd: 8 ECU\n SG_ A : 0|16@1+ (1,0) [0|10] "" ECU\n')
    with pytest.raises(ConfigError, match="does not define"):
        check_dbc(model.signals, other)
    model_path = model.save(tmp_path / "m.npz")
    log = tmp_path / "c.log"
    frames = drives[0]
    log.write_text(
        "\n".join(
            f"({t:.6f}) can0 {a:03X}#{bytes(p[:d]).hex().upper()}"
            for t, a, d, p in zip(
                frames.timestamp[:2000],
                frames.arbitration_id[:2000],
                frames.dlc[:2000],
                frames.data[:2000],
                strict=True,
            )
        )
        + "\n"
    )
    runner = CliRunner()
    args = ["detect", str(log), "--model", str(model_path), "--dbc"]
    assert runner.invoke(ids_app, [*args, str(default_dbc_path())]).exit_code == 0
    result = runner.invoke(ids_app, [*args, str(other)])
    assert result.exit_code != 0 and "does not define" in result.output
