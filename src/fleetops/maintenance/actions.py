"""From risk scores to maintenance actions: explanations in words, ranked work orders,
lake tables (``rul_predictions``, ``work_orders``), plots and the report section."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from fleetops.core.errors import ConfigError
from fleetops.core.lake import Lake
from fleetops.maintenance.fleet import INDICATORS, FleetRiskModel

UTC_US = pa.timestamp("us", tz="UTC")
# Tables this package writes (core/schema.py does not define them; they could move there).
RUL_PREDICTIONS = pa.schema(
    [
        pa.field("vin", pa.string(), nullable=False),
        pa.field("ts", UTC_US, nullable=False),  # end of the scored bucket
        pa.field("component", pa.string(), nullable=False),
        pa.field("horizon_h", pa.float64(), nullable=False),
        pa.field("p_fail", pa.float64(), nullable=False),  # calibrated P(failure within horizon)
        pa.field("alert", pa.bool_(), nullable=False),
        pa.field("model_created", pa.string()),
    ]
)
WORK_ORDERS = pa.schema(
    [
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("vin", pa.string(), nullable=False),
        pa.field("component", pa.string(), nullable=False),
        pa.field("due_by", UTC_US, nullable=False),
        pa.field("confidence", pa.float64(), nullable=False),
        pa.field("evidence", pa.string(), nullable=False),
        pa.field("created", UTC_US, nullable=False),
    ]
)
WORK_ORDER_COLUMNS = WORK_ORDERS.names

_FEATURE = re.compile(
    r"^(?P<ind>[a-z_]+?)(?P<fleet>_vs_fleet)?_(?P<stat>last|mean\d+|slope\d+|history_mean|drift|delta0)$"
)


def describe(
    feature: str, value: float, contribution: float, bucket_hours: float, baseline: int
) -> str:
    """One driver in words, e.g. 'highest brake pad wear rose 2.10 %/day (last 24 h); raises risk'."""
    m = _FEATURE.match(feature)
    effect = "raises risk" if contribution > 0 else "lowers risk"
    if not m or m["ind"] not in INDICATORS:
        return f"{feature} = {value:.3g} ({effect})"
    meaning, unit = INDICATORS[m["ind"]]
    fleet = m["fleet"] is not None
    u = "fleet MADs" if fleet else unit
    stat = m["stat"]
    vs = " relative to the fleet" if fleet else ""
    if stat == "last":
        text = f"{meaning}{vs} is {value:+.2f} {u}" if fleet else f"{meaning} is {value:.2f} {u}"
    elif stat.startswith("mean"):
        hours = int(stat[4:]) * bucket_hours
        text = f"{meaning}{vs} averaged {value:.2f} {u} over the last {hours:g} h"
    elif stat.startswith("slope"):
        hours = int(stat[5:]) * bucket_hours
        per_day = value * 24.0 / bucket_hours
        verb = "rose" if per_day > 0 else "fell"
        faster = " faster than the fleet" if fleet else ""
        text = f"{meaning} {verb} {abs(per_day):.2f} {u}/day{faster} (last {hours:g} h)"
    elif stat == "drift":
        text = f"{meaning}{vs} moved {value:+.2f} {u} from the vehicle's own history"
    elif stat == "delta0":
        text = f"{meaning}{vs} moved {value:+.2f} {u} since the vehicle's first {baseline * bucket_hours:g} h"
    else:
        text = f"{meaning}{vs} has averaged {value:.2f} {u} so far"
    return f"{text} ({effect})"


def explain_rows(
    model: FleetRiskModel, feats: pl.DataFrame, component: str, top: int = 3
) -> pl.DataFrame:
    """Per row of ``feats``: vin, t_end, bias, prediction (log-odds), top drivers in words.

    ``drivers`` is a list of (feature, value, contribution, words); contributions of all
    features plus the bias equal the booster's raw prediction.
    """
    contrib, _ = model.explain(feats, component)
    data = feats.select(model.feature_names_).to_numpy()
    out: dict[str, list[Any]] = {k: [] for k in ("vin", "t_end", "bias", "raw", "drivers")}
    for i in range(feats.height):
        order = np.argsort(-np.abs(contrib[i, :-1]))[:top]
        out["vin"].append(feats["vin"][i])
        out["t_end"].append(feats["t_end"][i])
        out["bias"].append(float(contrib[i, -1]))
        out["raw"].append(float(contrib[i].sum()))
        out["drivers"].append(
            [
                {
                    "feature": model.feature_names_[j],
                    "value": float(data[i, j]),
                    "contribution": float(contrib[i, j]),
                    "words": describe(
                        model.feature_names_[j],
                        float(data[i, j]),
                        float(contrib[i, j]),
                        model.bucket_hours,
                        model.baseline,
                    ),
                }
                for j in order
            ]
        )
    return pl.DataFrame(out)


def work_orders(
    model: FleetRiskModel, feats: pl.DataFrame, scores: pl.DataFrame, top: int = 3
) -> pl.DataFrame:
    """Ranked work orders at each vehicle's latest bucket.

    A (vehicle, component) gets an order when any horizon's model alerts; ``due_by`` is the
    bucket end plus the shortest alerting horizon, ``confidence`` that horizon's calibrated
    probability, ``evidence`` the top drivers in words. Ranked by due date, then confidence.
    """
    latest = scores.filter(pl.col("t_end") == pl.col("t_end").max().over("vin"))
    alerts = (
        latest.filter(pl.col("alert"))
        .sort("horizon_h")
        .group_by("vin", "component", maintain_order=True)
        .first()
    )
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    rows: list[dict[str, Any]] = []
    last_feats = feats.filter(pl.col("t_end") == pl.col("t_end").max().over("vin"))
    for comp in alerts["component"].unique(maintain_order=True).to_list():
        chosen = alerts.filter(pl.col("component") == comp)
        sub = last_feats.join(chosen.select("vin"), on="vin", how="semi")
        words = explain_rows(model, sub, comp, top)
        by_vin = {v: d for v, d in zip(words["vin"], words["drivers"], strict=True)}
        for r in chosen.iter_rows(named=True):
            rows.append(
                {
                    "vin": r["vin"],
                    "component": comp,
                    "due_by": r["t_end"] + dt.timedelta(hours=r["horizon_h"]),
                    "confidence": round(float(r["p_fail"]), 4),
                    "evidence": "; ".join(d["words"] for d in by_vin[r["vin"]]),
                    "created": created,
                }
            )
    if not rows:
        return pl.from_arrow(WORK_ORDERS.empty_table())  # type: ignore[return-value]
    frame = pl.DataFrame(rows).sort(["due_by", "confidence"], descending=[False, True])
    return frame.with_columns(
        pl.int_range(1, frame.height + 1, dtype=pl.Int32).alias("rank")
    ).select(WORK_ORDER_COLUMNS)


def export_work_orders(orders: pl.DataFrame, path: Path | str) -> Path:
    """CSV or JSON (by suffix) of the ranked work-order list."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".json":
            path.write_text(orders.write_json(), encoding="utf-8")
        elif path.suffix.lower() == ".csv":
            orders.write_csv(path)
        else:
            raise ConfigError(f"{path}: work orders are written as .csv or .json")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write ({exc.strerror})") from None
    return path


def write_to_lake(
    lake: Lake, scores: pl.DataFrame, orders: pl.DataFrame, created: str
) -> dict[str, int]:
    """Append predictions to ``rul_predictions``; make ``orders`` the ``work_orders`` table."""
    preds = scores.rename({"t_end": "ts"}).with_columns(pl.lit(created).alias("model_created"))
    preds_arrow = preds.select(RUL_PREDICTIONS.names).to_arrow().cast(RUL_PREDICTIONS)
    lake.write("rul_predictions", preds_arrow)
    lake.replace("work_orders", orders.select(WORK_ORDER_COLUMNS).to_arrow().cast(WORK_ORDERS))
    return {"rul_predictions": preds.height, "work_orders": orders.height}


# -- plots ------------------------------------------------------------------------------
def risk_over_time_figure(scores: pl.DataFrame) -> Any:
    """Fleet risk per bucket: expected failures (Σ p) and vehicles on alert, per component."""
    import matplotlib.pyplot as plt

    h = float(scores["horizon_h"].max())  # type: ignore[arg-type]
    s = scores.filter(pl.col("horizon_h") == h)
    agg = (
        s.group_by("t_end", "component").agg(pl.col("p_fail").sum().alias("expected")).sort("t_end")
    )
    fig, ax = plt.subplots(figsize=(9, 3.4))
    for comp in sorted(agg["component"].unique().to_list()):
        part = agg.filter(pl.col("component") == comp)
        ax.plot(part["t_end"].to_list(), part["expected"].to_list(), lw=1.2, label=comp)
    ax.set_ylabel(f"expected failures within {h:g} h")
    ax.set_title("Fleet risk over time (sum of calibrated probabilities)")
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return fig


def waterfall_png(
    model: FleetRiskModel,
    feats: pl.DataFrame,
    vin: str,
    component: str,
    path: Path | str,
    top: int = 8,
) -> Path:
    """Waterfall of one vehicle's latest prediction for ``component`` (log-odds)."""
    from fleetops.maintenance.plots import save, waterfall_figure

    row = feats.filter(pl.col("vin") == vin)
    if row.height == 0:
        raise ConfigError(f"{vin}: no data for this vehicle")
    row = row.tail(1)
    words = explain_rows(model, row, component, top)
    drivers = words["drivers"][0]
    labels = [d["words"][:90] for d in drivers]
    contrib = [d["contribution"] for d in drivers]
    rest = words["raw"][0] - words["bias"][0] - sum(contrib)
    labels.append("all other features")
    contrib.append(rest)
    fig = waterfall_figure(
        labels,
        contrib,
        words["bias"][0],
        f"{vin} {component}: why this risk",
        "log-odds of failure",
    )
    return save(fig, path)


# -- report -----------------------------------------------------------------------------
