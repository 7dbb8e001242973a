"""Per-unit rolling-window features, one code path for training and scoring.

Used for C-MAPSS engines (unit = engine, cycle = flight) and for the fleet from the lake
(unit = vehicle, cycle = time bucket): see ``fleetops.maintenance.fleet``.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

DEFAULT_WINDOWS = (5, 10, 20, 30, 50)
DRIFT_WINDOW = 10  # recent level compared with the unit's own history
DEFAULT_BASELINE = 20  # the unit's first cycles: its healthy reference level


class FeatureBuilder:
    """For each series: current value, per window its mean and LS slope, the mean of the
    unit's whole history so far, the drift of the recent level from it and (with
    ``baseline``) the change of the recent level from the unit's first ``baseline`` cycles.

    The drift and baseline delta remove unit-to-unit offsets (engines start at different
    health levels); in unit-grouped cross-validation on the training files the drift cut
    RMSE from 17.2 to 14.7 (FD001) and from 15.8 to 14.3 (FD003).

    Windows only look back (never past the row), so the feature of a training row equals
    what scoring would compute if the unit stopped there — no leakage from the future.
    Partial windows at a unit's start use the rows available.
    """

    def __init__(
        self, windows: Sequence[int] = DEFAULT_WINDOWS, baseline: int | None = None
    ) -> None:
        self.windows = tuple(int(w) for w in windows)
        self.baseline = baseline

    def names(self, sensors: Sequence[str]) -> list[str]:
        out = ["cycles_seen"]
        for s in sensors:
            out.append(f"{s}_last")
            for w in self.windows:
                out += [f"{s}_mean{w}", f"{s}_slope{w}"]
            out += [f"{s}_history_mean", f"{s}_drift"]
            if self.baseline:
                out.append(f"{s}_delta0")
        return out

    def transform(self, normalised: pl.DataFrame, sensors: Sequence[str]) -> pl.DataFrame:
        """``unit``, ``cycle`` and ``names(sensors)`` for every row of ``normalised``."""
        frame = normalised.sort("unit", "cycle").with_columns(
            # row position inside the unit: the time axis of the slopes and the age feature
            (pl.int_range(pl.len()).over("unit").cast(pl.Float64)).alias("_t"),
            pl.lit(1.0).alias("_one"),
        )
        exprs: list[pl.Expr] = [(pl.col("_t") + 1).alias("cycles_seen")]
        for s in sensors:
            exprs.append(pl.col(s).alias(f"{s}_last"))
            for w in self.windows:

                def roll(e: pl.Expr, w: int = w) -> pl.Expr:
                    return e.rolling_sum(w, min_samples=1).over("unit")

                n = roll(pl.col("_one"))
                sx = roll(pl.col("_t"))
                sy = roll(pl.col(s))
                sxx = roll(pl.col("_t") * pl.col("_t"))
                sxy = roll(pl.col("_t") * pl.col(s))
                denom = n * sxx - sx * sx
                exprs.append((sy / n).alias(f"{s}_mean{w}"))
                # least-squares slope per cycle; a single point has no slope (0)
                exprs.append(
                    pl.when(denom > 0)
                    .then((n * sxy - sx * sy) / denom)
                    .otherwise(0.0)
                    .alias(f"{s}_slope{w}")
                )
            history = pl.col(s).cum_sum().over("unit") / (pl.col("_t") + 1)
            recent = pl.col(s).rolling_mean(DRIFT_WINDOW, min_samples=1).over("unit")
            exprs.append(history.alias(f"{s}_history_mean"))
            exprs.append((recent - history).alias(f"{s}_drift"))
            if self.baseline:
                b = self.baseline
                # mean of the first b rows seen so far (causal: only rows up to this one)
                early = pl.when(pl.col("_t") < b).then(pl.col(s)).otherwise(0.0).cum_sum().over(
                    "unit"
                ) / pl.min_horizontal(pl.col("_t") + 1, pl.lit(float(b)))
                exprs.append((recent - early).alias(f"{s}_delta0"))
        return frame.select(pl.col("unit"), pl.col("cycle"), *exprs)
