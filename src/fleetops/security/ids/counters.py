"""Alive counters: a nibble or byte of a frame that steps by a fixed amount every frame.

ECUs count their frames so receivers can tell a fresh frame from a stale or repeated one
(AUTOSAR E2E's alive counter; older ECUs do the same without the name). The counter does
not depend on what the car is doing, so it carries over from one drive to any other, and
a frame that does not continue it was not sent by the ECU in sequence: a replayed frame
(a copy from another moment), or a forged one from a sender that does not keep the count.

Learned per id from benign traffic: the first byte (then nibble) whose value steps by
the same odd amount ``d`` modulo ``N`` in at least :data:`COUNTER_SHARE` of consecutive
frames, and by ``m·d`` with ``1 ≤ m ≤ N / 4`` in all of them (``m > 1``: frames the logger
lost); the largest ``m`` seen is what scoring accepts, or
more where the time since the previous frame spans more of the id's periods (frames lost
to a busy bus: the count went on while they were not seen, ``round(Δt / period) + 1``).

Scoring: a frame continues the count of its id's previous frame, or — when that frame
itself broke the count (an extra frame) — of the one before it, or the one before that.
So an injected frame breaks it and the real frame after it does not. An injected frame
may happen to continue the count (1 in 8 for a nibble): the real frame after it is then
judged against the one before as well, unless it repeats the injected frame's count
exactly — a frame repeating its predecessor's count is what a replay of that frame
looks like, excused only when the predecessor was early (the timing rules flag it).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
COUNTER_SHARE = 0.99  # consecutive frames stepping by exactly d
MIN_MULTIPLE = 1  # lost frames are accepted by the time they took (below)
COUNTER_SCORE = 2.0  # a broken count alerts on its own


class CounterTable(NamedTuple):
    """Per model row: the counter's bit position, width (0: none), inverse of its step
    modulo 2**width, largest accepted multiple of the step, and the id's period (0: not
    periodic)."""

    shift: I64
    bits: I64
    inverse: I64
    multiple: I64
    period: F64


def fit_counter(words: list[U64], min_pairs: int) -> tuple[int, int, int, int]:
    """``(shift, bits, inverse of the step mod 2**bits, largest multiple)`` of the id's
    counter in its payload words (one array per recording, in time order; ``shift``: bit
    position in the little-endian word), or ``(0, 0, 0, 0)`` when it has none."""
    if sum(max(w.size - 1, 0) for w in words) < min_pairs:
        return 0, 0, 0, 0
    for bits in (8, 4):
        n = 1 << bits
        mask = n - 1
        for shift in range(0, 64, bits):
            steps = np.concatenate(
                [
                    (
                        (w[1:] >> np.uint64(shift)).astype(np.int64)
                        - (w[:-1] >> np.uint64(shift)).astype(np.int64)
                    )
                    & mask
                    for w in words
                ]
            )
            counts = np.bincount(steps, minlength=n)
            step = int(np.argmax(counts))
            if step % 2 == 0 or counts[step] < COUNTER_SHARE * steps.size:
                continue  # an even step has no inverse mod 2**bits: not a counter we judge
            inverse = pow(step, -1, n)
            multiple = (steps * inverse) & mask
            if multiple.min() >= 1 and multiple.max() <= n // 4:
                return shift, bits, inverse, max(int(multiple.max()), MIN_MULTIPLE)
    return 0, 0, 0, 0


def counter_broken(
    table: CounterTable,
    word: U64,
    dlc: npt.NDArray[np.uint8],
    row: I64,
    prev: list[I64],
    dts: list[F64],
    early: npt.NDArray[np.bool_],
) -> npt.NDArray[np.bool_]:
    """Per frame (in time order), whether it breaks its id's count. ``row``: model row of
    each frame (-1: unknown id); ``prev``: index of the 1st, 2nd and 3rd previous frame
    of the same id (-1: none) and ``dts`` the time since each; ``early``: the timing
    rules' verdict per frame."""
    r = np.maximum(row, 0)
    b = table.bits[r]
    judged = (row >= 0) & (b > 0) & (dlc.astype(np.int64) * 8 >= table.shift[r] + b)
    mask = (np.int64(1) << b) - 1
    value = (word >> table.shift[r].astype(np.uint64)).astype(np.int64) & mask
    inverse, multiple = table.inverse[r], table.multiple[r]

    per = table.period[r]
    with np.errstate(invalid="ignore", divide="ignore"):
        # Frames lost between two consecutive ones: only the step to the previous frame
        # may stretch with time (an older frame explaining this one must be a close one).
        span = np.where(per > 0, np.rint(dts[0] / per) + 1.0, 0.0)
    none = np.zeros(per.size)

    def continues(q: I64, lost: F64) -> npt.NDArray[np.bool_]:
        m = ((value - value[np.maximum(q, 0)]) * inverse) & mask
        out: npt.NDArray[np.bool_] = (q >= 0) & (m >= 1) & ((m <= multiple) | (m <= lost))
        return out

    first, second, third = (continues(q, d) for q, d in zip(prev, (span, none, none), strict=True))
    pair_ok = judged & first  # the frame continues the one right before it
    p1, p2 = np.maximum(prev[0], 0), np.maximum(prev[1], 0)
    has1, has2 = prev[0] >= 0, prev[1] >= 0
    repeat = value == value[p1]
    explained = (
        first
        | (has1 & (~repeat | ~pair_ok[p1] | early[p1]) & second)
        | (has1 & ~pair_ok[p1] & has2 & ~pair_ok[p2] & third)
    )
    out: npt.NDArray[np.bool_] = judged & (prev[0] >= 0) & ~explained
    return out
