"""Scoring CAN frames against an :class:`IdsModel`: a vectorised batch scorer over whole
logs and a streaming scorer taking one frame at a time, which compute the same scores.

Per frame (in time order), with up to three previous frames of the same id kept:

* an id never seen in training: ``flooding`` if it repeats within ``flood_s``, else
  ``id_fuzzing``;
* timing: on ids with a steady cycle, off phase if the frame is further from the phase of
  each of its last three frames than training allowed (an injected frame is; the real
  frame after it is not; a masquerader's own clock drifts off; a late frame counts only
  if the id's previous frame was off phase too: one late frame is mostly bus delay); early if the gap to the
  previous frame of the id is below the learned band, unless the gap to the 2nd or 3rd
  previous frame is inside the band and the frame is in phase or the frame before it was
  itself early (then the extra frame is already flagged); or if the last three gaps
  together are shorter than two ever were in training (extra frames interleaved at the
  id's own cycle); an id pair never seen in sequence is recorded as evidence only (across
  drives it is too common to alert on);
* payload: a DLC never seen; frozen bits broken and byte values outside the learned
  ranges (they need several broken bits / bytes); the surprise of the transition from the
  nearest of the last three frames that explains it (so one injected frame does not also
  flag the real frame after it) — these three only on early frames (see RANGE_BYTES'
  comment); an alive counter that does not continue (:mod:`fleetops.security.ids.counters`,
  alone enough: named ``replay`` when nothing else is wrong with the payload);
* signals (model trained with a DBC): each decoded signal's range, rate of change and
  relations to other signals (:mod:`fleetops.security.ids.signals`); the alert names the
  signal that scored highest.

Thresholds come from :func:`~fleetops.security.ids.model.train`, calibrated on held-out
benign traffic.

``score`` is the largest of these, each scaled so that 1 is its threshold; a frame alerts
when ``score >= 1``. Alerted frames are named (see :data:`ATTACKS`) and merged by
:class:`AlertAggregator` into alerts per attack type and id.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from fleetops.core.types import CanFrames
from fleetops.security.ids.counters import COUNTER_SCORE, counter_broken
from fleetops.security.ids.model import (
    IdsModel,
    excused_after_extra,
    phase_residual,
    same_id_history,
)
from fleetops.security.ids.signals import score_signals

ATTACKS: tuple[str, ...] = (
    "",
    "flooding",
    "id_fuzzing",
    "payload_fuzzing",
    "replay",
    "sequence_replay",
    "spoofing",
    "masquerade",
    "suppression",
)
(
    NONE,
    FLOODING,
    ID_FUZZING,
    PAYLOAD_FUZZING,
    REPLAY,
    SEQUENCE_REPLAY,
    SPOOFING,
    MASQUERADE,
    SUPPRESSION,
) = range(9)
EVIDENCE: tuple[str, ...] = (
    "unknown_id",
    "early",
    "unseen_dlc",
    "frozen_bits",
    "transition",
    "byte_range",
    "unseen_sequence",
    "silence",
    "off_phase",
    "signal_range",  # bits 9-11: signals.E_SIG_*
    "signal_rate",
    "signal_relation",
    "counter",
)
E_UNKNOWN, E_EARLY, E_DLC, E_FROZEN, E_TRANSITION, E_RANGE, E_SEQUENCE, E_SILENCE, E_PHASE = (
    1 << i for i in range(9)
)
E_COUNTER = 1 << 12
UNKNOWN_SCORE = 10.0
DLC_SCORE = 10.0
FROZEN_BITS = 6.0  # frozen bits broken for the frozen-bit check to alert
# Payload statistics (frozen bits, byte ranges, transition surprise) are what the training
# drives showed: another drive's states (an engine running where training idled, a warm-up
# ramp) break them on every frame at normal timing, just as a forged payload would
# (measured across ROAD recordings: 17-100 % of benign windows). So they count only on a
# frame that is also early (an extra frame), or on an id too rare for timing to be learned.
# At normal timing a payload is judged by what carries over between drives: its DLC, the
# alive counter and relations between signals or words (docs/ids.md).
RANGE_BYTES = 4.0  # bytes outside their range for the range check to alert
# A signal anomaly (rate, relations, DBC range) on a frame at normal timing must be this
# many times its calibrated threshold: two calibration
# folds under-estimate how far a fresh drive goes (measured up to 2.7 × on simulated
# drives: urban steering bends wheel speeds away from vehicle speed more than training
# did), while a forged signal breaks its relations by far more (docs/ids.md).
SIGNAL_ALONE = 3.0
TICK_S = 0.1  # suppression is checked when a frame opens a new 100 ms tick
_SLOTS = 0xFFF  # unknown ids are remembered in 4096 slots (bounded memory)
_TINY = 1e-9


def evidence_names(code: int) -> list[str]:
    return [name for i, name in enumerate(EVIDENCE) if code >> i & 1]


@dataclass(slots=True)
class FrameScores:
    """Per frame, in the order the frames were given."""

    score: npt.NDArray[np.float64]
    attack: npt.NDArray[np.int8]  # index into ATTACKS, 0 where the frame does not alert
    evidence: npt.NDArray[np.int16]  # E_* bits
    # Suppression found at a frame (index into the frames, model row of the silent id).
    suppressed: list[tuple[int, int]] = field(default_factory=list)
    # The signal that alerted (index into model.signals.names), -1 where none; None for a
    # model without signals.
    signal: npt.NDArray[np.int16] | None = None

    @property
    def alert(self) -> npt.NDArray[np.bool_]:
        return self.score >= 1.0


def byte_tables(model: IdsModel) -> npt.NDArray[np.float64]:
    """(k, 8, 256): the surprise of each xor byte value at each byte position."""
    bits = ((np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1).astype(np.float64)
    k = len(model)
    tables = np.zeros((k, 8, 256))
    for j in range(8):
        w = model.flip_w[:, 8 * j : 8 * j + 8]  # (k, 8)
        # Summed bit by bit, in order, so the streaming scorer's Python sums match.
        acc = np.zeros((k, 256))
        for b in range(8):
            acc = acc + w[:, b][:, None] * bits[None, :, b]
        tables[:, j, :] = acc
    return tables


class _Prepared:
    """The model in the shapes each scorer wants, built once per model."""

    def __init__(self, model: IdsModel) -> None:
        self.model = model
        self.tables = byte_tables(model)
        self.flip_thr = model.flip_thr
        self.k = len(model)


def score_frames(
    model: IdsModel, frames: CanFrames, prepared: _Prepared | None = None
) -> FrameScores:
    """Score every frame of a log at once (the batch scorer)."""
    prep = prepared or _Prepared(model)
    n = len(frames)
    order = np.argsort(frames.timestamp, kind="stable")
    in_order = bool(np.all(order[1:] > order[:-1])) if n > 1 else True
    t = frames.timestamp if in_order else frames.timestamp[order]
    ids = frames.arbitration_id if in_order else frames.arbitration_id[order]
    data = frames.data if in_order else frames.data[order]
    dlc = frames.dlc if in_order else frames.dlc[order]
    p = model.params
    k = prep.k
    row = model.index_of(ids)
    known = row >= 0
    r = np.maximum(row, 0)
    key = np.where(known, row, k + (ids & np.uint32(_SLOTS)).astype(np.int64))
    word = np.ascontiguousarray(data).view("<u8").reshape(-1)
    prev = [same_id_history(key, lag) for lag in (1, 2, 3)]
    has = [q >= 0 for q in prev]
    dts = [np.where(h, t - t[np.maximum(q, 0)], np.inf) for q, h in zip(prev, has, strict=True)]
    score = np.zeros(n)
    evidence = np.zeros(n, dtype=np.int16)
    attack = np.zeros(n, dtype=np.int8)

    # Unknown ids (only the same id in the same slot counts as a repeat).
    same1 = has[0] & (ids[np.maximum(prev[0], 0)] == ids)
    unknown = ~known
    score[unknown] = UNKNOWN_SCORE
    evidence[unknown] |= E_UNKNOWN
    flood_u = unknown & same1 & (dts[0] < p.flood_s)
    attack[unknown] = np.where(flood_u[unknown], FLOODING, ID_FUZZING)

    # Timing.
    lo, hi = model.dt_lo[r], model.dt_hi[r]
    off, near = phase_residual(dts, model.period[r])
    tol = model.phase_tol[r]
    phased = known & near & np.isfinite(tol)
    phase_score = np.where(phased, np.abs(off) / tol, 0.0)
    excused = excused_after_extra(dts, lo, hi, phased & (phase_score < 1.0))
    # A late frame (more than a period after the id's previous one) alone is a delayed real
    # one as often as not (bus load another drive has and training had not: the next frame
    # is back on the grid); a sender off the grid stays off, so a late frame counts when
    # the id's previous frame was off phase too.
    off_raw = phase_score >= 1.0
    late_raw = off_raw & (dts[0] > model.period[r])
    off_prev = has[0] & off_raw[np.maximum(prev[0], 0)]
    phase_score = np.where(late_raw & ~off_prev, 0.0, phase_score)
    prev_any = np.concatenate([[k], row[:-1]]) if n else row
    unseen_pair = known & (model.pairs[np.where(prev_any < 0, k, prev_any), r] == 0)
    judged = known & has[0] & (lo > 0) & ~excused
    time_score = np.where(judged, lo / np.maximum(dts[0], _TINY), 0.0)
    lo3 = model.dt3_lo[r]
    rate_judged = known & has[2] & (lo3 > 0)
    time_score = np.maximum(time_score, np.where(rate_judged, lo3 / np.maximum(dts[2], _TINY), 0.0))
    time_score = np.maximum(time_score, phase_score)
    early = time_score >= 1.0
    # Off phase and late, nothing early: the expected frame never came and another sender
    # answers on its own clock.
    late = early & late_raw & (phase_score >= 1.0) & (time_score == phase_score)

    # Payload.
    dlc_bad = known & ((model.dlc_mask[r] >> dlc.astype(np.uint16)) & 1 == 0)
    frozen = np.bitwise_count((word ^ model.const_val[r]) & model.const_mask[r]).astype(np.int64)
    frozen = np.where(known, frozen, 0)
    inside = np.arange(8)[None, :] < dlc[:, None]
    out_range = ((data < model.byte_lo[r]) | (data > model.byte_hi[r])) & inside
    n_range = np.where(known, out_range.sum(axis=1), 0)
    surprise = []
    for q, h in zip(prev, has, strict=True):
        x = word ^ word[np.maximum(q, 0)]
        s = np.zeros(n)
        for j in range(8):
            s = s + prep.tables[r, j, ((x >> np.uint64(8 * j)) & np.uint64(0xFF)).astype(np.intp)]
        surprise.append(np.where(h, s, np.inf))
    thr = prep.flip_thr[r]
    s1, s2, s3 = surprise
    trans = np.where(
        s1 < thr,
        s1,
        np.where(s2 < thr, s2, np.where(s3 < thr, s3, np.minimum(s1, np.minimum(s2, s3)))),
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        trans = np.where(known & has[0] & np.isfinite(thr), trans / thr, 0.0)
    trans = np.where(np.isfinite(trans), trans, 0.0)
    trans_eff = np.where(early, trans, 0.0)
    sig_score = np.zeros(n)
    sig_which: npt.NDArray[np.int16] | None = None
    if model.signals is not None:
        sig_score, sig_which, sig_ev = score_signals(model.signals, t, ids, word, dlc, early)
        sig_score = np.where(early, sig_score, sig_score / SIGNAL_ALONE)
        sig_which[sig_score < 1.0] = -1
        evidence |= sig_ev
    ctr_bad = counter_broken(model.counter_table(), word, dlc, row, prev, dts, early)
    rest = np.maximum.reduce(
        [
            np.where(dlc_bad, DLC_SCORE, 0.0),
            # Statistics of the training drives: only with timing support, except on ids
            # too rare for timing to be learned (nothing else watches them).
            np.where(
                early | ((lo <= 0) & ~np.isfinite(thr)),
                np.maximum(frozen / FROZEN_BITS, n_range / RANGE_BYTES),
                0.0,
            ),
            trans_eff,
            sig_score,
        ]
    )
    payload = np.maximum(rest, np.where(ctr_bad, COUNTER_SCORE, 0.0))
    kn = known
    score[kn] = np.maximum(time_score, payload)[kn]
    evidence |= np.where(kn & early, E_EARLY, 0).astype(np.int16)
    evidence |= np.where(dlc_bad, E_DLC, 0).astype(np.int16)
    evidence |= np.where(frozen > 0, E_FROZEN, 0).astype(np.int16)
    evidence |= np.where(kn & (trans >= 1.0), E_TRANSITION, 0).astype(np.int16)
    evidence |= np.where(n_range > 0, E_RANGE, 0).astype(np.int16)
    evidence |= np.where(kn & unseen_pair & early, E_SEQUENCE, 0).astype(np.int16)
    evidence |= np.where(phase_score >= 1.0, E_PHASE, 0).astype(np.int16)
    evidence |= np.where(ctr_bad, E_COUNTER, 0).astype(np.int16)

    # Names of known-id alerts.
    pay_alert = kn & (payload >= 1.0)
    fuzz = dlc_bad | (frozen >= p.const_fuzz_bits)
    time_only = kn & early & ~pay_alert
    flood = time_only & has[2] & (dts[2] < lo)
    prev_time_only = np.concatenate([[False], time_only[:-1]]) if n else time_only
    prev_ids = np.concatenate([[ids[0] if n else 0], ids[:-1]]) if n else ids
    gap_any = np.concatenate([[np.inf], np.diff(t)]) if n else t
    seq = time_only & ~flood & prev_time_only & (prev_ids != ids) & (gap_any < lo)
    # Only the count broken: a genuine payload out of its sequence, i.e. replayed.
    counter_only = ctr_bad & (rest < 1.0)
    named = np.select(
        [
            pay_alert & fuzz,
            pay_alert & counter_only & ~late,
            pay_alert & early & ~late,
            pay_alert,
            late,
            flood,
            seq,
            time_only,
        ],
        [
            PAYLOAD_FUZZING,
            REPLAY,
            SPOOFING,
            MASQUERADE,
            MASQUERADE,
            FLOODING,
            SEQUENCE_REPLAY,
            REPLAY,
        ],
        NONE,
    )
    attack[kn] = named[kn]
    attack[score < 1.0] = NONE

    suppressed = _suppression(model, t, row)
    if not in_order:
        inverse = np.empty(n, dtype=np.int64)
        inverse[order] = np.arange(n)
        score, attack, evidence = score[inverse], attack[inverse], evidence[inverse]
        sig_which = None if sig_which is None else sig_which[inverse]
        suppressed = [(int(order[i]), rr) for i, rr in suppressed]
    return FrameScores(score, attack, evidence, suppressed, sig_which)


def _suppression(
    model: IdsModel, t: npt.NDArray[np.float64], row: npt.NDArray[np.int64]
) -> list[tuple[int, int]]:
    """(frame, row) where a frame opening a new tick finds an id silent too long."""
    n = t.size
    if n < 2:
        return []
    tick = np.floor(t / TICK_S)
    ticks = np.flatnonzero(tick[1:] > tick[:-1]) + 1
    found: list[tuple[int, int]] = []
    order = np.argsort(row, kind="stable")
    bounds = np.searchsorted(row[order], np.arange(len(model) + 1))
    for r in np.flatnonzero(np.isfinite(model.dt_sup)):
        own = order[bounds[r] : bounds[r + 1]]  # frame indices of row r, ascending
        pos = np.searchsorted(own, ticks) - 1
        last = np.where(pos >= 0, t[own[np.maximum(pos, 0)]] if own.size else t[0], t[0])
        over = t[ticks] - last > model.dt_sup[r]
        # One report per silence: the first tick of each run with the same last frame.
        fresh = over & ~np.concatenate([[False], over[:-1] & (pos[1:] == pos[:-1])])
        found.extend((int(i), int(r)) for i in ticks[fresh])
    found.sort()
    return found


# -- alerts ------------------------------------------------------------------------------


@dataclass(slots=True)
class Alert:
    """One incident: frames of one attack type (and id) less than ``gap_s`` apart."""

    time: float  # first frame, seconds (the capture's clock)
    last_time: float
    attack: str
    arbitration_id: int | None  # None: many ids (id fuzzing)
    score: float
    frames: int
    evidence: list[str]
    signal: str | None = None
    ids: list[int] = field(default_factory=list)  # id fuzzing: the first ids seen

    def key(self) -> tuple[float, str, int]:
        return (self.time, self.attack, -1 if self.arbitration_id is None else self.arbitration_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "last_time": self.last_time,
            "attack": self.attack,
            "arbitration_id": self.arbitration_id,
            "signal": self.signal,
            "score": self.score,
            "frames": self.frames,
            "evidence": self.evidence,
            "ids": self.ids,
        }


class AlertAggregator:
    """Merges alerting frames into :class:`Alert` incidents; both scorers feed it the same
    events in the same order, so they give the same alerts. Memory: one open incident per
    (attack, id), closed once ``gap_s`` passes without a frame."""

    def __init__(self, gap_s: float = 1.0, max_ids: int = 16) -> None:
        self.gap_s = gap_s
        self.max_ids = max_ids
        self._open: dict[tuple[int, int], Alert] = {}

    def add(
        self,
        t: float,
        attack: int,
        arbitration_id: int,
        score: float,
        evidence: int,
        signal: str | None = None,
    ) -> list[Alert]:
        """Record one event; returns the incidents it closed (quiet for ``gap_s``). The
        incident names the first signal any of its frames named (the onset)."""
        closed = self._expire(t)
        many = attack == ID_FUZZING
        key = (attack, -1 if many else arbitration_id)
        alert = self._open.get(key)
        if alert is None:
            alert = Alert(
                time=t,
                last_time=t,
                attack=ATTACKS[attack],
                arbitration_id=None if many else arbitration_id,
                score=score,
                frames=0,
                evidence=evidence_names(evidence),
            )
            self._open[key] = alert
        alert.last_time = t
        alert.frames += 1
        if alert.signal is None:
            alert.signal = signal
        alert.score = max(alert.score, score)
        for name in evidence_names(evidence):
            if name not in alert.evidence:
                alert.evidence.append(name)
        if many and arbitration_id not in alert.ids and len(alert.ids) < self.max_ids:
            alert.ids.append(arbitration_id)
        return closed

    def _expire(self, t: float) -> list[Alert]:
        done = [key for key, a in self._open.items() if t - a.last_time > self.gap_s]
        return [self._open.pop(key) for key in done]

    def flush(self) -> list[Alert]:
        out = list(self._open.values())
        self._open.clear()
        return out


def alerts_from_scores(
    model: IdsModel, frames: CanFrames, scores: FrameScores, gap_s: float = 1.0
) -> list[Alert]:
    """The incidents of a batch-scored log, in the order the streaming scorer closes them
    (then sorted by time)."""
    order = np.argsort(frames.timestamp, kind="stable")
    flagged = scores.alert[order]
    supp: dict[int, list[int]] = {}
    for i, r in scores.suppressed:
        supp.setdefault(i, []).append(r)
    rank = np.empty(len(frames), dtype=np.int64)
    rank[order] = np.arange(len(frames))
    events = sorted(set(np.flatnonzero(flagged).tolist()) | {int(rank[i]) for i in supp})
    names = model.signals.names if model.signals is not None else []
    which = scores.signal
    agg = AlertAggregator(gap_s)
    out: list[Alert] = []
    for pos in events:
        i = int(order[pos])
        t = float(frames.timestamp[i])
        for r in supp.get(i, []):
            out += agg.add(t, SUPPRESSION, int(model.ids[r]), 1.0, E_SILENCE)
        if flagged[pos]:
            out += agg.add(
                t,
                int(scores.attack[i]),
                int(frames.arbitration_id[i]),
                float(scores.score[i]),
                int(scores.evidence[i]),
                None if which is None or which[i] < 0 else names[int(which[i])],
            )
    out += agg.flush()
    return sorted(out, key=Alert.key)


def iter_frames(frames: CanFrames) -> Iterator[tuple[float, int, int, bytes]]:
    """(timestamp, id, dlc, 8 payload bytes) per frame, for feeding a streaming scorer."""
    data = np.ascontiguousarray(frames.data).tobytes()
    for i, (t, a, d) in enumerate(
        zip(
            frames.timestamp.tolist(),
            frames.arbitration_id.tolist(),
            frames.dlc.tolist(),
            strict=True,
        )
    ):
        yield t, a, d, data[8 * i : 8 * i + 8]


def feed(scorer: Any, frames: Iterable[tuple[float, int, int, bytes]]) -> None:
    for t, a, d, payload in frames:
        scorer.push(t, a, d, payload)
