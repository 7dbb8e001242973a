"""Alive counters (``ids.counters``): learned from benign traffic, a replayed or forged
frame out of the count alerts, the real frame after it and frames lost on the bus do not."""

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
    score_frames,
    train,
)
from fleetops.security.ids.counters import fit_counter
from fleetops.security.ids.detect import E_COUNTER
from tests.security.ids_checks import assert_stream_equals_batch

COUNTED, PLAIN = 0x8, 0x20
PERIOD = 0.01


def _bus(
    seconds: float,
    seed: int,
    extra: list[tuple[float, bytes]] | None = None,
    drop_every: int = 0,
) -> tuple[CanFrames, npt.NDArray[np.bool_]]:
    """COUNTED every 10 ms ± 4 ms (too jittery for the timing rules to place a frame at a
    normal gap) with a nibble counter in byte 2's high nibble and a slowly moving value
    in byte 0; PLAIN every 20 ms. ``extra``: injected (time, payload) frames of COUNTED
    (truth 1); ``drop_every``: every n-th COUNTED frame lost on the bus."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[float, int, bytes, bool]] = []
    n = int(seconds / PERIOD)
    for i in range(n):
        if drop_every and i % drop_every == drop_every - 1:
            continue
        t = i * PERIOD + rng.uniform(-0.004, 0.004)
        payload = bytes([(i // 50) % 256, 0x80, ((i % 16) << 4) | 0x9, 0, 0, 0, 0, 0])
        rows.append((t + 1.0, COUNTED, payload, False))
        if i % 2 == 0:
            rows.append((t + 1.003, PLAIN, bytes(rng.integers(0, 2, 8, np.uint8)), False))
    rows += [(t, COUNTED, p, True) for t, p in extra or []]
    rows.sort(key=lambda r: r[0])
    times = np.array([r[0] for r in rows])
    ids = np.array([r[1] for r in rows], dtype=np.uint32)
    data = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.uint8).reshape(-1, 8).copy()
    frames = CanFrames(times, ids, np.full(times.size, 8, np.uint8), data)
    return frames, np.array([r[3] for r in rows])


@pytest.fixture(scope="module")
def model() -> IdsModel:
    return train([_bus(30, 1)[0], _bus(30, 2)[0]])


def test_counter_is_learned_where_there_is_one(model: IdsModel) -> None:
    row = int(np.searchsorted(model.ids, COUNTED))
    assert (model.ctr_shift[row], model.ctr_bits[row], model.ctr_inverse[row]) == (20, 4, 1)
    assert model.ctr_multiple[row] == 1  # training lost no frame (lost ones: by time)
    assert model.ctr_bits[int(np.searchsorted(model.ids, PLAIN))] == 0
    assert model.calibration["counters"] == 1
    # A step that is even, or not kept in 99 % of frames, is no counter.
    w = np.arange(200, dtype=np.uint64) * np.uint64(2)
    assert fit_counter([w], 20) == (0, 0, 0, 0)
    noisy = np.random.default_rng(0).integers(0, 2**63, 200, dtype=np.int64).astype(np.uint64)
    assert fit_counter([noisy], 20) == (0, 0, 0, 0)


def test_replayed_frames_at_normal_gaps_alert_and_the_next_real_frame_does_not(
    model: IdsModel,
) -> None:
    # A copy of an earlier frame (count 0xE) halfway between two real frames, every 0.5 s.
    stale = bytes([0, 0x80, 0xE9, 0, 0, 0, 0, 0])
    times = [1.0 + 0.5 * j + 0.0051 for j in range(1, 40)]
    frames, truth = _bus(21, 7, extra=[(t, stale) for t in times])
    scores = score_frames(model, frames)
    counted = frames.arbitration_id == COUNTED
    replayed_hits = scores.alert[truth]
    # The ones whose count happens to continue the real one (1 in 8) are not found by it.
    assert replayed_hits.mean() >= 0.8, replayed_hits.mean()
    assert np.all(scores.evidence[truth & scores.alert] & E_COUNTER)
    # (The timing rules may still flag a real frame 1-2 ms after an injected one.)
    assert not np.any(scores.evidence[counted & ~truth] & E_COUNTER)
    alerts = alerts_from_scores(model, frames, scores)
    assert {a.attack for a in alerts} == {"replay"}


def test_frames_lost_on_a_busy_bus_are_not_a_broken_count(model: IdsModel) -> None:
    frames, _ = _bus(20, 9, drop_every=7)  # a gap of two periods every 7 frames
    assert not score_frames(model, frames).alert.any()


def test_streaming_equals_batch_on_counters(model: IdsModel) -> None:
    rng = np.random.default_rng(3)
    extra = [
        (1.0 + float(t), bytes(rng.integers(0, 256, 8, np.uint8)))
        for t in rng.uniform(0.5, 9.5, 60)
    ]
    frames, _ = _bus(10, 11, extra=extra)
    assert_stream_equals_batch(model, frames)


def test_counters_survive_the_model_file(model: IdsModel, tmp_path: Path) -> None:
    loaded = IdsModel.load(model.save(tmp_path / "m.npz"))
    for name in ("ctr_shift", "ctr_bits", "ctr_inverse", "ctr_multiple"):
        assert np.array_equal(getattr(loaded, name), getattr(model, name))
    plain = train([_bus(30, 1)[0]], IdsParams(min_frames=10**9))
    assert not plain.ctr_bits.any()
