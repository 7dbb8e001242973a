"""The timing rules of the CAN IDS on small synthetic buses: phase of periodic ids, the
real frame after an injected one, and a masquerader on its own clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from fleetops.core.types import CanFrames
from fleetops.security.ids import (
    IdsModel,
    alerts_from_scores,
    score_frames,
    train,
)
from fleetops.security.ids.detect import ATTACKS, E_PHASE
from tests.security.ids_checks import assert_stream_equals_batch

# id -> (period s, jitter s): 0x100 / 0x300 keep a tight cycle, 0x200 jitters by a third
# of its period (no phase worth judging, only gaps).
IDS = {0x100: (0.02, 0.0002), 0x200: (0.01, 0.003), 0x300: (0.1, 0.0002)}
F64 = npt.NDArray[np.float64]


def _bus(seconds: float, seed: int, extra: dict[int, F64] | None = None) -> tuple[CanFrames, F64]:
    """Benign cyclic frames (payload: a counter) plus ``extra`` frames per id; the truth
    is 1.0 for the extra frames."""
    rng = np.random.default_rng(seed)
    t, a, truth = [], [], []
    for i, (period, jitter) in IDS.items():
        n = int(seconds / period)
        times = rng.uniform(0, period) + np.arange(n) * period
        times = times + rng.uniform(-jitter, jitter, n)
        t.append(times)
        a.append(np.full(n, i))
        truth.append(np.zeros(n))
    for i, times in (extra or {}).items():
        t.append(times)
        a.append(np.full(times.size, i))
        truth.append(np.ones(times.size))
    order = np.argsort(np.concatenate(t), kind="stable")
    ts = np.concatenate(t)[order]
    ids = np.concatenate(a)[order].astype(np.uint32)
    data = np.zeros((ts.size, 8), dtype=np.uint8)
    data[:, 0] = np.arange(ts.size) % 4  # a slow counter: payload never the issue here
    frames = CanFrames(ts, ids, np.full(ts.size, 8, dtype=np.uint8), data)
    return frames, np.concatenate(truth)[order]


def _drop(frames: CanFrames, keep: npt.NDArray[np.bool_]) -> CanFrames:
    return frames.take(np.flatnonzero(keep))


@pytest.fixture(scope="module")
def model() -> IdsModel:
    return train([_bus(60, 1)[0], _bus(60, 2)[0]])


def test_phase_learned_only_for_steady_cycles(model: IdsModel, tmp_path: Path) -> None:
    rows = {int(a): r for r, a in enumerate(model.ids.tolist())}
    assert model.period[rows[0x100]] == pytest.approx(0.02, rel=1e-3)
    assert model.phase_tol[rows[0x100]] < 0.002
    assert np.isfinite(model.phase_tol[rows[0x300]])
    assert not np.isfinite(model.phase_tol[rows[0x200]])  # jitter 30 % of the cycle
    loaded = IdsModel.load(model.save(tmp_path / "m.npz"))
    assert np.array_equal(loaded.phase_tol, model.phase_tol)
    assert np.array_equal(loaded.period, model.period)


def test_injected_frame_off_phase_and_real_one_after_it_not(model: IdsModel) -> None:
    # One extra 0x100 frame every second, 8 ms after a real one: its gap is normal-ish
    # for 0x100 (band from 20 ms) only by phase is it out of place.
    base, _ = _bus(30, 7)
    real = base.timestamp[base.arbitration_id == 0x100]
    inject = real[50::50][:25] + 0.008
    frames, truth = _bus(30, 7, {0x100: inject})
    s = score_frames(model, frames)
    hit = truth == 1
    assert s.alert[hit].mean() >= 0.9
    assert np.all(s.evidence[hit & s.alert] & E_PHASE)
    # The real frame right after each injected one stays quiet (in phase with the one
    # before the injection), and so does the rest of the bus.
    assert s.alert[~hit].sum() == 0
    assert {ATTACKS[int(x)] for x in s.attack[hit & s.alert]} <= {"replay", "spoofing"}


def test_two_short_gaps_on_a_jittery_id(model: IdsModel) -> None:
    # 0x200 jitters too much for phase; an extra frame at a gap inside the normal band
    # leaves a short gap to the next real frame, which is then not excused.
    base, _ = _bus(30, 8)
    real = base.timestamp[base.arbitration_id == 0x200]
    lo = float(model.dt_lo[int(np.searchsorted(model.ids, 0x200))])
    gap = np.diff(real)
    # Every ~second, a gap wide enough that a frame placed lo / 2 before the next real
    # one is itself at a normal gap (>= lo) from the real one before it.
    wide = np.flatnonzero((gap > 2 * lo) & (real[:-1] > 1.0))
    picks = wide[np.searchsorted(wide, np.arange(20) * 100)]
    inject = real[picks + 1] - 0.5 * lo
    frames, truth = _bus(30, 8, {0x200: inject})
    s = score_frames(model, frames)
    w = np.floor(frames.timestamp / 0.1).astype(np.int64)
    attacked = np.unique(w[truth == 1])
    flagged = np.unique(w[s.alert])
    assert np.isin(attacked, flagged).mean() >= 0.8


def test_masquerader_on_its_own_clock(model: IdsModel) -> None:
    # The real 0x300 sender silenced from 10 s; an attacker answers every 113 ms.
    base, _ = _bus(30, 9)
    real = base.timestamp[base.arbitration_id == 0x300]
    start = float(real[real > 10][0]) + 0.011
    forged = start + np.arange(100, dtype=np.float64) * 0.113
    forged = forged[forged < 30]
    frames, truth = _bus(30, 9, {0x300: forged})
    silenced = (frames.arbitration_id == 0x300) & (frames.timestamp > 10) & (truth == 0)
    frames, truth = _drop(frames, ~silenced), truth[~silenced]
    s = score_frames(model, frames)
    hit = truth == 1
    assert s.alert[hit].mean() >= 0.9
    assert s.alert[~hit].sum() == 0
    named = {a.attack for a in alerts_from_scores(model, frames, s)}
    assert "masquerade" in named


def test_one_late_frame_is_bus_delay(model: IdsModel) -> None:
    frames, _ = _bus(30, 10)
    t = frames.timestamp.copy()
    own = np.flatnonzero(frames.arbitration_id == 0x300)
    t[own[100]] += 0.01  # delayed, the next frame back on the cycle
    delayed = CanFrames(t, frames.arbitration_id, frames.dlc, frames.data)
    assert score_frames(model, delayed).alert.sum() == 0


def test_streaming_equals_batch_on_timing_attacks(model: IdsModel) -> None:
    base, _ = _bus(20, 11)
    real = base.timestamp[base.arbitration_id == 0x100]
    extra = {
        0x100: real[40::40] + 0.007,
        0x200: np.arange(3.0, 6.0, 0.25),
        0x300: 12.0 + np.arange(40) * 0.117,
    }
    frames, _ = _bus(20, 11, extra)
    batch, _ = assert_stream_equals_batch(model, frames)
    assert batch.alert.any() and (batch.evidence & E_PHASE).any()
