"""Checks shared by the IDS tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from fleetops.core.types import CanFrames
from fleetops.security.ids import (
    FrameScores,
    IdsModel,
    StreamingScorer,
    alerts_from_scores,
    iter_frames,
    score_frames,
)


def assert_stream_equals_batch(
    model: IdsModel, frames: CanFrames, *, signals: bool = False
) -> tuple[FrameScores, list[dict[str, Any]]]:
    """The streaming scorer, fed frame by frame, gives the batch scorer's scores, attack
    names, evidence, alerts and (``signals``) the signal each frame named; returns the
    batch scores and the alerts."""
    batch = score_frames(model, frames)
    stream = StreamingScorer(model)
    rows, named = [], []
    for f in iter_frames(frames):
        rows.append(stream.push(*f))
        named.append(stream.signal)
    assert np.array_equal(np.array([r[0] for r in rows]), batch.score)
    assert np.array_equal(np.array([r[1] for r in rows]), batch.attack)
    assert np.array_equal(np.array([r[2] for r in rows]), batch.evidence)
    if signals:
        assert batch.signal is not None
        assert np.array_equal(np.array(named), batch.signal)
    streamed = [a.to_dict() for a in stream.flush()]
    assert streamed == [a.to_dict() for a in alerts_from_scores(model, frames, batch)]
    return batch, streamed
