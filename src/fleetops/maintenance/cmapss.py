"""NASA C-MAPSS files: strict loader, RUL labels and the two standard metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from fleetops.core.errors import ConfigError, ValidationError

SETTINGS = [f"setting_{i}" for i in range(1, 4)]
SENSORS = [f"s_{i}" for i in range(1, 22)]
COLUMNS = ["unit", "cycle", *SETTINGS, *SENSORS]
RUL_CAP = 125  # the usual piecewise-linear cap: early life is treated as "healthy"

Values = Sequence[float] | np.ndarray | pl.Series


def read_cmapss(path: Path | str) -> pl.DataFrame:
    """One C-MAPSS train or test file as a frame with ``COLUMNS`` (unit, cycle as Int64).

    Raises ``ValidationError`` naming the line for a wrong field count, a non-number, a
    NaN, a non-positive unit/cycle or cycles that do not increase within a unit.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    rows: list[list[float]] = []
    with path.open(encoding="ascii", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue  # blank lines (e.g. a trailing newline) carry nothing
            if len(fields) != len(COLUMNS):
                raise ValidationError(
                    f"{path}:{lineno}: {len(fields)} columns, expected {len(COLUMNS)} "
                    "(unit, cycle, 3 settings, 21 sensors)"
                )
            try:
                values = [float(f) for f in fields]
            except ValueError as exc:
                raise ValidationError(f"{path}:{lineno}: {exc}") from None
            bad = [COLUMNS[i] for i, v in enumerate(values) if not math.isfinite(v)]
            if bad:
                raise ValidationError(f"{path}:{lineno}: NaN or infinite value in {bad[0]}")
            rows.append(values)
    if not rows:
        raise ValidationError(f"{path}: no data rows")
    arr = np.asarray(rows, dtype=np.float64)
    frame = pl.DataFrame({name: arr[:, i] for i, name in enumerate(COLUMNS)})
    try:
        return validate(frame)
    except ValidationError as exc:
        raise ValidationError(f"{path}: {exc}") from None


def validate(frame: pl.DataFrame) -> pl.DataFrame:
    """Check a frame from any source has the C-MAPSS columns, no NaNs and sane unit/cycle."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValidationError(f"missing columns: {', '.join(missing)}")
    if frame.height == 0:
        raise ValidationError("no rows")
    frame = frame.select(COLUMNS)
    for name in COLUMNS:
        col = frame[name].cast(pl.Float64)
        if col.null_count() or col.is_nan().any() or col.is_infinite().any():
            raise ValidationError(f"column {name} has NaN, null or infinite values")
    ids = frame.select(pl.col("unit"), pl.col("cycle"))
    if not bool(
        ids.select(
            (
                (pl.col("unit") == pl.col("unit").round())
                & (pl.col("cycle") == pl.col("cycle").round())
            ).all()
        ).item()
    ):
        raise ValidationError("unit and cycle must be whole numbers")
    frame = frame.with_columns(pl.col("unit").cast(pl.Int64), pl.col("cycle").cast(pl.Int64))
    if int(frame["unit"].min()) < 1 or int(frame["cycle"].min()) < 1:  # type: ignore[arg-type]
        raise ValidationError("unit and cycle must be ≥ 1")
    steps = frame.select((pl.col("cycle").diff().over("unit").fill_null(1) <= 0).any()).item()
    if steps:
        raise ValidationError("cycles must increase within each unit (rows out of order?)")
    for name in [*SETTINGS, *SENSORS]:
        if frame[name].dtype != pl.Float64:
            frame = frame.with_columns(pl.col(name).cast(pl.Float64))
    return frame


def add_rul(frame: pl.DataFrame, cap: float | None = RUL_CAP) -> pl.DataFrame:
    """Training labels: ``rul = last cycle of the unit - cycle``, capped at ``cap``.

    The cap is the standard piecewise-linear target: no model can see degradation that
    has not started, so predicting a constant early on is the best it can do.
    """
    rul = pl.col("cycle").max().over("unit") - pl.col("cycle")
    if cap is not None:
        rul = pl.min_horizontal(rul, pl.lit(cap))
    return frame.with_columns(rul.cast(pl.Float64).alias("rul"))


def last_cycles(frame: pl.DataFrame) -> pl.DataFrame:
    """The last row of each unit, in unit order (where test RUL is defined)."""
    return frame.sort("unit", "cycle").group_by("unit", maintain_order=True).last()


def read_rul(path: Path | str, units: Sequence[int] | None = None) -> pl.DataFrame:
    """``RUL_FD00x.txt`` as ``unit, true_rul``; line i belongs to unit i.

    With ``units`` (those in the test file) each must have a line and vice versa.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    values: list[float] = []
    for lineno, line in enumerate(
        path.read_text(encoding="ascii", errors="replace").splitlines(), 1
    ):
        text = line.strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise ValidationError(f"{path}:{lineno}: not a number: {text!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ValidationError(f"{path}:{lineno}: RUL must be a finite number ≥ 0")
        values.append(value)
    table = pl.DataFrame(
        {"unit": np.arange(1, len(values) + 1, dtype=np.int64), "true_rul": values},
        schema={"unit": pl.Int64, "true_rul": pl.Float64},
    )
    if units is not None:
        known = set(range(1, len(values) + 1))
        unknown = sorted(set(units) - known)
        if unknown:
            raise ValidationError(
                f"{path}: unknown unit {unknown[0]} (the file has RUL for units 1..{len(values)})"
            )
        absent = sorted(known - set(units))
        if absent:
            raise ValidationError(f"{path}: has RUL for unit {absent[0]} that the test data lacks")
    return table


def _errors(predicted: Values, true: Values) -> np.ndarray:
    p = np.asarray(predicted, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 1:
        raise ValidationError(
            f"predicted {p.shape} and true {t.shape} must be equal-length vectors"
        )
    if p.size == 0:
        raise ValidationError("no predictions to score")
    return p - t


def rmse(predicted: Values, true: Values) -> float:
    d = _errors(predicted, true)
    return float(np.sqrt(np.mean(d * d)))


def nasa_score(predicted: Values, true: Values) -> float:
    """PHM08 score, d = predicted − true: late predictions (d ≥ 0) cost more than early ones."""
    d = _errors(predicted, true)
    return float(np.sum(np.where(d < 0, np.exp(-d / 13.0), np.exp(d / 10.0)) - 1.0))
