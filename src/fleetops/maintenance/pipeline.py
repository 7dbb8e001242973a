"""The fleet maintenance workflow in Python: train, evaluate, predict, explain (from a lake).

The CLI (``fleetops maintenance train | evaluate | predict | explain``) calls these.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from fleetops.core.errors import ValidationError
from fleetops.core.lake import Lake
from fleetops.maintenance.actions import explain_rows, waterfall_png, work_orders, write_to_lake
from fleetops.maintenance.fleet import COMPONENTS, FleetRiskModel, _failures, evaluate_alerts


def _lake(lake: Lake | Path | str) -> Lake:
    return lake if isinstance(lake, Lake) else Lake(lake)


def train(
    lake: Lake | Path | str,
    model_out: Path | str | None = None,
    *,
    horizons_h: Sequence[float] = (24.0, 72.0),
    bucket_hours: float = 4.0,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> FleetRiskModel:
    """Fit the fleet risk models on a lake's signals and failures; save when ``model_out``."""
    lake = _lake(lake)
    model = FleetRiskModel(horizons_h=horizons_h, bucket_hours=bucket_hours, seed=seed)
    model.fit(lake, progress=progress)
    if model_out is not None:
        model.save(model_out, data={"lake": str(lake.root)})
    return model


@dataclass
class Scored:
    features: pl.DataFrame
    scores: pl.DataFrame
    vehicles: int
    seconds: float

    @property
    def vehicles_per_s(self) -> float:
        return self.vehicles / self.seconds if self.seconds > 0 else float("inf")


def score(lake: Lake | Path | str, model: FleetRiskModel, **where: Any) -> Scored:
    """Read, featurise and score every vehicle-bucket in the lake (timed end to end)."""
    start = time.perf_counter()
    feats = model.features(_lake(lake), **where)
    scores = model.predict_proba(feats)
    return Scored(feats, scores, feats["vin"].n_unique(), time.perf_counter() - start)


def evaluate(lake: Lake | Path | str, model: FleetRiskModel) -> tuple[pl.DataFrame, Scored]:
    """Precision, recall and lead time per component and horizon against the lake's failures."""
    lake = _lake(lake)
    scored = score(lake, model)
    failures = _failures(lake)
    table = pl.concat(
        [evaluate_alerts(scored.scores, failures, h) for h in model.horizons_h], how="vertical"
    )
    return table, scored


def predict(
    lake: Lake | Path | str, model: FleetRiskModel, *, write: bool = True, top: int = 3
) -> tuple[pl.DataFrame, Scored]:
    """Work orders at each vehicle's latest data; optionally write both lake tables."""
    lake = _lake(lake)
    scored = score(lake, model)
    orders = work_orders(model, scored.features, scored.scores, top)
    if write:
        write_to_lake(lake, scored.scores, orders, str(model.train_info_.get("created", "")))
    return orders, scored


def explain(
    lake: Lake | Path | str,
    model: FleetRiskModel,
    vin: str,
    component: str,
    *,
    top: int = 5,
    png: Path | str | None = None,
) -> pl.DataFrame:
    """Top drivers of one vehicle's latest risk for ``component``, in words (and a plot)."""
    if component not in COMPONENTS:
        raise ValidationError(f"unknown component {component!r} (one of {', '.join(COMPONENTS)})")
    # the whole fleet: features relative to the fleet need the other vehicles
    feats = model.features(_lake(lake)).filter(pl.col("vin") == vin)
    if feats.height == 0:
        raise ValidationError(f"{vin}: no signals in the lake")
    rows = explain_rows(model, feats.tail(1), component, top)
    if png is not None:
        waterfall_png(model, feats, vin, component, png)
    drivers = rows["drivers"][0]
    return pl.DataFrame(
        {
            "rank": list(range(1, len(drivers) + 1)),
            "feature": [d["feature"] for d in drivers],
            "value": [d["value"] for d in drivers],
            "contribution": [d["contribution"] for d in drivers],
            "explanation": [d["words"] for d in drivers],
        }
    )
