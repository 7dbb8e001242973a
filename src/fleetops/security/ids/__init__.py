"""In-vehicle CAN intrusion detection, light enough for a gateway.

>>> model = train([clean.frames])                     # doctest: +SKIP
>>> scores = score_frames(model, capture.frames)      # batch, whole logs
>>> scorer = StreamingScorer(model); scorer.push(t, can_id, dlc, payload)  # doctest: +SKIP
"""

from fleetops.security.ids.detect import (
    ATTACKS,
    Alert,
    AlertAggregator,
    FrameScores,
    alerts_from_scores,
    iter_frames,
    score_frames,
)
from fleetops.security.ids.evaluate import Metrics, evaluate
from fleetops.security.ids.loaders import Capture, load_capture, read_daga, read_road
from fleetops.security.ids.model import IdsModel, IdsParams, train
from fleetops.security.ids.ocsf import to_ocsf
from fleetops.security.ids.stream import StreamingScorer

__all__ = [
    "ATTACKS",
    "Alert",
    "AlertAggregator",
    "Capture",
    "FrameScores",
    "IdsModel",
    "IdsParams",
    "Metrics",
    "StreamingScorer",
    "alerts_from_scores",
    "evaluate",
    "iter_frames",
    "load_capture",
    "read_daga",
    "read_road",
    "score_frames",
    "to_ocsf",
    "train",
]
