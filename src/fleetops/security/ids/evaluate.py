"""Frame- and window-level metrics of scored captures against their labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fleetops.security.ids.detect import Alert

WINDOW_S = 0.1
EPISODE_GAP_S = 1.0  # injected frames further apart than this start a new attack episode


@dataclass(slots=True)
class Metrics:
    frames: int
    attack_frames: int
    frame_precision: float
    frame_recall: float
    frame_f1: float
    frame_fpr: float  # alerting benign frames / benign frames
    windows: int
    attack_windows: int
    window_precision: float
    window_recall: float
    window_f1: float
    window_fpr: float  # alerting benign windows / benign windows
    episodes: int
    episodes_detected: int
    median_latency_s: float  # attack episode start to first alert (nan: none detected)

    def as_row(self) -> dict[str, float | int]:
        return {name: getattr(self, name) for name in self.__slots__}


def _prf(pred: npt.NDArray[np.bool_], truth: npt.NDArray[np.bool_]) -> tuple[float, float, float]:
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    precision = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def evaluate(
    timestamp: npt.NDArray[np.float64],
    truth: npt.NDArray[np.bool_],
    alert: npt.NDArray[np.bool_],
    alerts: list[Alert] | None = None,
) -> Metrics:
    """Metrics of per-frame ``alert`` against ``truth``. Frame-less alerts (suppression)
    count for their window."""
    t0 = float(timestamp.min()) if timestamp.size else 0.0
    win = np.floor((timestamp - t0) / WINDOW_S).astype(np.int64)
    n_win = int(win.max()) + 1 if win.size else 0
    w_truth = np.zeros(n_win, dtype=bool)
    w_pred = np.zeros(n_win, dtype=bool)
    w_truth[win[truth]] = True
    w_pred[win[alert]] = True
    for a in alerts or []:
        if a.attack == "suppression":
            w = int((a.time - t0) // WINDOW_S)
            if 0 <= w < n_win:
                w_pred[w] = True
    fp_, fr, ff = _prf(alert, truth)
    wp, wr, wf = _prf(w_pred, w_truth)
    benign = ~truth
    frame_fpr = np.count_nonzero(alert & benign) / max(int(np.count_nonzero(benign)), 1)
    window_fpr = np.count_nonzero(w_pred & ~w_truth) / max(int(np.count_nonzero(~w_truth)), 1)
    # Attack episodes: injected frames (in time order) grouped while closer than the gap.
    order = np.argsort(timestamp, kind="stable")
    t_sorted, truth_sorted, alert_sorted = timestamp[order], truth[order], alert[order]
    inj = t_sorted[truth_sorted]
    latencies: list[float] = []
    episodes = 0
    if inj.size:
        starts = np.concatenate([[0], np.flatnonzero(np.diff(inj) > EPISODE_GAP_S) + 1])
        ends = np.concatenate([starts[1:], [inj.size]]) - 1
        alert_t = t_sorted[alert_sorted]
        episodes = int(starts.size)
        for s, e in zip(starts, ends, strict=True):
            lo, hi = inj[s], inj[e] + EPISODE_GAP_S
            j = int(np.searchsorted(alert_t, lo))
            if j < alert_t.size and alert_t[j] <= hi:
                latencies.append(float(alert_t[j] - lo))
    return Metrics(
        frames=int(truth.size),
        attack_frames=int(np.count_nonzero(truth)),
        frame_precision=fp_,
        frame_recall=fr,
        frame_f1=ff,
        frame_fpr=float(frame_fpr),
        windows=n_win,
        attack_windows=int(np.count_nonzero(w_truth)),
        window_precision=wp,
        window_recall=wr,
        window_f1=wf,
        window_fpr=float(window_fpr),
        episodes=episodes,
        episodes_detected=len(latencies),
        median_latency_s=float(np.median(latencies)) if latencies else float("nan"),
    )
