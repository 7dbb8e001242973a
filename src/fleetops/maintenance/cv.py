"""Unit-grouped cross-validation on C-MAPSS training files: how model choices are made.

Test files are never used for choices. Each fold trains on the other units; a validation
unit is scored at every cycle (features only look back, so the prediction at cycle c equals
that of the unit cut at c, as test units are). Points count when the unit has been seen for
at least ``min_seen`` cycles (the shortest test units have 31) and its true RUL is at most
``max_rul`` (beyond the cap every model predicts the cap); each unit weighs the same.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from fleetops.core.errors import ValidationError
from fleetops.maintenance.cmapss import add_rul, validate
from fleetops.maintenance.model import RulRegressor


def grouped_cv_rmse(
    frame: pl.DataFrame,
    make_model: Callable[[], RulRegressor],
    *,
    folds: int = 5,
    seed: int = 0,
    min_seen: int = 31,
    max_rul: float = 150.0,
) -> tuple[float, list[float]]:
    """(unit-weighted RMSE over all folds, per-fold RMSE) against the uncapped true RUL."""
    frame = add_rul(validate(frame).sort("unit", "cycle"), cap=None)
    units = frame["unit"].unique().to_numpy()
    if len(units) < folds:
        raise ValidationError(f"{len(units)} units cannot make {folds} folds")
    groups = np.array_split(np.random.default_rng(seed).permutation(units), folds)
    sq_sum, unit_count, per_fold = 0.0, 0, []
    for held in groups:
        train = frame.filter(~pl.col("unit").is_in(held.tolist())).drop("rul")
        val = frame.filter(pl.col("unit").is_in(held.tolist()))
        pred = make_model().fit(train).predict(val.drop("rul"))
        scored = val.select("unit", "cycle", "rul").with_columns(pl.Series("pred", pred))
        scored = scored.filter((pl.col("cycle") >= min_seen) & (pl.col("rul") <= max_rul))
        per_unit = scored.group_by("unit").agg(((pl.col("pred") - pl.col("rul")) ** 2).mean())
        errors = per_unit["pred"].to_numpy()
        sq_sum += float(errors.sum())
        unit_count += len(errors)
        per_fold.append(float(np.sqrt(errors.mean())))
    return float(np.sqrt(sq_sum / unit_count)), per_fold
