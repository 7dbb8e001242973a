"""Fleet failure risk from the lake: features over ``signals``, per-component horizon models.

The lake's long ``signals`` table is bucketed per vehicle into ``bucket_hours`` buckets (the
fleet's "cycles"); per bucket a few component *indicators* are computed in DuckDB (12 V
resting voltage, cell-voltage spread, state of health, pad wear and its excess over the
other pads, a tyre's pressure deficit against the car's other tyres, coolant temperature
above ambient while driving, motor temperature). Each indicator is also taken relative to
the fleet in the same bucket (minus the fleet median, over the fleet's MAD), which
removes shared operating conditions: weather, season, time of day. The same
``FeatureBuilder`` as for C-MAPSS then adds rolling means, slopes, drift and the change from
the vehicle's first buckets. ``lake_features`` is the one code path for training and scoring.

``FleetRiskModel`` holds, per component and per horizon, a LightGBM classifier of "fails
within H hours", calibrated by isotonic regression on out-of-fold scores of held-out
vehicles. Labels come from the simulator's ``failures`` ground truth.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
import pyarrow as pa
from sklearn.isotonic import IsotonicRegression

from fleetops.core.errors import ConfigError, ValidationError
from fleetops.core.lake import Lake
from fleetops.maintenance.artifact import (
    card_header,
    create_folder,
    load_booster,
    read_card,
    save_booster,
    write_card,
)
from fleetops.maintenance.features import FeatureBuilder
from fleetops.maintenance.model import contributions

FLEET_FORMAT = "fleetops.maintenance.fleet/1"
COMPONENTS = ("lv_battery", "cell_imbalance", "brake_pads", "tyre_leak", "coolant_pump")
_A = "Vehicle.Chassis.Axle"
_WHEELS = ("Row1.Wheel.Left", "Row1.Wheel.Right", "Row2.Wheel.Left", "Row2.Wheel.Right")
_TB = "Vehicle.Powertrain.TractionBattery"
_EM = "Vehicle.Powertrain.ElectricMotor"

# indicator -> (what it is in words, unit)
INDICATORS: dict[str, tuple[str, str]] = {
    "lv_min_v": ("12 V battery minimum voltage", "V"),
    "cell_spread_v": ("traction battery cell-voltage spread", "V"),
    "soh_pct": ("traction battery state of health", "%"),
    "pad_wear_pct": ("highest brake pad wear", "%"),
    "pad_excess_pct": ("brake pad wear above the car's other pads", "%"),
    "tyre_deficit_kpa": ("lowest tyre pressure against the car's other tyres", "kPa"),
    "coolant_excess_c": ("coolant temperature above ambient while driving", "°C"),
    "motor_temp_c": ("peak motor temperature", "°C"),
    "coolant_per_kw": ("coolant rise above ambient per kW of motor power", "°C/kW"),
    "motor_over_coolant_c": ("motor temperature above coolant while driving", "°C"),
}

_SQL = f"""
WITH wide AS (
  SELECT vin, ts,
    max(value) FILTER (WHERE signal = 'Vehicle.LowVoltageBattery.CurrentVoltage') AS lv,
    max(value) FILTER (WHERE signal = '{_TB}.CellVoltage.Max') AS cmax,
    max(value) FILTER (WHERE signal = '{_TB}.CellVoltage.Min') AS cmin,
    max(value) FILTER (WHERE signal = '{_TB}.StateOfHealth') AS soh,
    {", ".join(f"max(value) FILTER (WHERE signal = '{_A}.{w}.Brake.PadWear') AS pad{i}" for i, w in enumerate(_WHEELS))},
    {", ".join(f"max(value) FILTER (WHERE signal = '{_A}.{w}.Tire.Pressure') AS tyre{i}" for i, w in enumerate(_WHEELS))},
    max(value) FILTER (WHERE signal = '{_EM}.CoolantTemperature') AS coolant,
    max(value) FILTER (WHERE signal = '{_EM}.Temperature') AS motor,
    max(value) FILTER (WHERE signal = 'Vehicle.Exterior.AirTemperature') AS ambient,
    max(value) FILTER (WHERE signal = 'Vehicle.Speed') AS speed,
    max(value) FILTER (WHERE signal = '{_EM}.Power') AS power
  FROM signals WHERE ($vins IS NULL OR list_contains($vins, vin))
    AND ($start IS NULL OR ts >= $start) AND ($end IS NULL OR ts < $end)
  GROUP BY vin, ts
)
SELECT vin,
  CAST(floor(epoch(ts) / $bucket) AS BIGINT) AS bucket,
  min(lv) AS lv_min_v,
  quantile_cont(cmax - cmin, 0.9) AS cell_spread_v,
  avg(soh) AS soh_pct,
  max(greatest(pad0, pad1, pad2, pad3)) AS pad_wear_pct,
  max(greatest(pad0, pad1, pad2, pad3) - (pad0 + pad1 + pad2 + pad3 - greatest(pad0, pad1, pad2, pad3)) / 3) AS pad_excess_pct,
  avg(least(tyre0, tyre1, tyre2, tyre3) - (tyre0 + tyre1 + tyre2 + tyre3 - least(tyre0, tyre1, tyre2, tyre3)) / 3) AS tyre_deficit_kpa,
  avg(coolant - ambient) FILTER (WHERE speed > 5) AS coolant_excess_c,
  max(motor) AS motor_temp_c,
  avg(coolant - ambient) FILTER (WHERE speed > 5)
    / (avg(abs(power)) FILTER (WHERE speed > 5) + 1.0) AS coolant_per_kw,
  avg(motor - coolant) FILTER (WHERE speed > 5) AS motor_over_coolant_c,
  count(*) AS samples
FROM wide GROUP BY ALL ORDER BY vin, bucket
"""


def bucket_frame(
    lake: Lake,
    *,
    bucket_hours: float = 4.0,
    vins: Sequence[str] | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> pl.DataFrame:
    """Per vehicle and time bucket: ``vin, bucket, t_end`` (UTC) and the ``INDICATORS``."""
    if bucket_hours <= 0:
        raise ValidationError("bucket_hours must be > 0")
    con = lake.connect()
    try:
        table = con.sql(
            _SQL,
            params={
                "vins": None if vins is None else list(vins),
                "start": start,
                "end": end,
                "bucket": bucket_hours * 3600.0,
            },
        ).to_arrow_table()
    except Exception as exc:  # duckdb.Error: a bad lake, reported as such
        raise ConfigError(f"reading signals from {lake.root}: {exc}") from None
    finally:
        con.close()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if frame.height == 0:
        raise ValidationError(f"the lake at {lake.root} has no signals for these vehicles/times")
    step = int(bucket_hours * 3600 * 1_000_000)
    frame = frame.with_columns(
        pl.from_epoch((pl.col("bucket") + 1) * step, time_unit="us")
        .dt.replace_time_zone("UTC")
        .alias("t_end")
    )
    # coolant while driving is missing in buckets without driving: carry the last value
    return frame.sort("vin", "bucket").with_columns(
        pl.col(list(INDICATORS)).forward_fill().over("vin").fill_null(strategy="zero")
    )


def relative_to_fleet(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``<indicator>_vs_fleet``: (value − fleet median) / fleet MAD in the same bucket."""
    exprs = []
    for name in INDICATORS:
        med = pl.col(name).median().over("bucket")
        mad = (pl.col(name) - med).abs().median().over("bucket")
        exprs.append(((pl.col(name) - med) / (1.4826 * mad + 1e-6)).alias(f"{name}_vs_fleet"))
    return frame.with_columns(exprs)


def lake_features(
    buckets: pl.DataFrame, windows: Sequence[int] = (3, 6, 12), baseline: int = 6
) -> pl.DataFrame:
    """``vin, bucket, t_end`` and the model features for every vehicle-bucket."""
    rel = relative_to_fleet(buckets)
    series = [*INDICATORS, *(f"{n}_vs_fleet" for n in INDICATORS)]
    vins = rel["vin"].unique(maintain_order=True)
    index = pl.DataFrame({"vin": vins, "unit": np.arange(len(vins), dtype=np.int64)})
    framed = rel.join(index, on="vin").rename({"bucket": "cycle"})
    feats = FeatureBuilder(windows, baseline).transform(framed, series)
    return (
        feats.join(index, on="unit")
        .join(
            rel.select("vin", "bucket", "t_end"),
            left_on=["vin", "cycle"],
            right_on=["vin", "bucket"],
        )
        .rename({"cycle": "bucket"})
        .drop("unit", "cycles_seen")
    )


def horizon_labels(
    feats: pl.DataFrame, failures: pl.DataFrame, component: str, horizon_h: float
) -> tuple[np.ndarray, np.ndarray]:
    """(label, usable) per row: fails within ``horizon_h`` after the bucket's end; rows at
    or after the component's failure are not usable (the part is broken, then replaced)."""
    fail = failures.filter(pl.col("component") == component).select(
        "vin", pl.col("failure_ts").alias("_fail")
    )
    joined = feats.select("vin", "t_end").join(fail, on="vin", how="left")
    t = joined["t_end"].dt.epoch("s").to_numpy().astype(np.float64)
    f = joined["_fail"].dt.epoch("s").to_numpy().astype(np.float64)  # NaN: no failure
    with np.errstate(invalid="ignore"):
        usable = ~(t >= f)
        label = (f > t) & (f <= t + horizon_h * 3600)
    return label.astype(np.float64), usable


def _feature_names(feats: pl.DataFrame) -> list[str]:
    return [c for c in feats.columns if c not in ("vin", "bucket", "t_end")]


class FleetRiskModel:
    """Per component and horizon: calibrated P(failure within H hours) from lake features."""

    def __init__(
        self,
        components: Sequence[str] = COMPONENTS,
        horizons_h: Sequence[float] = (24.0, 72.0),
        bucket_hours: float = 4.0,
        windows: Sequence[int] = (3, 6, 12),
        baseline: int = 6,
        calibration_folds: int = 3,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        seed: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.components = tuple(components)
        self.horizons_h = tuple(float(h) for h in horizons_h)
        self.bucket_hours = bucket_hours
        self.windows = tuple(windows)
        self.baseline = baseline
        self.calibration_folds = calibration_folds
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.seed = seed
        self.n_jobs = n_jobs

    def get_params(self) -> dict[str, Any]:
        return {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in vars(self).items()
            if not k.endswith("_") or k in ("horizons_h",)
        }

    def _params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": 20,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "feature_fraction": 0.5,
            "seed": self.seed,
            "num_threads": 0 if self.n_jobs == -1 else self.n_jobs,
            "verbosity": -1,
            "deterministic": True,
            "force_row_wise": True,
        }

    def features(self, lake: Lake, **where: Any) -> pl.DataFrame:
        return lake_features(
            bucket_frame(lake, bucket_hours=self.bucket_hours, **where), self.windows, self.baseline
        )

    def fit(
        self,
        lake: Lake,
        failures: pl.DataFrame | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> FleetRiskModel:
        """Train every (component, horizon) model on the lake's signals and failures."""
        start = time.perf_counter()
        feats = self.features(lake)
        if failures is None:
            failures = _failures(lake)
        self.feature_names_ = _feature_names(feats)
        data = feats.select(self.feature_names_).to_numpy().astype(np.float64)
        vin = feats["vin"].to_numpy()
        vins = np.unique(vin)
        rng = np.random.default_rng(self.seed)
        groups = np.array_split(rng.permutation(vins), self.calibration_folds)
        self.boosters_: dict[str, lgb.Booster] = {}
        self.calibration_: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.thresholds_: dict[str, float] = {}
        self.train_info_: dict[str, Any] = {"vehicles": len(vins), "rows": feats.height}
        for comp in self.components:
            for h in self.horizons_h:
                key = _key(comp, h)
                if progress is not None:
                    progress(key)
                label, usable = horizon_labels(feats, failures, comp, h)
                x, y, g = data[usable], label[usable], vin[usable]
                positives = int(y.sum())
                if positives < 5 or positives == len(y):
                    raise ValidationError(
                        f"{comp}: {positives} rows fail within {h:g} h — too few to learn "
                        "(simulate a larger fleet, more days or more faults)"
                    )
                oof = np.zeros(len(y))
                for held in groups:
                    mask = np.isin(g, held)
                    if (y[~mask] > 0).sum() == 0:
                        oof[mask] = -10.0
                        continue
                    b = lgb.train(
                        self._params(), lgb.Dataset(x[~mask], y[~mask]), self.n_estimators
                    )
                    oof[mask] = b.predict(x[mask], raw_score=True)
                iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(oof, y)
                cal = (np.asarray(iso.X_thresholds_, float), np.asarray(iso.y_thresholds_, float))
                self.calibration_[key] = cal
                p_oof = np.interp(oof, *cal)
                self.thresholds_[key] = _best_threshold(p_oof, y)
                alert = p_oof >= self.thresholds_[key]
                tp = float((alert & (y > 0)).sum())
                self.train_info_[f"oof_f1/{key}"] = round(
                    float(2 * tp / (alert.sum() + y.sum())), 4
                )
                self.train_info_[f"oof_brier/{key}"] = round(float(np.mean((p_oof - y) ** 2)), 5)
                self.boosters_[key] = lgb.train(
                    self._params(),
                    lgb.Dataset(x, y, feature_name=self.feature_names_),
                    self.n_estimators,
                )
                self.train_info_[f"positives/{key}"] = positives
        self.train_info_["fit_seconds"] = round(time.perf_counter() - start, 2)
        self.train_info_["created"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "boosters_"):
            raise ValidationError("FleetRiskModel is not fitted (call fit or load)")

    def predict_proba(self, feats: pl.DataFrame) -> pl.DataFrame:
        """Long table: vin, bucket, t_end, component, horizon_h, p_fail, alert."""
        self._check_fitted()
        data = feats.select(self.feature_names_).to_numpy().astype(np.float64)
        parts = []
        for comp in self.components:
            for h in self.horizons_h:
                key = _key(comp, h)
                raw = self.boosters_[key].predict(data, raw_score=True)
                p = np.interp(raw, *self.calibration_[key])
                parts.append(
                    feats.select("vin", "bucket", "t_end").with_columns(
                        pl.lit(comp).alias("component"),
                        pl.lit(h).alias("horizon_h"),
                        pl.Series("p_fail", p),
                        pl.Series("alert", p >= self.thresholds_[key]),
                    )
                )
        return pl.concat(parts)

    def explain(
        self, feats: pl.DataFrame, component: str, horizon_h: float | None = None
    ) -> tuple[np.ndarray, float]:
        """(contributions rows × features, mean bias) in log-odds for one component model."""
        self._check_fitted()
        key = _key(component, max(self.horizons_h) if horizon_h is None else horizon_h)
        if key not in self.boosters_:
            raise ValidationError(f"no model for {key}")
        data = feats.select(self.feature_names_).to_numpy().astype(np.float64)
        contrib = contributions([self.boosters_[key]], data)
        return contrib, float(contrib[:, -1].mean()) if len(contrib) else 0.0

    # -- artifact ------------------------------------------------------------------
    def save(
        self,
        folder: Path | str,
        *,
        data: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> Path:
        self._check_fitted()
        folder = create_folder(folder)
        models = {}
        for key, booster in self.boosters_.items():
            x, y = self.calibration_[key]
            models[key] = save_booster(folder, f"booster_{key.replace('/', '_')}.txt", booster) | {
                "calibration": {"method": "isotonic", "x": x.tolist(), "y": y.tolist()},
                "threshold": self.thresholds_[key],
            }
        card = card_header(
            format=FLEET_FORMAT,
            kind="FleetRiskModel (LightGBM per component and horizon, isotonic calibration)",
            params=self.get_params(),
            data=data,
            training=self.train_info_,
            metrics=metrics,
            features=self.feature_names_,
        )
        card |= {
            "indicators": {k: {"meaning": m, "unit": u} for k, (m, u) in INDICATORS.items()},
            "models": models,
        }
        write_card(folder, card)
        return folder

    @classmethod
    def load(cls, folder: Path | str) -> FleetRiskModel:
        folder, card = read_card(folder, FLEET_FORMAT)
        model = cls(**card["params"])
        model.feature_names_ = list(card["features"])
        model.train_info_ = card["training"]
        model.boosters_, model.calibration_, model.thresholds_ = {}, {}, {}
        for key, entry in card["models"].items():
            model.boosters_[key] = load_booster(folder, entry)
            cal = entry["calibration"]
            model.calibration_[key] = (np.asarray(cal["x"], float), np.asarray(cal["y"], float))
            model.thresholds_[key] = float(entry["threshold"])
        return model


def _key(component: str, horizon_h: float) -> str:
    return f"{component}/{horizon_h:g}h"


def _best_threshold(p: np.ndarray, y: np.ndarray) -> float:
    """The probability threshold with the best F1 on out-of-fold training scores."""
    best, best_f1 = 0.5, -1.0
    for thr in np.unique(np.round(p, 3)):
        if thr <= 0:
            continue
        alert = p >= thr
        tp = float((alert & (y > 0)).sum())
        f1 = 2 * tp / (alert.sum() + (y > 0).sum()) if tp else 0.0
        if f1 > best_f1:
            best, best_f1 = float(thr), f1
    return best


def _failures(lake: Lake) -> pl.DataFrame:
    frame = pl.from_arrow(lake.read("failures"))
    assert isinstance(frame, pl.DataFrame)
    return frame


def evaluate_alerts(
    scores: pl.DataFrame, failures: pl.DataFrame, horizon_h: float | None = None
) -> pl.DataFrame:
    """Per component: precision, recall and lead time of alerts against ground truth.

    A (vehicle, component) pair is *flagged* when any of its buckets alerts before the
    component fails. A flag is correct when the component really has a fault that began
    before the alert (so an alert on a fault whose failure falls after the run counts
    as correct). Recall is over pairs that failed during the scored period after at least one
    scored bucket; lead time is failure time − first alert, for failures caught in time.
    """
    h = float(scores["horizon_h"].max()) if horizon_h is None else horizon_h  # type: ignore[arg-type]
    s = scores.filter(pl.col("horizon_h") == h)
    truth = failures.select(
        "vin",
        "component",
        pl.col("onset_ts").dt.convert_time_zone("UTC"),
        pl.col("failure_ts").dt.convert_time_zone("UTC"),
    )
    joined = s.join(truth, on=["vin", "component"], how="left").filter(
        pl.col("failure_ts").is_null() | (pl.col("t_end") <= pl.col("failure_ts"))
    )
    first = (
        joined.filter(pl.col("alert"))
        .group_by("vin", "component")
        .agg(pl.col("t_end").min().alias("first_alert"))
    )
    start = s["t_end"].min()
    rows = []
    for comp in s["component"].unique(maintain_order=True).to_list():
        flags = first.filter(pl.col("component") == comp).join(
            truth.filter(pl.col("component") == comp), on=["vin", "component"], how="left"
        )
        correct = flags.filter(
            pl.col("onset_ts").is_not_null() & (pl.col("onset_ts") <= pl.col("first_alert"))
        )
        failed = truth.filter(
            (pl.col("component") == comp)
            & pl.col("failure_ts").is_not_null()
            & (pl.col("failure_ts") > start)
        )
        caught = failed.join(flags.select("vin", "first_alert"), on="vin", how="inner")
        lead = (caught["failure_ts"] - caught["first_alert"]).dt.total_seconds().to_numpy() / 3600
        rows.append(
            {
                "component": comp,
                "horizon_h": h,
                "flagged": flags.height,
                "correct": correct.height,
                "precision": correct.height / flags.height if flags.height else float("nan"),
                "failures": failed.height,
                "caught": caught.height,
                "recall": caught.height / failed.height if failed.height else float("nan"),
                "median_lead_h": float(np.median(lead)) if len(lead) else float("nan"),
            }
        )
    return pl.DataFrame(rows)


def to_arrow(frame: pl.DataFrame) -> pa.Table:
    return frame.to_arrow()


def risk_scenario(
    vehicles: int = 150, days: int = 10, seed: int = 1, fault_rate: float = 0.12
) -> Any:
    """The demo fleet with every fault ``fault_rate`` likely: enough failures to learn from.

    Train and test fleets differ by ``seed`` (different cars, drivers, weather and faults).
    """
    from dataclasses import replace

    from fleetops.sim import FaultSpec, load_scenario

    base = load_scenario("demo").with_overrides(vehicles=vehicles, days=days, seed=seed)
    return replace(
        base,
        name=f"risk-{seed}",
        faults=tuple(FaultSpec(component=c, probability=fault_rate) for c in COMPONENTS),
    )
