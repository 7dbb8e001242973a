"""Per-signal physical consistency, learned where a DBC names the signals of the traffic.

Each modelled signal (an integer signal of a classic CAN message the DBC describes and
training traffic carries; multiplexed, IEEE-float and E2E counter / checksum signals are
left to the byte rules) is decoded from the payload word with the DBC's bit layout,
scale and offset, all frames of a message at once, and judged three ways:

* **range**: outside the DBC's declared ``[min, max]`` always counts; the range training
  saw (widened by ``margin`` of its span and one quantisation step) counts only on early
  frames, like the byte ranges, since a fresh drive leaves it (per-drive values);
* **rate**: ``|Δvalue| / Δt`` to the id's previous frame (Δt floored at half the id's
  median gap, so a frame delayed next to its successor does not look fast): above the
  training maximum × (1 + margin) (at least two steps per floored gap);
* **relations**: up to :data:`RELATIONS` other signals (same or other messages) that each
  predict the signal on their own, ``value ≈ c0 + c1·u + c2·max(u, 0)`` (a hinge at 0:
  pedals, regeneration and currents clip at zero), from the latest value of ``u`` when
  the frame arrives. Only relations explaining ≥ :data:`R2_MIN` of the signal's variance
  are kept. A signal is inconsistent when a *majority* of its relations are broken:
  forging one signal breaks every relation of that signal but only one relation of each
  genuine signal it predicts, so the forged one, not its witnesses, is named.

Thresholds are the training extremes with the usual margin, then calibrated on held-out
benign folds exactly like the per-id rules (see :func:`fit_signals`).

The batch form (:func:`score_signals`) and the streaming form (:class:`SignalState`) do
the same float operations in the same order, so they give identical scores.
"""

# SignalState.push compares instead of calling max(): the same values (the first of
# equals, as max), a builtin call less each (a good part of the per-frame cost).
# ruff: noqa: PLR1730

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from cantools.database.can import Database

from fleetops.core.dbc import e2e_specs, load_dbc, signal_layout
from fleetops.core.errors import ConfigError
from fleetops.core.types import CanFrames

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
RELATIONS = 3  # relations kept per signal: a majority of 3 needs 2 broken
R2_MIN = 0.9  # a relation must explain this share of the signal's variance
MIN_SAMPLES = 20  # fewer training values than this: the signal is not modelled
# A message whose training frames decode outside the DBC's declared [min, max] this often
# is not what the DBC describes (wrong DBC, other vehicle variant): not modelled.
MISMATCH_SHARE = 0.01
E_SIG_RANGE, E_SIG_RATE, E_SIG_RELATION = 1 << 9, 1 << 10, 1 << 11


@dataclass(slots=True)
class SignalModel:
    """Per modelled signal ``s`` (names ``Message.Signal``): its layout and what normal is."""

    names: list[str]
    frame_id: npt.NDArray[np.uint32]
    shift: I64
    length: I64
    big_endian: npt.NDArray[np.bool_]
    signed: npt.NDArray[np.bool_]
    scale: F64
    offset: F64
    min_dlc: I64  # frames shorter than this do not carry the whole signal: not judged
    dlo: F64  # the DBC's declared physical range (±inf: none declared)
    dhi: F64
    lo: F64  # the learned range (±inf: not learned)
    hi: F64
    rate_thr: F64  # |Δv| / max(Δt, dt_floor) above this is too fast (inf: not judged)
    dt_floor: F64
    feat: I64  # (S, RELATIONS) predicting signal, -1: none
    coef: F64  # (S, RELATIONS, 3): c0, c1, c2
    rel_thr: F64  # (S, RELATIONS): |value - prediction| above this breaks the relation

    def __len__(self) -> int:
        return len(self.names)

    def step(self) -> F64:
        out: F64 = np.abs(self.scale)
        return out

    _ARRAYS = (
        "frame_id",
        "shift",
        "length",
        "big_endian",
        "signed",
        "scale",
        "offset",
        "min_dlc",
        "dlo",
        "dhi",
        "lo",
        "hi",
        "rate_thr",
        "dt_floor",
        "feat",
        "coef",
        "rel_thr",
    )

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {f"sig_{name}": getattr(self, name) for name in self._ARRAYS}

    @classmethod
    def from_arrays(cls, names: list[str], z: Any) -> SignalModel:
        """From the ``sig_*`` arrays of a model file (``z``: a mapping of arrays)."""
        a = {name: z[f"sig_{name}"] for name in cls._ARRAYS}
        model = cls(
            names=[str(n) for n in names],
            frame_id=a["frame_id"].astype(np.uint32),
            shift=a["shift"].astype(np.int64),
            length=a["length"].astype(np.int64),
            big_endian=a["big_endian"].astype(bool),
            signed=a["signed"].astype(bool),
            scale=a["scale"].astype(np.float64),
            offset=a["offset"].astype(np.float64),
            min_dlc=a["min_dlc"].astype(np.int64),
            dlo=a["dlo"].astype(np.float64),
            dhi=a["dhi"].astype(np.float64),
            lo=a["lo"].astype(np.float64),
            hi=a["hi"].astype(np.float64),
            rate_thr=a["rate_thr"].astype(np.float64),
            dt_floor=a["dt_floor"].astype(np.float64),
            feat=a["feat"].astype(np.int64).reshape(-1, RELATIONS),
            coef=a["coef"].astype(np.float64).reshape(-1, RELATIONS, 3),
            rel_thr=a["rel_thr"].astype(np.float64).reshape(-1, RELATIONS),
        )
        s = len(model.names)
        if any(np.asarray(getattr(model, n)).shape[0] != s for n in cls._ARRAYS):
            raise ConfigError("the per-signal part of the IDS model is inconsistent")
        if np.any(model.feat >= s):
            raise ConfigError("the per-signal part of the IDS model is inconsistent")
        return model


def load_database(dbc: str | Path | Database) -> Database:
    return dbc if isinstance(dbc, Database) else load_dbc(dbc)


def _layouts(db: Database, frame_ids: set[int]) -> tuple[SignalModel, list[tuple[float, float]]]:
    """The modelled signals of ``db`` on ``frame_ids`` (thresholds still open) and the
    DBC's declared physical range of each (``(0, 0)`` where none is declared)."""
    e2e = e2e_specs(db)
    names: list[str] = []
    cols: dict[str, list[Any]] = {k: [] for k in SignalModel._ARRAYS[:8]}
    declared: list[tuple[float, float]] = []
    for message in sorted(db.messages, key=lambda m: m.frame_id):
        if message.frame_id not in frame_ids or message.length > 8 or message.is_container:
            continue
        spec = e2e.get(message.frame_id)
        protection = set() if spec is None else {spec.counter_signal, spec.checksum_signal}
        for sig in message.signals:
            if (
                sig.is_float
                or sig.is_multiplexer
                or sig.multiplexer_ids is not None
                or sig.name in protection
                or not sig.scale
            ):
                continue
            layout = signal_layout(sig)
            names.append(f"{message.name}.{sig.name}")
            for key, value in zip(
                cols,
                (
                    message.frame_id,
                    layout.shift,
                    layout.length,
                    layout.big_endian,
                    bool(sig.is_signed),
                    float(sig.scale),
                    float(sig.offset),
                    layout.min_dlc,
                ),
                strict=True,
            ):
                cols[key].append(value)
            declared.append(
                (
                    float(sig.minimum) if sig.minimum is not None else 0.0,
                    float(sig.maximum) if sig.maximum is not None else 0.0,
                )
            )
    return _open_model(names, cols, declared), declared


def _open_model(
    names: list[str], cols: dict[str, list[Any]], declared: list[tuple[float, float]]
) -> SignalModel:
    """Signals with these layouts (``cols``: the first eight arrays of
    :class:`SignalModel`) and declared ranges, nothing learned yet."""
    s = len(names)
    return SignalModel(
        names=names,
        frame_id=np.asarray(cols["frame_id"], dtype=np.uint32),
        shift=np.asarray(cols["shift"], dtype=np.int64),
        length=np.asarray(cols["length"], dtype=np.int64),
        big_endian=np.asarray(cols["big_endian"], dtype=bool),
        signed=np.asarray(cols["signed"], dtype=bool),
        scale=np.asarray(cols["scale"], dtype=np.float64),
        offset=np.asarray(cols["offset"], dtype=np.float64),
        min_dlc=np.asarray(cols["min_dlc"], dtype=np.int64),
        dlo=np.asarray([d[0] if d[1] > d[0] else -np.inf for d in declared]),
        dhi=np.asarray([d[1] if d[1] > d[0] else np.inf for d in declared]),
        lo=np.full(s, -np.inf),
        hi=np.full(s, np.inf),
        rate_thr=np.full(s, np.inf),
        dt_floor=np.zeros(s),
        feat=np.full((s, RELATIONS), -1, dtype=np.int64),
        coef=np.zeros((s, RELATIONS, 3)),
        rel_thr=np.full((s, RELATIONS), np.inf),
    )


def decode(sm: SignalModel, s: int, word: npt.NDArray[np.uint64]) -> F64:
    """Physical values of signal ``s`` in the little-endian payload words ``word``."""
    w = word.byteswap() if sm.big_endian[s] else word
    length = int(sm.length[s])
    raw = (w >> np.uint64(sm.shift[s])) & np.uint64((1 << length) - 1)
    if sm.signed[s]:  # two's complement: flip the sign bit, subtract it back
        sign = np.uint64(1 << (length - 1))
        value = ((raw ^ sign) - sign).view(np.int64).astype(np.float64)
    else:
        value = raw.astype(np.float64)
    out: F64 = value * sm.scale[s] + sm.offset[s]
    return out


class _Frames:
    """One timeline (sorted frames) seen through the signal model: per signal its values
    at the frames of its id, and the latest value of any signal at those frames."""

    def __init__(self, sm: SignalModel, t: F64, ids: npt.NDArray[np.uint32], word: Any, dlc: Any):
        self.sm = sm
        self.t = t
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        self.index: dict[int, npt.NDArray[np.intp]] = {}
        for fid in np.unique(sm.frame_id).tolist():
            lo, hi = np.searchsorted(sorted_ids, [fid, fid + 1])
            self.index[fid] = order[lo:hi]  # ascending: the sort is stable
        self.values: list[F64] = []
        self.ok: list[npt.NDArray[np.bool_]] = []
        for s in range(len(sm)):
            idx = self.index[int(sm.frame_id[s])]
            self.values.append(decode(sm, s, word[idx]))
            self.ok.append(dlc[idx] >= sm.min_dlc[s])
        self._pos: dict[tuple[int, int], I64] = {}

    def frames_of(self, s: int) -> npt.NDArray[np.intp]:
        return self.index[int(self.sm.frame_id[s])]

    def latest(self, j: int, s: int) -> tuple[F64, npt.NDArray[np.bool_]]:
        """Value of signal ``j`` in the latest frame of its id at or before each frame of
        signal ``s``'s id (the same frame when both are of one message), and where any."""
        key = (int(self.sm.frame_id[j]), int(self.sm.frame_id[s]))
        pos = self._pos.get(key)
        if pos is None:
            pos = np.searchsorted(self.index[key[0]], self.index[key[1]], side="right") - 1
            self._pos[key] = pos
        valid = pos >= 0
        return self.values[j][np.maximum(pos, 0)], valid

    def rates(self, s: int) -> tuple[F64, npt.NDArray[np.bool_]]:
        """``|Δv| / max(Δt, dt_floor)`` to the id's previous frame, and where there is one."""
        idx = self.frames_of(s)
        v = self.values[s]
        rate = np.zeros(v.size)
        floor = self.sm.dt_floor[s]
        has = np.zeros(v.size, dtype=bool)
        if v.size > 1 and floor > 0:  # no floor: the id's cycle is unknown, not judged
            dt = np.maximum(self.t[idx[1:]] - self.t[idx[:-1]], floor)
            rate[1:] = np.abs(v[1:] - v[:-1]) / dt
            has[1:] = True
        return rate, has


def _predict(coef: F64, u: F64) -> F64:
    out: F64 = coef[0] + coef[1] * u + coef[2] * np.where(u > 0, u, 0.0)
    return out


def _lstsq(u: F64, v: F64) -> F64:
    design = np.stack([np.ones(u.size), u, np.where(u > 0, u, 0.0)], axis=1)
    coef: F64 = np.linalg.lstsq(design, v, rcond=None)[0]
    return coef


def _r2_all(v: F64, u: F64, valid: npt.NDArray[np.bool_]) -> F64:
    """R² of ``v ≈ c0 + c1·u_j + c2·max(u_j, 0)`` for every column ``j`` of ``u`` at once
    (only rows where ``valid[:, j]``), from centred and scaled normal equations."""
    w = valid.astype(np.float64)
    cnt = np.maximum(w.sum(axis=0), 1.0)
    cols = [u, np.where(u > 0, u, 0.0)]
    mu_v = (w * v[:, None]).sum(axis=0) / cnt
    vc = (v[:, None] - mu_v) * w
    centred = []
    for col in cols:
        x = np.where(valid, col, 0.0)
        mu = (w * x).sum(axis=0) / cnt
        x = (x - mu) * w
        sd = np.sqrt((x * x).sum(axis=0) / cnt)
        centred.append(x / np.where(sd > 0, sd, 1.0))
    gram = np.empty((u.shape[1], 2, 2))
    for a in range(2):
        for b in range(2):
            gram[:, a, b] = (centred[a] * centred[b]).sum(axis=0)
    xv = np.stack([(c * vc).sum(axis=0) for c in centred], axis=1)
    beta = np.einsum("jab,jb->ja", np.linalg.pinv(gram, rcond=1e-9), xv)
    svv = (vc * vc).sum(axis=0)
    sse = svv - (beta * xv).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(svv > 0, 1.0 - sse / svv, 0.0)
    out: F64 = np.where(valid.sum(axis=0) >= MIN_SAMPLES, r2, 0.0)
    return out


def _stats(views: Sequence[_Frames], sm: SignalModel, s: int) -> tuple[F64, F64]:
    """Judged values of ``s`` and its rates over ``views``."""
    vals = [vw.values[s][vw.ok[s]] for vw in views]
    rates = []
    for vw in views:
        r, has = vw.rates(s)
        rates.append(r[has & vw.ok[s]])
    return np.concatenate(vals), np.concatenate(rates)


def _relation_residuals(
    views: Sequence[_Frames], s: int, j: int, coef: F64 | None = None
) -> tuple[F64, F64, F64]:
    """(u, v, |residual| under ``coef``) of the relation ``j → s`` over ``views``."""
    us, vs = [], []
    for vw in views:
        u, valid = vw.latest(j, s)
        keep = valid & vw.ok[s]
        us.append(u[keep])
        vs.append(vw.values[s][keep])
    u, v = np.concatenate(us), np.concatenate(vs)
    res = np.abs(v - _predict(coef, u)) if coef is not None else np.zeros(0)
    return u, v, res


def _range(v: F64, step: float, margin: float) -> tuple[float, float]:
    lo, hi = float(v.min()), float(v.max())
    pad = margin * (hi - lo) + step
    return lo - pad, hi + pad


def _rate_thr(rates: F64, step: float, floor: float, margin: float) -> float:
    top = float(rates.max()) if rates.size else 0.0
    return max(top * (1 + margin), 2 * step / floor)


def _rel_thr(res: F64, step: float, margin: float) -> float:
    return max(float(res.max()) * (1 + margin) if res.size else 0.0, 2 * step)


def fit_signals(
    dbc: str | Path | Database,
    parts: list[CanFrames],
    folds: list[tuple[list[CanFrames], CanFrames]],
    margin: float,
) -> tuple[SignalModel, dict[str, int]]:
    """Learn the per-signal model from benign ``parts`` (sorted timelines), then widen what
    held-out ``folds`` broke (each threshold refitted on the fold's training side, crossed
    on its held-out side: widened by that overshoot × (1 + margin), as the per-id rules).

    Raises :class:`ConfigError` when no message of the DBC fits the traffic."""
    db = load_database(dbc)
    seen = set(np.unique(np.concatenate([f.arbitration_id for f in parts])).tolist())
    dbc_ids = {m.frame_id for m in db.messages}
    sm, declared = _layouts(db, seen)
    if not dbc_ids & seen:
        raise ConfigError(
            "the DBC describes none of the training traffic's ids "
            f"(DBC: {len(dbc_ids)} messages, traffic: {len(seen)} ids)"
        )
    views: dict[int, _Frames] = {}

    def view(f: CanFrames, model: SignalModel) -> _Frames:
        key = id(f)
        if key not in views:
            views[key] = _Frames(model, f.timestamp, f.arbitration_id, f.payload_u64, f.dlc)
        return views[key]

    # A message that decodes outside the DBC's declared range, or arrives shorter than its
    # signals need, is not the message the DBC describes: left out, counted.
    everything = [view(f, sm) for f in parts]
    bad_ids: set[int] = set()
    for s in range(len(sm)):
        dlo, dhi = declared[s]
        ok = np.concatenate([vw.ok[s] for vw in everything])
        v = np.concatenate([vw.values[s] for vw in everything])
        outside = ~ok | ((v < dlo - 1e-9) | (v > dhi + 1e-9)) if dhi > dlo else ~ok
        if ok.size and np.count_nonzero(outside) > MISMATCH_SHARE * ok.size:
            bad_ids.add(int(sm.frame_id[s]))
    if bad_ids:
        sm, declared = _layouts(db, seen - bad_ids)
        views.clear()
        everything = [view(f, sm) for f in parts]
    if len(sm) == 0:
        raise ConfigError(
            "the DBC matches none of the training traffic: every message it shares with the "
            f"traffic ({len(bad_ids)}) decodes outside its declared ranges or is too short"
        )
    step = sm.step()
    # Range, rate floor and rate.
    for s in range(len(sm)):
        v, _ = _stats(everything, sm, s)
        if v.size < MIN_SAMPLES:
            continue  # too rare: the byte rules watch it
        sm.lo[s], sm.hi[s] = _range(v, float(step[s]), margin)
        gaps = np.concatenate([np.diff(vw.t[vw.frames_of(s)]) for vw in everything])
        if gaps.size < MIN_SAMPLES or float(np.median(gaps)) <= 0:
            continue
        sm.dt_floor[s] = 0.5 * float(np.median(gaps))
        _, rates = _stats(everything, sm, s)
        sm.rate_thr[s] = _rate_thr(rates, float(step[s]), float(sm.dt_floor[s]), margin)
    _fit_relations(sm, everything, margin)
    cal = {
        "signals": len(sm),
        "signal_relations": int(np.count_nonzero(sm.feat >= 0)),
        "dbc_messages_mismatched": len(bad_ids),
        "signal_range_widened": 0,
        "signal_rate_widened": 0,
        "signal_relation_widened": 0,
    }
    folded = [([view(q, sm) for q in fit], view(h, sm)) for fit, h in folds]
    _calibrate(sm, folded, margin, cal, declared)
    return sm, cal


def _fit_relations(
    sm: SignalModel,
    everything: Sequence[_Frames],
    margin: float,
    candidates: npt.NDArray[np.bool_] | None = None,
) -> None:
    """Per signal, the :data:`RELATIONS` strongest other signals predicting it (only
    ``candidates[s, j]`` where given), kept if each explains ≥ :data:`R2_MIN` of it."""
    step = sm.step()
    for s in range(len(sm)):
        pool = (
            [j for j in range(len(sm)) if j != s]
            if candidates is None
            else np.flatnonzero(candidates[s]).tolist()
        )
        if not pool:
            continue
        # A relation must hold within every recording where the signal varies, not merely
        # across them: with two drives, any two per-drive constants (state of health, an
        # odometer) line up perfectly.
        r2 = np.full(len(pool), np.inf)
        for vw in everything:
            ok = vw.ok[s]
            v = vw.values[s][ok]
            if v.size < MIN_SAMPLES or float(v.min()) == float(v.max()):
                continue
            cols = [vw.latest(j, s) for j in pool]
            u = np.stack([c[0][ok] for c in cols], axis=1)
            valid = np.stack([c[1][ok] for c in cols], axis=1)
            r2 = np.minimum(r2, _r2_all(v, u, valid))
        r2[~np.isfinite(r2)] = 0.0
        best = [pool[int(i)] for i in np.argsort(-r2, kind="stable")[:RELATIONS] if r2[i] >= R2_MIN]
        for k, j in enumerate(best):
            u, v, _ = _relation_residuals(everything, s, j)
            coef = _lstsq(u, v)
            res = np.abs(v - _predict(coef, u))
            sm.feat[s, k] = j
            sm.coef[s, k] = coef
            sm.rel_thr[s, k] = _rel_thr(res, float(step[s]), margin)


def _calibrate(
    sm: SignalModel,
    folds: list[tuple[list[_Frames], _Frames]],
    margin: float,
    cal: dict[str, int],
    declared: list[tuple[float, float]],
) -> None:
    step = sm.step()
    over_lo = np.zeros(len(sm))
    over_hi = np.zeros(len(sm))
    dropped = np.zeros(len(sm), dtype=bool)
    rate = np.zeros(len(sm))
    rel = np.zeros(sm.feat.shape)
    for fit, held in folds:
        for s in range(len(sm)):
            v, r = _stats(fit, sm, s)
            hv, hr = _stats([held], sm, s)
            if v.size < MIN_SAMPLES or hv.size == 0:
                continue
            if np.isfinite(sm.lo[s]):
                lo, hi = _range(v, float(step[s]), margin)
                over_lo[s] = max(over_lo[s], lo - float(hv.min()))
                over_hi[s] = max(over_hi[s], float(hv.max()) - hi)
                # Left by more than its own width: the range is the recording's, not the
                # signal's (a per-drive value such as state of health or an odometer).
                dropped[s] |= max(over_lo[s], over_hi[s]) > hi - lo
            if np.isfinite(sm.rate_thr[s]) and hr.size:
                thr = _rate_thr(r, float(step[s]), float(sm.dt_floor[s]), margin)
                rate[s] = max(rate[s], float(hr.max()) / thr)
            for k in range(RELATIONS):
                j = int(sm.feat[s, k])
                if j < 0:
                    continue
                u, vv, _ = _relation_residuals(fit, s, j)
                if u.size < MIN_SAMPLES:
                    continue
                coef = _lstsq(u, vv)
                thr = _rel_thr(np.abs(vv - _predict(coef, u)), float(step[s]), margin)
                _, _, res = _relation_residuals([held], s, j, coef)
                if res.size:
                    rel[s, k] = max(rel[s, k], float(res.max()) / thr)
    grow = 1 + margin
    low, high = (over_lo > 0) & ~dropped, (over_hi > 0) & ~dropped
    sm.lo[low] -= over_lo[low] * grow
    sm.hi[high] += over_hi[high] * grow
    # A dropped range falls back to the DBC's declared one: values outside it are not
    # physical on any drive (no range where the DBC declares none).
    for s in np.flatnonzero(dropped).tolist():
        dlo, dhi = declared[s]
        sm.lo[s], sm.hi[s] = (dlo, dhi) if dhi > dlo else (-np.inf, np.inf)
    cal["signal_range_dropped"] = int(np.count_nonzero(dropped))
    fast = rate > 1
    sm.rate_thr[fast] *= rate[fast] * grow
    wide = rel > 1
    sm.rel_thr[wide] *= rel[wide] * grow
    cal["signal_range_widened"] = int(np.count_nonzero(low | high))
    cal["signal_rate_widened"] = int(np.count_nonzero(fast))
    cal["signal_relation_widened"] = int(np.count_nonzero(wide))


# -- without a DBC: words that move together -----------------------------------------------

WORD_VALUES = 64  # a word taking fewer distinct values is a flag or a state, not a quantity
WORD_ROUGHNESS = 0.05  # mean step frame to frame above this share of its span: not a quantity


def is_inferred(name: str) -> bool:
    """Whether a modelled signal is an inferred word (``0x6E0[0:2]be``), not a DBC signal
    (``Message.Signal``: DBC names are C identifiers, never starting with a digit)."""
    return name.startswith("0x")


def infer_signals(
    parts: list[CanFrames],
    folds: list[tuple[list[CanFrames], CanFrames]],
    margin: float,
    skip_ids: frozenset[int] = frozenset(),
) -> tuple[SignalModel | None, dict[str, int]]:
    """Relations between the 16-bit words of one id, learned without a DBC.

    Cars carry one quantity in several places of a frame (four wheel speeds, a sensor and
    its plausibility copy, a value and its filtered value): such words track each other
    on every drive, whatever the drive does, and a forged payload that does not know it
    breaks them. Candidates are each id's aligned 16-bit words in either byte order that
    take at least :data:`WORD_VALUES` values; a word is kept when up to
    :data:`RELATIONS` words of the same frame sharing none of its bytes each explain
    ≥ :data:`R2_MIN` of it within every recording (the DBC signals' rule), with the
    thresholds calibrated on held-out folds the same way. Only relations are judged:
    a word's range and rate are what the byte rules already watch. ``skip_ids``: ids a
    DBC models. Returns ``None`` when no word has a relation."""
    frame_ids = np.unique(np.concatenate([f.arbitration_id for f in parts]))
    names: list[str] = []
    cols: dict[str, list[Any]] = {k: [] for k in SignalModel._ARRAYS[:8]}
    offsets: list[int] = []
    # The longest DLC of each id decides which words it can carry.
    longest = np.zeros(frame_ids.size, dtype=np.int64)
    for f in parts:
        np.maximum.at(longest, np.searchsorted(frame_ids, f.arbitration_id), f.dlc.astype(np.int64))
    for fid, dlc in zip(frame_ids.tolist(), longest.tolist(), strict=True):
        if fid in skip_ids:
            continue
        for offset in range(0, dlc - 1, 2):
            for big in (True, False):
                names.append(f"0x{fid:03X}[{offset}:{offset + 2}]{'be' if big else 'le'}")
                # Bit position of the word's least significant bit in the payload word
                # (little-endian) or in its byte-swapped form (big-endian).
                shift = 8 * (6 - offset) if big else 8 * offset
                for key, value in zip(
                    cols, (fid, shift, 16, big, False, 1.0, 0.0, offset + 2), strict=True
                ):
                    cols[key].append(value)
                offsets.append(offset)
    declared = [(0.0, 0.0)] * len(names)
    sm = _open_model(names, cols, declared)
    everything = [_Frames(sm, f.timestamp, f.arbitration_id, f.payload_u64, f.dlc) for f in parts]
    distinct = np.zeros(len(sm), dtype=np.int64)
    roughness = np.zeros(len(sm))
    for s in range(len(sm)):
        values = [vw.values[s][vw.ok[s]] for vw in everything]
        both = np.concatenate(values)
        distinct[s] = np.unique(both).size
        steps = np.concatenate([np.abs(np.diff(v)) for v in values])
        span = float(np.quantile(both, 0.99) - np.quantile(both, 0.01)) if both.size else 0.0
        roughness[s] = float(steps.mean()) / span if steps.size and span > 0 else np.inf
    # Of the two byte orders of a word the one that moves smoothly is the quantity (the
    # other puts its low byte on top); a word jumping across its span frame to frame is a
    # counter, a checksum or noise, not a quantity.
    at = np.asarray(offsets)
    other = np.arange(len(sm)) ^ 1  # the same word in the other byte order
    varied = (
        (distinct >= WORD_VALUES) & (roughness <= WORD_ROUGHNESS) & (roughness <= roughness[other])
    )
    candidates = (
        (sm.frame_id[:, None] == sm.frame_id[None, :])
        & (at[:, None] != at[None, :])
        & varied[:, None]
        & varied[None, :]
    )
    _fit_relations(sm, everything, margin, candidates)
    sm = _related(sm)
    cal = {"inferred_words": len(sm), "inferred_relations": int(np.count_nonzero(sm.feat >= 0))}
    if len(sm) == 0:
        return None, cal
    views = [_Frames(sm, f.timestamp, f.arbitration_id, f.payload_u64, f.dlc) for f in parts]
    by_part = {id(f): vw for f, vw in zip(parts, views, strict=True)}

    def view(f: CanFrames) -> _Frames:
        return by_part.get(id(f)) or _Frames(
            sm, f.timestamp, f.arbitration_id, f.payload_u64, f.dlc
        )

    folded = [([view(q) for q in fit], view(h)) for fit, h in folds]
    inner: dict[str, int] = {}
    _calibrate(sm, folded, margin, inner, [(0.0, 0.0)] * len(sm))
    # A relation a held-out recording broke by more than the word's whole span says
    # nothing once widened to fit: dropped (as a byte range left on held-out traffic).
    width = np.asarray(
        [np.ptp(np.concatenate([vw.values[s][vw.ok[s]] for vw in views])) for s in range(len(sm))]
    )
    loose = (sm.feat >= 0) & (sm.rel_thr > width[:, None])
    sm.feat[loose] = -1
    sm = _related(sm)
    cal |= {
        "inferred_words": len(sm),
        "inferred_relations": int(np.count_nonzero(sm.feat >= 0)),
        "inferred_relations_widened": inner["signal_relation_widened"] - int(loose.sum()),
        "inferred_relations_dropped": int(loose.sum()),
    }
    return (sm if len(sm) else None), cal


def _related(sm: SignalModel) -> SignalModel:
    """Only the signals that have a relation or predict one."""
    used = np.any(sm.feat >= 0, axis=1)
    used[sm.feat[sm.feat >= 0]] = True
    return _subset(sm, used)


def _subset(sm: SignalModel, keep: npt.NDArray[np.bool_]) -> SignalModel:
    """The signals ``keep`` marks, relations renumbered (every predictor must be kept)."""
    new_index = np.cumsum(keep) - 1
    arrays = {name: getattr(sm, name)[keep] for name in SignalModel._ARRAYS}
    feat = arrays["feat"]
    arrays["feat"] = np.where(feat >= 0, new_index[np.maximum(feat, 0)], -1)
    return SignalModel(names=[n for n, k in zip(sm.names, keep, strict=True) if k], **arrays)


def concat_signals(a: SignalModel | None, b: SignalModel | None) -> SignalModel | None:
    """One model of ``a``'s signals then ``b``'s (``b``'s relations renumbered)."""
    if a is None or b is None:
        return a if b is None else b
    arrays = {
        name: np.concatenate([getattr(a, name), getattr(b, name)]) for name in SignalModel._ARRAYS
    }
    feat_b = np.where(b.feat >= 0, b.feat + len(a), -1)
    arrays["feat"] = np.concatenate([a.feat, feat_b])
    return SignalModel(names=a.names + b.names, **arrays)


def check_dbc(sm: SignalModel | None, dbc: str | Path | Database) -> None:
    """Raise :class:`ConfigError` unless ``sm`` was learned with this DBC's layouts."""
    if sm is None or all(is_inferred(name) for name in sm.names):
        raise ConfigError("the IDS model was trained without a DBC: retrain with --dbc")
    other, _ = _layouts(load_database(dbc), set(sm.frame_id.tolist()))
    mine = {name: s for s, name in enumerate(sm.names) if not is_inferred(name)}
    theirs = dict(zip(other.names, range(len(other)), strict=True))
    for name, s in mine.items():
        o = theirs.get(name)
        same = o is not None and all(
            getattr(sm, a)[s] == getattr(other, a)[o] for a in SignalModel._ARRAYS[:8]
        )
        if not same:
            raise ConfigError(f"the DBC does not define signal {name} as the IDS model has it")


# -- scoring -----------------------------------------------------------------------------


def _order_stat(ratios: list[F64]) -> F64:
    """Per frame, the largest value that a strict majority of the judged relations reach
    (unjudged: -inf); 0 where none is judged."""
    stack = np.sort(np.stack(ratios, axis=1), axis=1)[:, ::-1]
    judged = np.isfinite(stack).sum(axis=1)
    pick = np.take_along_axis(stack, (judged // 2)[:, None], axis=1)[:, 0]
    out: F64 = np.where(judged > 0, pick, 0.0)
    return out


def _outside(v: F64, lo: float, hi: float) -> F64:
    """1 + how far outside ``[lo, hi]`` in widths of it, 0 inside (or no range)."""
    if not np.isfinite(lo):
        return np.zeros(v.size)
    excess = np.maximum(v - hi, lo - v)
    out: F64 = np.where(excess > 0, 1.0 + excess / (hi - lo), 0.0)
    return out


def score_signals(
    sm: SignalModel,
    t: F64,
    ids: npt.NDArray[np.uint32],
    word: Any,
    dlc: Any,
    early: npt.NDArray[np.bool_],
) -> tuple[F64, npt.NDArray[np.int16], npt.NDArray[np.int16]]:
    """Per frame (sorted frames): the signal score (1 = threshold), the signal with the
    highest score (-1: none reaches 1) and the E_SIG_* evidence. The learned range counts
    only on ``early`` frames (see :func:`SignalState.push`)."""
    n = t.size
    view = _Frames(sm, t, ids, word, dlc)
    best = np.zeros(n)
    which = np.full(n, -1, dtype=np.int16)
    evidence = np.zeros(n, dtype=np.int16)
    for s in range(len(sm)):
        idx = view.frames_of(s)
        if idx.size == 0:
            continue
        v, ok = view.values[s], view.ok[s]
        in_range = _outside(v, sm.lo[s], sm.hi[s])
        impossible = _outside(v, sm.dlo[s], sm.dhi[s])
        rate, has = view.rates(s)
        rate = np.where(has, rate / sm.rate_thr[s], 0.0)
        ratios = []
        for k in range(RELATIONS):
            j = int(sm.feat[s, k])
            if j < 0:
                continue
            u, valid = view.latest(j, s)
            r = np.abs(v - _predict(sm.coef[s, k], u)) / sm.rel_thr[s, k]
            ratios.append(np.where(valid, r, -np.inf))
        rel = _order_stat(ratios) if ratios else np.zeros(idx.size)
        score = np.maximum(np.maximum(rate, rel), impossible)
        score = np.where(early[idx], np.maximum(score, in_range), score)
        score = np.where(ok, score, 0.0)
        ev = (
            np.where(ok & (in_range >= 1.0), E_SIG_RANGE, 0)
            | np.where(ok & (rate >= 1.0), E_SIG_RATE, 0)
            | np.where(ok & (rel >= 1.0), E_SIG_RELATION, 0)
        )
        evidence[idx] |= ev.astype(np.int16)
        up = score > best[idx]
        best[idx[up]] = score[up]
        which[idx[up]] = s
    which[best < 1.0] = -1
    return best, which, evidence


# Per-frame plans of one id's signals, as plain Python numbers (numpy scalars are slow
# one frame at a time). Decoding: (signal, big-endian, shift, mask, sign bit (0: unsigned),
# 2 ** length, scale, offset, rate dt floor, rate threshold, the signals whose judgement
# reads this one's value).
_Decode = tuple[int, bool, int, int, int, int, float, float, float, float, tuple[int, ...]]
_Relation = tuple[int, float, float, float, float]  # predicting signal, c0, c1, c2, threshold
# Judging: (signal, min DLC, learned lo, hi, declared lo, hi, relations).
_Judge = tuple[int, int, float, float, float, float, tuple[_Relation, ...]]

_NEG_INF = -math.inf


class SignalState:
    """The streaming form of :func:`score_signals`: per signal its latest value, per id
    its latest time (memory: one float per modelled signal and id)."""

    def __init__(self, sm: SignalModel) -> None:
        self.sm = sm
        n = len(sm)
        readers: list[set[int]] = [{s} for s in range(n)]
        for s, j in zip(*np.nonzero(sm.feat >= 0), strict=True):
            readers[int(sm.feat[s, j])].add(int(s))
        decode: dict[int, list[_Decode]] = {}
        judge: dict[int, list[_Judge]] = {}
        for s in range(n):
            fid = int(sm.frame_id[s])
            length = int(sm.length[s])
            decode.setdefault(fid, []).append(
                (
                    s,
                    bool(sm.big_endian[s]),
                    int(sm.shift[s]),
                    (1 << length) - 1,
                    (1 << (length - 1)) if sm.signed[s] else 0,
                    1 << length,
                    float(sm.scale[s]),
                    float(sm.offset[s]),
                    float(sm.dt_floor[s]),
                    float(sm.rate_thr[s]),
                    tuple(sorted(readers[s])),
                )
            )
            rels = tuple(
                (
                    int(sm.feat[s, k]),
                    float(sm.coef[s, k, 0]),
                    float(sm.coef[s, k, 1]),
                    float(sm.coef[s, k, 2]),
                    float(sm.rel_thr[s, k]),
                )
                for k in range(RELATIONS)
                if sm.feat[s, k] >= 0
            )
            judge.setdefault(fid, []).append(
                (
                    s,
                    int(sm.min_dlc[s]),
                    float(sm.lo[s]),
                    float(sm.hi[s]),
                    float(sm.dlo[s]),
                    float(sm.dhi[s]),
                    rels,
                )
            )
        # Per id: (any big-endian signal, decoding plans, judging plans).
        self._plans: dict[int, tuple[bool, tuple[_Decode, ...], tuple[_Judge, ...]]] = {
            fid: (any(d[1] for d in plans), tuple(plans), tuple(judge[fid]))
            for fid, plans in decode.items()
        }
        self._last: list[float] = [0.0] * n
        self._rate: list[float] = [0.0] * n  # of the signal's latest frame
        self._seen = [False] * n
        self._last_t: dict[int, float] = {}
        # Most frames repeat most values (74 % of judgements on a simulated drive), so the
        # parts of a judgement that depend on values only (learned range, declared range,
        # relations) are kept per signal and redone only when a value they read changed
        # (or was first seen): exactly the same numbers, less work.
        self._dirty = [True] * n
        self._in_range = [0.0] * n
        self._impossible = [0.0] * n
        self._rel = [0.0] * n

    def push(
        self, t: float, arbitration_id: int, dlc: int, word: int, payload: bytes, early: bool
    ) -> tuple[float, int, int]:
        """(signal score, signal index or -1, E_SIG_* evidence) of one frame (``word``:
        its 8 payload bytes as a little-endian integer). The learned range is absolute, and
        a fresh drive leaves it (per-drive values: position, tyre pressures, pad wear), so
        like the byte ranges it counts only on an ``early`` frame; outside the DBC's
        declared range counts on any."""
        plan = self._plans.get(arbitration_id)
        if plan is None:
            return 0.0, -1, 0
        any_big, decode, judge = plan
        be = int.from_bytes(payload, "big") if any_big else 0
        prev_t = self._last_t.get(arbitration_id)
        self._last_t[arbitration_id] = t
        last, rates, seen, dirty = self._last, self._rate, self._seen, self._dirty
        # Every value of the frame first: relations read same-message signals' new values.
        if prev_t is None:  # the id's first frame: no rate
            for s, big, shift, mask, sign, span, scale, offset, _, _, readers in decode:
                raw = ((be if big else word) >> shift) & mask
                if raw & sign:  # two's complement
                    raw -= span
                last[s] = raw * scale + offset
                rates[s] = 0.0
                seen[s] = True
                for d in readers:
                    dirty[d] = True
        else:
            dt = t - prev_t
            for s, big, shift, mask, sign, span, scale, offset, floor, thr, readers in decode:
                raw = ((be if big else word) >> shift) & mask
                if raw & sign:
                    raw -= span
                v = raw * scale + offset
                old = last[s]
                # No floor: the id's cycle is unknown, not judged.
                rates[s] = abs(v - old) / (dt if dt >= floor else floor) / thr if floor > 0 else 0.0
                last[s] = v
                if v != old:  # 0.0 and -0.0 give the same magnitudes below
                    for d in readers:
                        dirty[d] = True
        in_ranges, impossibles, rel_of = self._in_range, self._impossible, self._rel
        best = 0.0
        which = -1
        evidence = 0
        for s, min_dlc, lo, hi, dlo, dhi, rels in judge:
            if dlc < min_dlc:
                continue
            if dirty[s]:
                dirty[s] = False
                v = last[s]
                # _outside: 1 + how far outside the range in widths of it (none: -inf).
                in_range = 0.0
                if not lo <= v <= hi and lo != _NEG_INF:
                    excess = v - hi
                    if lo - v > excess:
                        excess = lo - v
                    in_range = 1.0 + excess / (hi - lo)
                impossible = 0.0
                if not dlo <= v <= dhi and dlo != _NEG_INF:
                    excess = v - dhi
                    if dlo - v > excess:
                        excess = dlo - v
                    impossible = 1.0 + excess / (dhi - dlo)
                # _order_stat: the largest ratio that a strict majority of the judged
                # relations reach, i.e. the median of three, the smaller of two.
                n = 0
                r0 = r1 = r2 = 0.0
                for j, c0, c1, c2, thr in rels:
                    if seen[j]:
                        u = last[j]
                        r = abs(v - (c0 + c1 * u + c2 * (u if u > 0 else 0.0))) / thr
                        if n == 0:
                            r0 = r
                        elif n == 1:
                            r1 = r
                        else:
                            r2 = r
                        n += 1
                rel = 0.0
                if n == 1:
                    rel = r0
                elif n == 2:
                    rel = r1 if r1 < r0 else r0
                elif n == 3:
                    low, high = (r1, r0) if r1 < r0 else (r0, r1)
                    rel = high if high < r2 else (r2 if r2 > low else low)
                in_ranges[s] = in_range
                impossibles[s] = impossible
                rel_of[s] = rel
            else:
                in_range = in_ranges[s]
                impossible = impossibles[s]
                rel = rel_of[s]
            rate = rates[s]
            # max(rate, rel, impossible), then the learned range on an early frame.
            score = rate
            if rel > score:
                score = rel
            if impossible > score:
                score = impossible
            if early and in_range > score:
                score = in_range
            if in_range >= 1.0:
                evidence |= E_SIG_RANGE
            if rate >= 1.0:
                evidence |= E_SIG_RATE
            if rel >= 1.0:
                evidence |= E_SIG_RELATION
            if score > best:
                best = score
                which = s
        return best, (which if best >= 1.0 else -1), evidence
