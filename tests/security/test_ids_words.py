"""Relations between 16-bit words learned without a DBC (``signals.infer_signals``): a
masquerader that keeps the sender's cycle but not the redundancy of its payload."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from fleetops.core.types import CanFrames
from fleetops.security.ids import (
    IdsModel,
    IdsParams,
    alerts_from_scores,
    evaluate,
    score_frames,
    train,
)
from fleetops.security.ids.signals import is_inferred
from tests.security.ids_checks import assert_stream_equals_batch

WHEELS, STATUS, OTHER = 0x6E0, 0x033, 0x100
FORGED = bytes.fromhex("5959454500 00FFFF".replace(" ", ""))


def _drive(
    seconds: float, seed: int, top: float, forge: tuple[float, float] | None = None
) -> tuple[CanFrames, npt.NDArray[np.bool_]]:
    """Four big-endian wheel speeds that agree to a few counts (100 Hz), a status frame
    whose words follow a 16-step counter (50 Hz) and an unrelated frame (20 Hz). With
    ``forge`` (start, end) the wheel frames in that span carry a constant forged payload
    at the real sender's times (the real ones removed: a masquerade)."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[float, int, bytes, bool]] = []
    for k, t in enumerate(np.arange(0, seconds, 0.01) + rng.uniform(0, 0.01)):
        speed = top * 0.5 * (1 - np.cos(2 * np.pi * t / seconds))  # 0 → top → 0
        words = np.clip(speed + rng.normal(0, 4, 4), 0, 0xFFFF).astype(">u2")
        forged = forge is not None and forge[0] <= t < forge[1]
        rows.append((float(t), WHEELS, FORGED if forged else words.tobytes(), forged))
        if k % 2 == 0:
            c = (k // 2) % 16
            status = np.array([c * 0x0101, 0x0700 + 16 * c, 0x00D0, 0], dtype=">u2")
            rows.append((float(t) + 0.003, STATUS, status.tobytes(), False))
        if k % 5 == 0:
            rows.append((float(t) + 0.005, OTHER, rng.integers(0, 4, 8, np.uint8).tobytes(), False))
    rows.sort(key=lambda r: r[0])
    t = np.array([r[0] for r in rows])
    ids = np.array([r[1] for r in rows], dtype=np.uint32)
    data = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.uint8).reshape(-1, 8).copy()
    truth = np.array([r[3] for r in rows])
    return CanFrames(t, ids, np.full(t.size, 8, dtype=np.uint8), data), truth


@pytest.fixture(scope="module")
def model() -> IdsModel:
    return train([_drive(40, 1, 2000)[0], _drive(40, 2, 1500)[0]])


def test_only_redundant_quantities_are_modelled(model: IdsModel) -> None:
    """The four wheel words, each predicted by the other three; not the counter-driven
    status words (16 values), not the other byte order of the wheel words."""
    assert model.signals is not None
    names = model.signals.names
    assert all(is_inferred(n) for n in names)
    assert names == [f"0x6E0[{o}:{o + 2}]be" for o in (0, 2, 4, 6)], names
    assert np.all(model.signals.feat >= 0)
    assert model.calibration["inferred_relations"] == 12


def test_masquerade_with_a_constant_payload_is_found_and_named(model: IdsModel) -> None:
    frames, truth = _drive(40, 7, 2500, forge=(10.0, 20.0))
    scores = score_frames(model, frames)
    alerts = alerts_from_scores(model, frames, scores)
    m = evaluate(frames.timestamp, truth, scores.alert, alerts)
    assert m.window_recall >= 0.99, m
    assert m.window_fpr <= 0.01, m
    wheel_alerts = [a for a in alerts if a.arbitration_id == WHEELS]
    # 0x5959 also sets high bits no training speed reached: named payload fuzzing then.
    assert wheel_alerts and {a.attack for a in wheel_alerts} <= {"masquerade", "payload_fuzzing"}
    assert "signal_relation" in wheel_alerts[0].evidence
    assert wheel_alerts[0].signal is not None and wheel_alerts[0].signal.startswith("0x6E0[")


def test_a_faster_benign_drive_is_quiet(model: IdsModel) -> None:
    """Speeds no training drive reached: the words still agree, nothing alerts."""
    frames, _ = _drive(40, 9, 4000)
    scores = score_frames(model, frames)
    assert not scores.alert.any(), np.flatnonzero(scores.alert)[:5]


def test_streaming_equals_batch_with_inferred_words(model: IdsModel) -> None:
    frames, _ = _drive(20, 11, 2500, forge=(5.0, 8.0))
    assert_stream_equals_batch(model, frames)


def test_round_trip_and_switch_off(model: IdsModel, tmp_path: Path) -> None:
    path = model.save(tmp_path / "words.npz")
    loaded = IdsModel.load(path)
    assert loaded.signals is not None and model.signals is not None
    assert loaded.signals.names == model.signals.names
    assert np.array_equal(loaded.signals.rel_thr, model.signals.rel_thr)
    off = train([_drive(40, 1, 2000)[0]], IdsParams(infer_words=False))
    assert off.signals is None and "inferred_words" not in off.calibration
