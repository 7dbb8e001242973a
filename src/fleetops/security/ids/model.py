"""The learned model of normal CAN traffic per arbitration id, and its file form.

Everything is learned from attack-free frames with quantiles and fixed margins, so the
thresholds carry over to other captures of the same vehicle:

* timing: the normal band ``[lo, hi]`` of the inter-arrival time (0.1 % / 99.9 %
  quantiles, widened by ``margin``), the silence after which an id counts as
  suppressed and, for ids sent on a steady cycle, the period and how far a frame may
  stray from the phase of the last frames (see :func:`phase_residual`);
* payload: the DLCs seen, the bits that never changed (mask and value), each bit's flip
  probability between consecutive frames (a transition scores the surprise of the bits it
  flips) and the byte value ranges;
* counters: a nibble or byte stepping by a fixed amount every frame
  (:mod:`fleetops.security.ids.counters`);
* sequence: which id may follow which (a bitmap of seen pairs);
* rate: the shortest time two gaps took (three gaps in less: extra frames);
* signals (where a DBC is given): per signal its physical range, rate of change and
  relations to other signals (:mod:`fleetops.security.ids.signals`).

:func:`train` then calibrates on held-out benign traffic (other recordings, or other time
blocks of a single one): rules that fire there are dropped, thresholds crossed there are
widened, so what survives carries over to drives training never saw.

The model is saved as one compressed ``.npz`` (arrays only, no pickle).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from cantools.database.can import Database

from fleetops.core.errors import ConfigError, ValidationError
from fleetops.core.types import CanFrames
from fleetops.security.ids.counters import CounterTable, fit_counter
from fleetops.security.ids.signals import (
    SignalModel,
    concat_signals,
    fit_signals,
    infer_signals,
)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_COUNTER = ("ctr_shift", "ctr_bits", "ctr_inverse", "ctr_multiple")
# 2: rate check (dt3_lo) and calibration summary; 3: period / phase; 4: optional per-signal
# part (a version 3 file is a model without it, and still loads); 5: alive counters (older
# files load as models without them).
MODEL_VERSION = 5
_READABLE = (3, 4, 5)
LAGS = 3  # payload and timing look back this many frames of the same id
MIN_FRAMES = 20  # fewer training frames than this: the id's statistics are not trusted
# Phase is judged against the last frames only while they are at most this many periods
# back: a period learned to ~0.01 % drifts by less than the jitter over a few cycles.
PHASE_CYCLES = 4
# A cycle whose frames stray from phase by a quarter period or more (jittery senders,
# two-slot schedules) has no phase worth judging.
PHASE_MAX_TOL = 0.25


@dataclass(slots=True)
class IdsParams:
    """The margins applied around what training saw (not tuned per capture)."""

    quantile: float = 0.001  # timing band: [q, 1 - q] of the inter-arrival times
    margin: float = 0.1  # the band widened by this fraction on each side
    payload_margin: float = 1.25  # a transition must be this much above the benign maximum
    suppression_factor: float = 3.0  # silence longer than this × the 99.9 % gap
    flood_s: float = 0.01  # an unknown id repeating faster than this is a flood
    const_fuzz_bits: int = 3  # this many frozen bits broken: random payload, not a signal
    min_frames: int = MIN_FRAMES
    blocks: int = 4  # one training capture: held-out calibration splits it in this many
    infer_words: bool = True  # learn relations between 16-bit words of an id (no DBC needed)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(slots=True)
class IdsModel:
    """Per known id (row ``k`` of each array, ids sorted ascending) what normal looks like."""

    ids: npt.NDArray[np.uint32]
    dt_lo: F64  # shorter inter-arrival than this is early (0: timing not judged)
    dt_hi: F64  # the upper end of the normal band
    dt3_lo: F64  # three gaps shorter than this (two gaps' minimum): extra frames (0: off)
    dt_sup: F64  # silence longer than this is suppression (inf: not judged)
    period: F64  # the id's cycle (0: not periodic enough to judge phase)
    phase_tol: F64  # a frame off the phase of all its last frames by more than this alerts
    dlc_mask: npt.NDArray[np.uint16]  # bit d set: DLC d seen
    const_mask: npt.NDArray[np.uint64]  # bits that never changed in training
    const_val: npt.NDArray[np.uint64]
    flip_w: F64  # (k, 64) surprise of flipping each bit, -log p(flip)
    flip_thr: F64  # transition surprise above this is a payload anomaly (inf: not judged)
    byte_lo: npt.NDArray[np.uint8]  # (k, 8)
    byte_hi: npt.NDArray[np.uint8]
    pairs: npt.NDArray[np.uint8]  # (k+1, k+1) bitmap: row previous id, column next id
    # Alive counter per id (counters.py): bit position, width (0: none), inverse of the
    # step modulo 2**width, largest multiple of the step accepted.
    ctr_shift: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ctr_bits: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ctr_inverse: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ctr_multiple: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    params: IdsParams = field(default_factory=IdsParams)
    trained_frames: int = 0
    # What held-out calibration dropped or widened (see :func:`train`), for reports.
    calibration: dict[str, int] = field(default_factory=dict)
    # Per-signal checks: DBC signals where training was given a DBC, inferred words.
    signals: SignalModel | None = None

    def __len__(self) -> int:
        return int(self.ids.size)

    def counter_table(self) -> CounterTable:
        return CounterTable(
            self.ctr_shift, self.ctr_bits, self.ctr_inverse, self.ctr_multiple, self.period
        )

    def index_of(self, arbitration_id: npt.NDArray[np.uint32]) -> npt.NDArray[np.int64]:
        """Row of each id in the model, -1 for an id never seen in training."""
        pos = np.searchsorted(self.ids, arbitration_id)
        pos = np.minimum(pos, max(len(self) - 1, 0))
        hit = self.ids[pos] == arbitration_id if len(self) else np.zeros(pos.size, bool)
        return np.where(hit, pos, -1).astype(np.int64)

    # -- file form ---------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        meta: dict[str, Any] = {
            "version": MODEL_VERSION,
            "params": self.params.to_dict(),
            "trained_frames": self.trained_frames,
            "calibration": self.calibration,
        }
        extra: dict[str, Any] = {}
        if self.signals is not None:
            meta["signals"] = self.signals.names
            extra = self.signals.to_arrays()
        np.savez_compressed(
            buffer,
            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            **extra,
            ids=self.ids,
            dt_lo=self.dt_lo,
            dt_hi=self.dt_hi,
            dt3_lo=self.dt3_lo,
            dt_sup=self.dt_sup,
            period=self.period,
            phase_tol=self.phase_tol,
            dlc_mask=self.dlc_mask,
            const_mask=self.const_mask,
            const_val=self.const_val,
            # Surprise to 1/16 nat is plenty: float16 halves the largest array.
            flip_w=self.flip_w.astype(np.float16),
            flip_thr=self.flip_thr,
            byte_lo=self.byte_lo,
            byte_hi=self.byte_hi,
            pairs=np.packbits(self.pairs, axis=None),
            **{name: getattr(self, name) for name in _COUNTER},
        )
        return buffer.getvalue()

    def save(self, path: str | Path) -> Path:
        target = Path(path)
        try:
            target.write_bytes(self.to_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot write the IDS model to {target}: {exc}") from exc
        return target

    @classmethod
    def from_bytes(cls, raw: bytes, where: str = "model") -> IdsModel:
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                if meta.get("version") not in _READABLE:
                    raise ConfigError(f"{where}: IDS model version {meta.get('version')} unknown")
                k = int(z["ids"].size)
                pairs = np.unpackbits(z["pairs"])[: (k + 1) ** 2].reshape(k + 1, k + 1)
                names = meta.get("signals")
                signals = None if names is None else SignalModel.from_arrays(list(names), z)
                counters = {  # none before version 5
                    name: (z[name] if name in z else np.zeros(k)).astype(np.int64)
                    for name in _COUNTER
                }
                if any(a.shape != (k,) for a in counters.values()):
                    raise ConfigError(f"{where}: the IDS model's counter arrays are inconsistent")
                return cls(
                    ids=z["ids"].astype(np.uint32),
                    dt_lo=z["dt_lo"].astype(np.float64),
                    dt_hi=z["dt_hi"].astype(np.float64),
                    dt3_lo=z["dt3_lo"].astype(np.float64),
                    dt_sup=z["dt_sup"].astype(np.float64),
                    period=z["period"].astype(np.float64),
                    phase_tol=z["phase_tol"].astype(np.float64),
                    dlc_mask=z["dlc_mask"].astype(np.uint16),
                    const_mask=z["const_mask"].astype(np.uint64),
                    const_val=z["const_val"].astype(np.uint64),
                    flip_w=z["flip_w"].astype(np.float64),
                    flip_thr=z["flip_thr"].astype(np.float64),
                    byte_lo=z["byte_lo"].astype(np.uint8),
                    byte_hi=z["byte_hi"].astype(np.uint8),
                    pairs=pairs.astype(np.uint8),
                    **counters,
                    params=IdsParams(**meta["params"]),
                    trained_frames=int(meta.get("trained_frames", 0)),
                    calibration={
                        str(a): int(b) for a, b in dict(meta.get("calibration", {})).items()
                    },
                    signals=signals,
                )
        except ConfigError:
            raise
        except Exception as exc:  # numpy/zip/json each fail their own way on a bad file
            raise ConfigError(f"{where}: not an IDS model file: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> IdsModel:
        source = Path(path)
        if not source.is_file():
            raise ConfigError(f"IDS model {source} does not exist or is not a file")
        return cls.from_bytes(source.read_bytes(), str(source))


# -- training ----------------------------------------------------------------------------

_BITS = np.arange(64, dtype=np.uint64)


def _sorted(frames: CanFrames) -> CanFrames:
    order = np.argsort(frames.timestamp, kind="stable")
    return frames if np.all(order[1:] > order[:-1]) else frames.take(order)


def same_id_history(ids: npt.NDArray[np.int64], lag: int) -> npt.NDArray[np.int64]:
    """Index of the ``lag``-th previous frame with the same id (-1 where none), for frames in
    time order; ``ids`` are model rows or any grouping key."""
    n = ids.size
    order = np.argsort(ids, kind="stable")
    out = np.full(n, -1, dtype=np.int64)
    if n > lag:
        same = ids[order[lag:]] == ids[order[:-lag]]
        out[order[lag:][same]] = order[:-lag][same]
    return out


def phase_residual(dts: list[F64], period: F64) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Per frame, the signed distance (seconds; > 0: late) from the nearest whole number of
    periods after the closest-in-phase of its last frames (``dts``: the gaps to them, inf
    where none), and whether any was near enough to judge.

    An injected frame on a periodic id leaves the real frames on their grid: the real frame
    after it is in phase with the one before the injection (not flagged), while the injected
    one is in phase with none of them. A masquerader on its own clock drifts off the grid.
    """
    best = np.full(period.size, np.inf)
    signed = np.zeros(period.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        for d in dts:
            cycles = np.maximum(np.rint(d / period), 1.0)
            r = d - cycles * period
            use = (cycles <= PHASE_CYCLES) & (np.abs(r) < best) & (period > 0)
            best = np.where(use, np.abs(r), best)
            signed = np.where(use, r, signed)
    return signed, np.isfinite(best)


def excused_after_extra(
    dts: list[F64], lo: F64, hi: F64, in_phase: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """Frames whose short gap is explained by an extra frame before them: the gap to the
    2nd or 3rd previous frame is normal, and either the frame is in phase (the phase check
    then flags the extra one) or the previous frame came sooner than ``lo`` after its own
    predecessor (``dts[1] - dts[0]``: the gap check flagged it). Otherwise the real frame
    after the extra one is the only one that shows it (two short gaps): not excused."""
    normal = np.zeros(lo.size, dtype=bool)
    for d in dts[1:]:
        normal |= (d >= lo) & (d <= hi)
    with np.errstate(invalid="ignore"):
        extra_flagged = (dts[1] - dts[0]) < lo
    return normal & (extra_flagged | in_phase)


def transition_surprise(
    flip_w: F64, rows: npt.NDArray[np.int64], xor: npt.NDArray[np.uint64]
) -> F64:
    """Σ of the flip surprise of each bit set in ``xor`` (one per frame, model row ``rows``)."""
    bits = ((xor[:, None] >> _BITS[None, :]) & np.uint64(1)).astype(np.float64)
    out: F64 = np.einsum("ij,ij->i", bits, flip_w[rows])
    return out


def _phase_fit(gaps: F64, lagged: F64, margin: float) -> tuple[float, float]:
    """(period, phase tolerance) of one id from its gaps and its (n, LAGS) gaps to the last
    frames; tolerance inf where the id keeps no steady phase."""
    mid = float(np.median(gaps))
    steady = gaps[(gaps > 0.5 * mid) & (gaps < 1.5 * mid)]
    if mid <= 0 or steady.size < MIN_FRAMES:
        return 0.0, np.inf
    period = float(np.median(steady))
    r, judged = phase_residual(list(lagged.T), np.full(lagged.shape[0], period))
    off = np.abs(r[judged])
    # Floor: 1 % of the period, below which timestamps (or a simulator) are too regular to
    # say anything about another drive's jitter.
    tol = max(float(off.max()) * (1 + margin), 0.01 * period) if off.size else np.inf
    return period, tol if tol < PHASE_MAX_TOL * period else np.inf


def _fit(parts: list[CanFrames], p: IdsParams) -> IdsModel:
    """Every rule learned from ``parts`` (sorted, non-empty timelines), uncalibrated."""
    all_ids = np.unique(np.concatenate([f.arbitration_id for f in parts])).astype(np.uint32)
    k = all_ids.size
    dts: list[list[F64]] = [[] for _ in range(k)]
    dt3s: list[list[F64]] = [[] for _ in range(k)]
    lagged: list[list[F64]] = [[] for _ in range(k)]  # (n, LAGS) gaps to the last frames
    xors: list[list[npt.NDArray[np.uint64]]] = [[] for _ in range(k)]
    payloads: list[list[npt.NDArray[np.uint8]]] = [[] for _ in range(k)]
    dlc_mask = np.zeros(k, dtype=np.uint16)
    pairs = np.zeros((k + 1, k + 1), dtype=np.uint8)
    for f in parts:
        rows = np.searchsorted(all_ids, f.arbitration_id).astype(np.int64)
        word = f.payload_u64
        prev = same_id_history(rows, 1)
        has = prev >= 0
        dt = np.where(has, f.timestamp - f.timestamp[np.maximum(prev, 0)], np.nan)
        prev2 = same_id_history(rows, LAGS - 1)
        dt2 = f.timestamp - f.timestamp[np.maximum(prev2, 0)]
        gaps = np.stack(
            [
                np.where(q >= 0, f.timestamp - f.timestamp[np.maximum(q, 0)], np.inf)
                for q in (prev, prev2, same_id_history(rows, LAGS))
            ],
            axis=1,
        )
        xor = np.where(has, word ^ word[np.maximum(prev, 0)], np.uint64(0))
        np.bitwise_or.at(dlc_mask, rows, (np.uint16(1) << f.dlc.astype(np.uint16)))
        # Row k stands for "start of capture" so the first frame has a predecessor.
        before = np.concatenate([[k], rows[:-1]])
        pairs[before, rows] = 1
        order = np.argsort(rows, kind="stable")
        bounds = np.searchsorted(rows[order], np.arange(k + 1))
        for r in range(k):
            sel = order[bounds[r] : bounds[r + 1]]
            if sel.size == 0:
                continue
            payloads[r].append(f.data[sel])
            sel_has = sel[has[sel]]
            dts[r].append(dt[sel_has])
            lagged[r].append(gaps[sel_has])
            dt3s[r].append(dt2[sel[prev2[sel] >= 0]])
            xors[r].append(xor[sel_has])
    dt_lo = np.zeros(k)
    dt_hi = np.full(k, np.inf)
    dt3_lo = np.zeros(k)
    dt_sup = np.full(k, np.inf)
    period = np.zeros(k)
    phase_tol = np.full(k, np.inf)
    const_mask = np.zeros(k, dtype=np.uint64)
    const_val = np.zeros(k, dtype=np.uint64)
    flip_w = np.zeros((k, 64))
    flip_thr = np.full(k, np.inf)
    byte_lo = np.zeros((k, 8), dtype=np.uint8)
    byte_hi = np.full((k, 8), 255, dtype=np.uint8)
    counters = np.zeros((4, k), dtype=np.int64)
    for r in range(k):
        # Per recording: a counter continues within one timeline only.
        counters[:, r] = fit_counter(
            [np.ascontiguousarray(d).view("<u8").reshape(-1) for d in payloads[r]], p.min_frames
        )
        data = np.concatenate(payloads[r])
        byte_lo[r], byte_hi[r] = data.min(axis=0), data.max(axis=0)
        d = np.concatenate(dts[r]) if dts[r] else np.zeros(0)
        x = np.concatenate(xors[r]) if xors[r] else np.zeros(0, dtype=np.uint64)
        if d.size < p.min_frames:
            continue  # too rare to judge: known id, nothing else
        q_lo, q_hi = np.quantile(d, [p.quantile, 1 - p.quantile])
        # Below every gap training saw (the quantile only guards against a long tail).
        dt_lo[r] = min(q_lo, float(d.min())) * (1 - p.margin)
        dt_hi[r] = q_hi * (1 + p.margin)
        # The rate check: an id sent at its cycle plus extra frames interleaved at the same
        # cycle (a spoofer or replayer on a second clock) passes the gap check, since every
        # frame has a normal gap to the one before last; but then three gaps fit in less
        # time than two ever took in training. (Against the time of three, one extra frame
        # would flag the next real frames too: the gap check already handles single ones.)
        d3 = np.concatenate(dt3s[r]) if dt3s[r] else np.zeros(0)
        if d3.size:
            dt3_lo[r] = min(float(np.quantile(d3, p.quantile)), float(d3.min())) * (1 - p.margin)
        dt_sup[r] = max(q_hi, float(d.max())) * p.suppression_factor
        period[r], phase_tol[r] = _phase_fit(d, np.concatenate(lagged[r]), p.margin)
        words = np.ascontiguousarray(data).view("<u8").reshape(-1)
        changed = np.bitwise_or.reduce(words ^ words[0])
        const_mask[r] = ~changed
        const_val[r] = words[0] & ~changed
        flips = ((x[:, None] >> _BITS[None, :]) & np.uint64(1)).sum(axis=0)
        # Laplace-smoothed flip probability; a frozen bit costs log(n) to flip.
        flip_w[r] = -np.log((flips + 0.5) / (x.size + 1.0))
        rows_r = np.full(x.size, r, dtype=np.int64)
        surprise = transition_surprise(flip_w, rows_r, x)
        flip_thr[r] = max(float(surprise.max()) * p.payload_margin, 1.0)
    return IdsModel(
        ids=all_ids,
        dt_lo=dt_lo,
        dt_hi=dt_hi,
        dt3_lo=dt3_lo,
        dt_sup=dt_sup,
        period=period,
        phase_tol=phase_tol,
        dlc_mask=dlc_mask,
        const_mask=const_mask,
        const_val=const_val,
        flip_w=flip_w,
        flip_thr=flip_thr,
        byte_lo=byte_lo,
        byte_hi=byte_hi,
        pairs=pairs,
        ctr_shift=counters[0],
        ctr_bits=counters[1],
        ctr_inverse=counters[2],
        ctr_multiple=counters[3],
        params=p,
        trained_frames=int(sum(len(f) for f in parts)),
    )


# -- calibration on held-out benign traffic ---------------------------------------------
#
# A rule learned on one drive (a bit that never changed, a byte's range, the shortest gap,
# the largest benign transition) may simply not have met the situation that breaks it:
# another drive legitimately breaks it, and every frame after the break alerts. So each
# rule is learned on part of the benign traffic and checked on the rest, the way the
# scorers would check it; a per-byte rule that fires on held-out benign traffic is dropped,
# a threshold that is crossed is widened to the held-out extreme with the usual margin.
# The final model is fitted on everything and keeps only what survived.


@dataclass(slots=True)
class _Overshoot:
    """What held-out benign traffic did against a model fitted without it (per full row)."""

    frozen_bits: npt.NDArray[np.uint64]  # (k,) frozen bits that changed
    range_byte: npt.NDArray[np.bool_]  # (k, 8) the byte left its range
    new_dlc: npt.NDArray[np.bool_]  # (k,) a DLC never seen
    early: F64  # (k,) largest lo / gap of a judged gap (>1: the scorer calls it early)
    rate: F64  # (k,) largest dt3_lo / span of three gaps
    surprise: F64  # (k,) largest transition surprise / threshold
    silence: F64  # (k,) longest silence / suppression threshold
    phase: F64  # (k,) largest distance from phase / tolerance

    @classmethod
    def empty(cls, k: int) -> _Overshoot:
        return cls(
            np.zeros(k, dtype=np.uint64),
            np.zeros((k, 8), dtype=bool),
            np.zeros(k, dtype=bool),
            np.zeros(k),
            np.zeros(k),
            np.zeros(k),
            np.zeros(k),
            np.zeros(k),
        )


def _recordings(parts: list[CanFrames]) -> list[list[CanFrames]]:
    """Captures grouped by recording: same id sequence over their first frames."""
    groups: dict[bytes, list[CanFrames]] = {}
    for f in parts:
        groups.setdefault(f.arbitration_id[:200].tobytes(), []).append(f)
    return list(groups.values())


def _folds(parts: list[CanFrames], blocks: int) -> list[tuple[list[CanFrames], CanFrames]]:
    """(fit on, hold out) pairs: leave one capture out when there are several, else
    contiguous time blocks of the single capture (each block its own timeline)."""
    groups = _recordings(parts)
    if len(groups) >= 2:
        # Hold out a whole recording: two edits of one recording (an attack file and its
        # masquerade variant share their benign frames) would otherwise vouch for each other.
        return [
            ([q for j, g in enumerate(groups) if j != i for q in g], held)
            for i, grp in enumerate(groups)
            for held in grp[:1]
        ]
    f = parts[0]
    if blocks < 2 or len(f) < 2 * blocks * MIN_FRAMES:
        return []
    t = f.timestamp
    edges = np.searchsorted(t, np.linspace(t[0], t[-1], blocks + 1)[1:-1])
    pieces = [f.take(ix) for ix in np.split(np.arange(len(f)), edges) if ix.size]
    return [(pieces[:i] + pieces[i + 1 :], held) for i, held in enumerate(pieces)]


def _overshoot(
    m: IdsModel, f: CanFrames, into: _Overshoot, full_rows: npt.NDArray[np.int64]
) -> None:
    """Score the benign ``f`` with the fold model ``m`` the way the scorers do and record,
    per row of the full model (``full_rows[fold row]``), how far each rule was crossed."""
    n = len(f)
    row = m.index_of(f.arbitration_id)
    known = row >= 0
    key = np.where(known, row, len(m))  # unknown ids: one group, never judged
    r = np.maximum(row, 0)
    fr = full_rows[r]
    t, word, data, dlc = f.timestamp, f.payload_u64, f.data, f.dlc
    prev = [same_id_history(key, lag) for lag in range(1, LAGS + 1)]
    has = [(q >= 0) & known for q in prev]
    # Frozen bits and byte ranges, per byte.
    broken = (word ^ m.const_val[r]) & m.const_mask[r]
    inside = np.arange(8)[None, :] < dlc[:, None]
    out_range = ((data < m.byte_lo[r]) | (data > m.byte_hi[r])) & inside
    hit = known & (broken != 0)
    np.bitwise_or.at(into.frozen_bits, fr[hit], broken[hit])
    bad = out_range & known[:, None]
    hit = bad.any(axis=1)
    np.logical_or.at(into.range_byte, fr[hit], bad[hit])
    dlc_bad = known & ((m.dlc_mask[r] >> dlc.astype(np.uint16)) & 1 == 0)
    into.new_dlc[fr[dlc_bad]] = True
    # Timing, with the scorers' excuse for the real frame after an extra one.
    dts = [np.where(h, t - t[np.maximum(q, 0)], np.inf) for q, h in zip(prev, has, strict=True)]
    lo, hi = m.dt_lo[r], m.dt_hi[r]
    off, near = phase_residual(dts, m.period[r])
    tol = m.phase_tol[r]
    phased = known & near & np.isfinite(tol)
    drift = np.where(phased, np.abs(off) / tol, 0.0)
    np.maximum.at(into.phase, fr[phased], drift[phased])
    judged = has[0] & (lo > 0) & ~excused_after_extra(dts, lo, hi, phased & (drift < 1.0))
    early = np.where(judged, lo / np.maximum(dts[0], 1e-9), 0.0)
    np.maximum.at(into.early, fr[judged], early[judged])
    lo3 = m.dt3_lo[r]
    judged = has[LAGS - 1] & (lo3 > 0)
    np.maximum.at(into.rate, fr[judged], lo3[judged] / np.maximum(dts[LAGS - 1][judged], 1e-9))
    # Transition surprise: the nearest of the last frames that explains it.
    thr = m.flip_thr[r]
    best = np.full(n, np.inf)
    explained = np.zeros(n, dtype=bool)
    for q, h in zip(prev, has, strict=True):
        s = np.where(h, transition_surprise(m.flip_w, r, word ^ word[np.maximum(q, 0)]), np.inf)
        take = ~explained & (s < thr)
        best = np.where(take, s, np.where(explained, best, np.minimum(best, s)))
        explained |= take
    judged = has[0] & np.isfinite(thr)
    np.maximum.at(into.surprise, fr[judged], best[judged] / thr[judged])
    # Silence: gaps between frames of an id, and before its first / after its last frame.
    sup = m.dt_sup[r]
    gap = np.where(has[0], dts[0], t - t[0])
    ok = known & np.isfinite(sup)
    np.maximum.at(into.silence, fr[ok], gap[ok] / sup[ok])
    last = np.zeros(len(m), dtype=bool)
    ends = np.full(len(m), t[0])
    np.maximum.at(ends, row[known], t[known])
    last[row[known]] = True
    fin = np.isfinite(m.dt_sup)
    tail = np.where(last, t[-1] - ends, t[-1] - t[0])  # absent all along: the whole span
    np.maximum.at(into.silence, full_rows[fin], tail[fin] / m.dt_sup[fin])


def _whole_bytes(bits: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Every bit of each byte in which any bit is set."""
    out = np.zeros_like(bits)
    for j in range(8):
        shift = np.uint64(8 * j)
        hit = ((bits >> shift) & np.uint64(0xFF)) != 0
        out |= np.where(hit, np.uint64(0xFF) << shift, np.uint64(0))
    return out


def train(
    frames_list: list[CanFrames],
    params: IdsParams | None = None,
    *,
    calibrate: bool = True,
    dbc: str | Path | Database | None = None,
) -> IdsModel:
    """Learn the model from attack-free frames (several captures: each is its own timeline),
    calibrated on held-out parts of them (see the section comment above). With ``dbc`` (a
    DBC file or a loaded cantools database) the per-signal checks are learned too; a DBC
    that describes none of the traffic raises :class:`ConfigError`."""
    p = params or IdsParams()
    parts = [_sorted(f) for f in frames_list if len(f)]
    if not parts:
        raise ValidationError("IDS training needs at least one frame of attack-free traffic")
    model = _fit(parts, p)
    folds = _folds(parts, p.blocks) if calibrate else []
    signal_cal: dict[str, int] = {}
    if dbc is not None:
        model.signals, signal_cal = fit_signals(dbc, parts, folds, p.margin)
    if p.infer_words:
        modelled = (
            frozenset() if model.signals is None else frozenset(model.signals.frame_id.tolist())
        )
        inferred, inferred_cal = infer_signals(parts, folds, p.margin, modelled)
        model.signals = concat_signals(model.signals, inferred)
        signal_cal |= inferred_cal
    if not folds:
        model.calibration = signal_cal
        return model
    k = len(model)
    over = _Overshoot.empty(k)
    for fit_on, held in folds:
        m = _fit(fit_on, p)
        _overshoot(m, held, over, np.searchsorted(model.ids, m.ids).astype(np.int64))
    # A byte in which a frozen bit changed on held-out traffic keeps no frozen bit: dropping
    # only the bits seen changing leaves the next ones of the same signal to break on the
    # next drive (measured: 10 % of benign windows on a fresh simulated drive, against
    # 0.3 % per byte). A byte that left its range keeps no range.
    had_frozen = model.const_mask != 0
    model.const_mask &= ~_whole_bytes(over.frozen_bits)
    model.const_val &= model.const_mask
    model.byte_lo[over.range_byte] = 0
    model.byte_hi[over.range_byte] = 255
    model.dlc_mask[over.new_dlc] = 0x1FF
    # Thresholds crossed on held-out traffic: widened to that extreme, plus the margin.
    early = over.early > 1.0
    model.dt_lo[early] /= over.early[early] * (1 + p.margin)
    fast = over.rate > 1.0
    model.dt3_lo[fast] /= over.rate[fast] * (1 + p.margin)
    wide = over.surprise > 1.0
    model.flip_thr[wide] *= over.surprise[wide] * p.payload_margin
    quiet = over.silence > 1.0
    model.dt_sup[quiet] *= over.silence[quiet] * (1 + p.margin)
    drift = over.phase > 1.0
    model.phase_tol[drift] *= over.phase[drift] * (1 + p.margin)
    model.phase_tol[model.phase_tol >= PHASE_MAX_TOL * model.period] = np.inf
    model.calibration = {
        "folds": len(folds),
        "frozen_bits_dropped": int(np.bitwise_count(over.frozen_bits).sum()),
        "range_bytes_dropped": int(over.range_byte.sum()),
        "frozen_rules_dropped": int(np.count_nonzero(had_frozen & (model.const_mask == 0))),
        "dlc_rules_dropped": int(over.new_dlc.sum()),
        "timing_widened": int(early.sum()),
        "rate_widened": int(fast.sum()),
        "transition_widened": int(wide.sum()),
        "silence_widened": int(quiet.sum()),
        "phase_widened": int(drift.sum()),
        "phase_judged": int(np.isfinite(model.phase_tol).sum()),
        "counters": int(np.count_nonzero(model.ctr_bits)),
        **signal_cal,
    }
    return model
