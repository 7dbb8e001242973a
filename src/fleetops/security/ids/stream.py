"""The streaming form of the scorer: one frame at a time, bounded memory, the same scores
and alerts as :func:`~fleetops.security.ids.detect.score_frames` on the same frames.

State: per known id its last three timestamps and payloads, 4096 slots for unknown ids,
the previous frame, the open alert incidents and, for a model with signals, each modelled
signal's latest value. Frames are taken in arrival order (a bus
delivers them in time order; the batch scorer sorts a log first).
"""

# Per-frame code compares instead of calling max() / min() / any(): the same values (the
# first of equals, as max), a builtin call less each (a good part of the per-frame cost).
# ruff: noqa: PLR1730

from __future__ import annotations

import math
from collections.abc import Iterable

from fleetops.security.ids.counters import COUNTER_SCORE
from fleetops.security.ids.detect import (
    _SLOTS,
    _TINY,
    DLC_SCORE,
    E_COUNTER,
    E_DLC,
    E_EARLY,
    E_FROZEN,
    E_PHASE,
    E_RANGE,
    E_SEQUENCE,
    E_SILENCE,
    E_TRANSITION,
    E_UNKNOWN,
    FLOODING,
    FROZEN_BITS,
    ID_FUZZING,
    MASQUERADE,
    NONE,
    PAYLOAD_FUZZING,
    RANGE_BYTES,
    REPLAY,
    SEQUENCE_REPLAY,
    SIGNAL_ALONE,
    SPOOFING,
    SUPPRESSION,
    TICK_S,
    UNKNOWN_SCORE,
    Alert,
    AlertAggregator,
    byte_tables,
)
from fleetops.security.ids.model import PHASE_CYCLES, IdsModel
from fleetops.security.ids.signals import SignalState

_INF = math.inf
# A known id's constants: dt_lo, dt_hi, dt3_lo, period, phase_tol, DLC mask, frozen-bit
# mask and values, transition threshold, byte lo / hi, per byte its 256 surprises.
_Row = tuple[
    float, float, float, float, float, int, int, int, float, bytes, bytes, tuple[list[float], ...]
]


class StreamingScorer:
    """Score frames one by one; :meth:`push` returns the frame's (score, attack, evidence)
    and collects closed incidents in :attr:`alerts`."""

    def __init__(self, model: IdsModel, gap_s: float = 1.0) -> None:
        self.model = model
        p = model.params
        self.k = k = len(model)
        self._row = {int(a): r for r, a in enumerate(model.ids.tolist())}
        self._sup = model.dt_sup.tolist()
        self._pairs = [bytes(r) for r in model.pairs.tolist()]
        tables = byte_tables(model)
        # Per known row its constants as one tuple of plain Python numbers: one lookup per
        # frame instead of one per attribute (see _Row).
        self._const: list[_Row] = [
            (
                lo,
                hi,
                lo3,
                period,
                tol,
                int(dlc_mask),
                int(cmask),
                int(cval),
                thr,
                bytes(blo),
                bytes(bhi),
                tuple(tables[r, j].tolist() for j in range(8)),
            )
            for r, (lo, hi, lo3, period, tol, dlc_mask, cmask, cval, thr, blo, bhi) in enumerate(
                zip(
                    model.dt_lo.tolist(),
                    model.dt_hi.tolist(),
                    model.dt3_lo.tolist(),
                    model.period.tolist(),
                    model.phase_tol.tolist(),
                    model.dlc_mask.tolist(),
                    model.const_mask.tolist(),
                    model.const_val.tolist(),
                    model.flip_thr.tolist(),
                    model.byte_lo.tolist(),
                    model.byte_hi.tolist(),
                    strict=True,
                )
            )
        ]
        self._flood_s = p.flood_s
        self._fuzz_bits = p.const_fuzz_bits
        # Per known row its alive counter: (shift, mask, inverse of the step, largest
        # multiple, DLC needed) or None (counters.counter_broken).
        self._ctr: list[tuple[int, int, int, int, int] | None] = [
            (sh, (1 << b) - 1, inv, mult, (sh + b + 7) // 8) if b else None
            for sh, b, inv, mult in zip(
                model.ctr_shift.tolist(),
                model.ctr_bits.tolist(),
                model.ctr_inverse.tolist(),
                model.ctr_multiple.tolist(),
                strict=True,
            )
        ]
        # Per known row: the last three (time, payload word, whether it continued the
        # count of the frame before it, whether it was early), newest first.
        self._hist: list[list[tuple[float, int, bool, bool]]] = [[] for _ in range(k)]
        self._last_seen: list[float | None] = [None] * k
        self._off = [False] * k  # the id's last frame was off phase
        self._reported = [False] * k
        self._unknown: dict[int, tuple[int, float]] = {}
        self._prev_row = k
        self._prev_id = -1
        self._prev_t = _INF
        self._prev_time_only = False
        self._first_t: float | None = None
        self._tick: float | None = None
        self._agg = AlertAggregator(gap_s)
        self.alerts: list[Alert] = []
        self.frames = 0
        sm = model.signals
        self._signals = None if sm is None else SignalState(sm)
        self._signal_names = [] if sm is None else sm.names
        self.signal = -1  # the signal the last frame named (index into the names), -1: none

    def _check_silence(self, t: float) -> None:
        first = self._first_t
        assert first is not None
        for r in range(self.k):
            sup = self._sup[r]
            if sup == _INF or self._reported[r]:
                continue
            last = self._last_seen[r]
            if t - (first if last is None else last) > sup:
                self._reported[r] = True
                self.alerts += self._agg.add(t, SUPPRESSION, int(self.model.ids[r]), 1.0, E_SILENCE)

    def push(
        self, t: float, arbitration_id: int, dlc: int, payload: bytes
    ) -> tuple[float, int, int]:
        """Score one frame (``payload``: 8 bytes, zero past the DLC)."""
        self.frames += 1
        if self._first_t is None:
            self._first_t = t
        tick = math.floor(t / TICK_S)
        last_tick = self._tick
        if last_tick is None or tick > last_tick:
            if last_tick is not None:
                self._check_silence(t)
            self._tick = tick
        r = self._row.get(arbitration_id, -1)
        word = int.from_bytes(payload, "little")
        score = 0.0
        attack = NONE
        evidence = 0
        time_only = False
        which = -1
        if r < 0:
            slot = arbitration_id & _SLOTS
            seen = self._unknown.get(slot)
            score = UNKNOWN_SCORE
            evidence = E_UNKNOWN
            flood = seen is not None and seen[0] == arbitration_id and t - seen[1] < self._flood_s
            attack = FLOODING if flood else ID_FUZZING
            self._unknown[slot] = (arbitration_id, t)
            prev_row = -1
        else:
            hist = self._hist[r]
            n_hist = len(hist)
            lo, hi, lo3, period, tol, dlc_mask, cmask, cval, thr, blo, bhi, tab = self._const[r]
            dts = [t - ht for ht, _, _, _ in hist]
            # Phase: the closest in phase of the last frames (as model.phase_residual).
            phase_score = 0.0
            off = 0.0
            phased = False
            if tol != _INF and period > 0:
                best = _INF
                for d in dts:
                    cycles = float(round(d / period))
                    if cycles < 1.0:
                        cycles = 1.0
                    dev = d - cycles * period
                    if cycles <= PHASE_CYCLES and abs(dev) < best:
                        best = abs(dev)
                        off = dev
                if best != _INF:
                    phased = True
                    phase_score = abs(off) / tol
            in_phase = phased and phase_score < 1.0
            # As score_frames: a late frame counts only after an off-phase one.
            off_raw = phase_score >= 1.0
            late_raw = off_raw and dts[0] > period
            if late_raw and not (hist and self._off[r]):
                phase_score = 0.0
            self._off[r] = off_raw
            time_score = 0.0
            if hist and lo > 0:
                # As model.excused_after_extra.
                excused = (
                    n_hist > 1
                    and (lo <= dts[1] <= hi or (n_hist > 2 and lo <= dts[2] <= hi))
                    and (in_phase or dts[1] - dts[0] < lo)
                )
                if not excused:
                    d = dts[0]
                    time_score = lo / (d if d >= _TINY else _TINY)
            if n_hist >= 3 and lo3 > 0:
                d = dts[2]
                x = lo3 / (d if d >= _TINY else _TINY)
                if x > time_score:
                    time_score = x
            if phase_score > time_score:
                time_score = phase_score
            early = time_score >= 1.0
            late = early and late_raw and phase_score >= 1.0 and time_score == phase_score
            unseen_pair = self._pairs[self._prev_row][r] == 0
            dlc_bad = (dlc_mask >> dlc) & 1 == 0
            frozen = ((word ^ cval) & cmask).bit_count()
            n_range = 0
            for j in range(dlc):
                b = payload[j]
                if b < blo[j] or b > bhi[j]:
                    n_range += 1
            trans = 0.0
            if hist and thr != _INF:
                # The nearest of the last three frames that explains the transition.
                t0, t1, t2, t3, t4, t5, t6, t7 = tab
                best = _INF
                chosen = -1.0
                for _, hw, _, _ in hist:
                    x = word ^ hw
                    # The byte surprises summed in byte order from 0.0, as byte_tables.
                    s = (
                        0.0
                        + t0[x & 0xFF]
                        + t1[(x >> 8) & 0xFF]
                        + t2[(x >> 16) & 0xFF]
                        + t3[(x >> 24) & 0xFF]
                        + t4[(x >> 32) & 0xFF]
                        + t5[(x >> 40) & 0xFF]
                        + t6[(x >> 48) & 0xFF]
                        + t7[(x >> 56) & 0xFF]
                    )
                    if s < thr:
                        chosen = s
                        break
                    if s < best:
                        best = s
                trans = (chosen if chosen >= 0 else best) / thr
            trans_eff = trans if early else 0.0
            absolute = 0.0
            if early or (lo <= 0 and thr == _INF):
                absolute = frozen / FROZEN_BITS
                x = n_range / RANGE_BYTES
                if x > absolute:
                    absolute = x
            payload_score = DLC_SCORE if dlc_bad else 0.0
            if absolute > payload_score:
                payload_score = absolute
            if trans_eff > payload_score:
                payload_score = trans_eff
            # The alive counter: continues the previous frame, or (that one an extra frame
            # breaking the count) the one before it, or the one before that.
            ctr = self._ctr[r]
            continues = ctr_bad = False
            if ctr is not None and dlc >= ctr[4] and hist:
                # A step up to the learned multiple, or to as many periods as passed + 1.
                shift, mask, inv, mult, _ = ctr
                value = (word >> shift) & mask
                m = ((value - ((hist[0][1] >> shift) & mask)) * inv) & mask
                continues = m >= 1 and (
                    m <= mult or (period > 0 and m <= round(dts[0] / period) + 1.0)
                )
                explained = continues
                # Judged against the frame before too, unless it repeats the previous
                # frame's count (a replay of it) and that frame kept the count on time.
                if not explained and n_hist > 1 and (m != 0 or not hist[0][2] or hist[0][3]):
                    m = ((value - ((hist[1][1] >> shift) & mask)) * inv) & mask
                    explained = 1 <= m <= mult
                    if not explained and n_hist > 2 and not hist[1][2] and not hist[0][2]:
                        m = ((value - ((hist[2][1] >> shift) & mask)) * inv) & mask
                        explained = 1 <= m <= mult
                ctr_bad = not explained
            signals = self._signals
            if signals is not None:
                sig_score, which, evidence = signals.push(
                    t, arbitration_id, dlc, word, payload, early
                )
                if not early:
                    sig_score = sig_score / SIGNAL_ALONE
                if sig_score < 1.0:
                    which = -1
                if sig_score > payload_score:
                    payload_score = sig_score
            rest = payload_score
            if ctr_bad and payload_score < COUNTER_SCORE:
                payload_score = COUNTER_SCORE
            score = payload_score if payload_score > time_score else time_score
            if phase_score >= 1.0:
                evidence |= E_PHASE
            if early:
                evidence |= E_EARLY
                if unseen_pair:
                    evidence |= E_SEQUENCE
            if dlc_bad:
                evidence |= E_DLC
            if frozen:
                evidence |= E_FROZEN
            if trans >= 1.0:
                evidence |= E_TRANSITION
            if n_range:
                evidence |= E_RANGE
            if ctr_bad:
                evidence |= E_COUNTER
            pay_alert = payload_score >= 1.0
            time_only = early and not pay_alert
            if pay_alert:
                if dlc_bad or frozen >= self._fuzz_bits:
                    attack = PAYLOAD_FUZZING
                elif ctr_bad and rest < 1.0 and not late:
                    attack = REPLAY
                else:
                    attack = SPOOFING if early and not late else MASQUERADE
            elif late:
                attack = MASQUERADE
            elif time_only:
                if n_hist >= 3 and t - hist[2][0] < lo:
                    attack = FLOODING
                elif (
                    self._prev_time_only
                    and self._prev_id != arbitration_id
                    and t - self._prev_t < lo
                ):
                    attack = SEQUENCE_REPLAY
                else:
                    attack = REPLAY
            hist.insert(0, (t, word, continues, early))
            if n_hist >= 3:
                hist.pop()
            self._last_seen[r] = t
            self._reported[r] = False
            prev_row = r
        self.signal = which
        if score < 1.0:
            attack = NONE
        else:
            name = self._signal_names[which] if which >= 0 else None
            self.alerts += self._agg.add(t, attack, arbitration_id, score, evidence, name)
        self._prev_row = self.k if prev_row < 0 else prev_row
        self._prev_id = arbitration_id
        self._prev_t = t
        self._prev_time_only = time_only
        return score, attack, evidence

    def push_many(self, frames: Iterable[tuple[float, int, int, bytes]]) -> None:
        push = self.push
        for t, a, d, payload in frames:
            push(t, a, d, payload)

    def flush(self) -> list[Alert]:
        """Close every open incident; returns all alerts so far, sorted by time."""
        self.alerts += self._agg.flush()
        return sorted(self.alerts, key=Alert.key)
