"""Failure-horizon classifier, fleet scoring from the lake, explanations, work orders, CLI."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from fleetops.core.errors import ConfigError, ValidationError
from fleetops.core.lake import Lake
from fleetops.maintenance import RulRegressor, add_rul, read_cmapss
from fleetops.maintenance.actions import (
    describe,
    explain_rows,
    export_work_orders,
    work_orders,
    write_to_lake,
)
from fleetops.maintenance.cli import maintenance_app
from fleetops.maintenance.features import FeatureBuilder
from fleetops.maintenance.fleet import (
    FleetRiskModel,
    bucket_frame,
    evaluate_alerts,
    horizon_labels,
    relative_to_fleet,
    risk_scenario,
)
from fleetops.maintenance.model import FailureHorizonClassifier, brier_score, reliability
from fleetops.maintenance.normalise import HealthIndex
from fleetops.report import maintenance_section
from fleetops.sim import simulate_fleet
from tests.conftest import require_shared


# -- metrics and building blocks -------------------------------------------------------
def test_brier_and_reliability_hand_computed() -> None:
    assert brier_score([0.0, 1.0, 0.5], [0, 1, 1]) == pytest.approx(0.25 / 3)
    table = reliability([0.05, 0.15, 0.95, 0.9], [0, 1, 1, 1], bins=10)
    assert table["count"].to_list() == [1, 1, 2]
    assert table["observed"].to_list() == [0.0, 1.0, 1.0]
    assert table["mean_forecast"][-1] == pytest.approx(0.925)
    with pytest.raises(ValidationError):
        brier_score([0.5], [1, 0])


def test_health_index_recovers_a_linear_combination() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3))
    y = 2.0 * x[:, 0] - 1.0 * x[:, 2] + 5.0
    frame = pl.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2]})
    hi = HealthIndex(alpha=1e-9).fit(frame, ["a", "b", "c"], y)
    np.testing.assert_allclose(hi.coef_, [2.0, 0.0, -1.0], atol=1e-6)
    again = HealthIndex.from_dict(json.loads(json.dumps(hi.to_dict())))
    np.testing.assert_allclose(again.transform(frame).to_numpy(), y, atol=1e-6)


def test_delta_from_baseline_is_causal() -> None:
    values = [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]
    frame = pl.DataFrame({"unit": [1] * 6, "cycle": list(range(1, 7)), "x": values})
    feats = FeatureBuilder(windows=(2,), baseline=2).transform(frame, ["x"])
    # recent = mean of up to 10 rows so far; early = mean of the first min(2, rows) rows
    expected = [np.mean(values[: i + 1]) - np.mean(values[: min(i + 1, 2)]) for i in range(6)]
    assert feats["x_delta0"].to_list() == pytest.approx(expected)


# -- C-MAPSS horizon classifier ----------------------------------------------------------
@pytest.fixture(scope="module")
def fd001() -> pl.DataFrame:
    return read_cmapss(require_shared("cmapss") / "train_FD001.txt")


@pytest.fixture(scope="module")
def horizon_model(fd001: pl.DataFrame) -> FailureHorizonClassifier:
    return FailureHorizonClassifier(horizon=30, n_estimators=60, windows=(5, 10, 20)).fit(
        fd001.filter(pl.col("unit") <= 60)
    )


def test_horizon_probabilities_are_calibrated_on_held_out_units(
    horizon_model: FailureHorizonClassifier, fd001: pl.DataFrame
) -> None:
    held = fd001.filter(pl.col("unit") > 60)
    p = horizon_model.predict_proba(held)
    assert p.shape == (held.height, 2) and np.allclose(p.sum(axis=1), 1.0)
    assert p.min() >= 0.0 and p.max() <= 1.0
    rul = add_rul(held, cap=None)["rul"].to_numpy()
    y = (rul <= 30).astype(float)
    # much better than the constant base rate, and the forecast tracks the observed rate
    assert brier_score(p[:, 1], y) < 0.4 * brier_score(np.full_like(y, y.mean()), y)
    table = reliability(p[:, 1], y, bins=5)
    big = table.filter(pl.col("count") >= 50)
    assert (np.abs(big["mean_forecast"] - big["observed"]) < 0.2).all()
    assert p[rul <= 10, 1].mean() > 0.9 and p[rul > 80, 1].mean() < 0.05


def test_horizon_artifact_round_trip(
    horizon_model: FailureHorizonClassifier, fd001: pl.DataFrame, tmp_path: Path
) -> None:
    held = fd001.filter(pl.col("unit") > 90)
    folder = horizon_model.save(tmp_path / "h", metrics={"brier": 0.1})
    card = json.loads((folder / "model_card.json").read_text())
    assert card["format"] == "fleetops.maintenance.horizon/1"
    assert card["calibration"]["method"] == "isotonic" and card["params"]["horizon"] == 30
    loaded = FailureHorizonClassifier.load(folder)
    np.testing.assert_allclose(
        loaded.predict_proba_last(held)["p_fail"], horizon_model.predict_proba_last(held)["p_fail"]
    )
    with pytest.raises(ConfigError, match="format"):
        from fleetops.maintenance import RulRegressor

        RulRegressor.load(folder)


def test_horizon_needs_both_classes(fd001: pl.DataFrame) -> None:
    with pytest.raises(ValidationError, match="nothing to learn"):
        FailureHorizonClassifier(horizon=10_000, n_estimators=5).fit(
            fd001.filter(pl.col("unit") <= 5)
        )


# -- the fleet, from the lake --------------------------------------------------------------
VEHICLES, DAYS = 30, 5


@pytest.fixture(scope="module")
def fleet_lakes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, Lake]:
    root = tmp_path_factory.mktemp("lakes")
    lakes = []
    for name, seed in (("train", 11), ("test", 12)):
        lake = Lake(root / name)
        simulate_fleet(
            risk_scenario(vehicles=VEHICLES, days=DAYS, seed=seed, fault_rate=0.3)
        ).write_to(lake)
        lakes.append(lake)
    return lakes[0], lakes[1]


@pytest.fixture(scope="module")
def fleet_model(fleet_lakes: tuple[Lake, Lake]) -> FleetRiskModel:
    return FleetRiskModel(
        components=("brake_pads", "lv_battery"), horizons_h=(24.0, 48.0), n_estimators=40
    ).fit(fleet_lakes[0])


def test_buckets_and_fleet_relative_indicators(fleet_lakes: tuple[Lake, Lake]) -> None:
    buckets = bucket_frame(fleet_lakes[0], bucket_hours=6)
    assert buckets["vin"].n_unique() == VEHICLES
    assert buckets.group_by("vin").len()["len"].max() == DAYS * 4  # 6 h buckets
    assert buckets.null_count().sum_horizontal().item() == 0
    rel = relative_to_fleet(buckets)
    per_bucket = rel.group_by("bucket").agg(pl.col("lv_min_v_vs_fleet").median())
    assert np.abs(per_bucket["lv_min_v_vs_fleet"].to_numpy()).max() < 1e-6
    with pytest.raises(ValidationError, match="no signals"):
        bucket_frame(fleet_lakes[0], vins=["NOSUCHVIN"])


def test_horizon_labels_hand_checked() -> None:
    t = [dt.datetime(2026, 1, 5, h, tzinfo=dt.UTC) for h in (0, 6, 12, 18)]
    feats = pl.DataFrame({"vin": ["A"] * 4 + ["B"] * 4, "t_end": t + t})
    failures = pl.DataFrame(
        {
            "vin": ["A"],
            "component": ["brake_pads"],
            "failure_ts": [dt.datetime(2026, 1, 5, 13, tzinfo=dt.UTC)],
        }
    )
    label, usable = horizon_labels(feats, failures, "brake_pads", 8.0)
    assert label.tolist() == [0, 1, 1, 0, 0, 0, 0, 0]  # 06:00 and 12:00 are within 8 h
    assert usable.tolist() == [True, True, True, False, True, True, True, True]


def test_fleet_scores_explanations_and_work_orders(
    fleet_model: FleetRiskModel, fleet_lakes: tuple[Lake, Lake], tmp_path: Path
) -> None:
    test_lake = fleet_lakes[1]
    feats = fleet_model.features(test_lake)
    scores = fleet_model.predict_proba(feats)
    assert scores.height == feats.height * 4
    assert scores["p_fail"].is_between(0.0, 1.0).all()
    # explanation sums: contributions + bias = the booster's raw score
    contrib, _ = fleet_model.explain(feats, "brake_pads", 48.0)
    raw = fleet_model.boosters_["brake_pads/48h"].predict(
        feats.select(fleet_model.feature_names_).to_numpy(), raw_score=True
    )
    np.testing.assert_allclose(contrib.sum(axis=1), raw, atol=1e-6)
    words = explain_rows(fleet_model, feats.head(3), "brake_pads", top=3)
    assert all(len(d) == 3 and d[0]["words"] for d in words["drivers"])
    # alerts against ground truth
    table = evaluate_alerts(scores, pl.from_arrow(test_lake.read("failures")), 48.0)  # type: ignore[arg-type]
    assert set(table["component"]) == {"brake_pads", "lv_battery"}
    assert (table["correct"] <= table["flagged"]).all() and (
        table["caught"] <= table["failures"]
    ).all()
    # work orders: ranked by due date then confidence, exported and written to the lake
    orders = work_orders(fleet_model, feats, scores)
    if orders.height:
        keys = list(zip(orders["due_by"], (-orders["confidence"]).to_list(), strict=True))
        assert keys == sorted(keys) and orders["rank"].to_list() == list(
            range(1, orders.height + 1)
        )
        assert orders["evidence"].str.len_chars().min() > 10  # type: ignore[operator]
    export_work_orders(orders, tmp_path / "wo.csv")
    export_work_orders(orders, tmp_path / "wo.json")
    assert pl.read_csv(tmp_path / "wo.csv").height == orders.height
    with pytest.raises(ConfigError, match=r"csv or \.json"):
        export_work_orders(orders, tmp_path / "wo.txt")
    lake = Lake(tmp_path / "out")
    assert write_to_lake(lake, scores, orders, "now")["rul_predictions"] == scores.height
    assert lake.query_pl("SELECT count(*) AS n FROM rul_predictions")["n"][0] == scores.height
    section = maintenance_section(lake)
    assert section is not None
    assert section.title == "Predictive maintenance"
    assert len(section.tables[0][1]) == min(25, orders.height)
    assert section.figures  # the fleet's risk over time
    assert maintenance_section(Lake(tmp_path / "empty")) is None


def test_work_order_ranking_on_hand_made_scores(
    fleet_model: FleetRiskModel, fleet_lakes: tuple[Lake, Lake]
) -> None:
    feats = fleet_model.features(fleet_lakes[1])
    vins = feats["vin"].unique(maintain_order=True).to_list()[:3]
    last = feats.filter(pl.col("t_end") == pl.col("t_end").max()).filter(pl.col("vin").is_in(vins))
    t = last["t_end"][0]
    scores = pl.DataFrame(
        {
            "vin": [vins[0], vins[0], vins[1], vins[1], vins[2], vins[2]],
            "bucket": [0] * 6,
            "t_end": [t] * 6,
            "component": ["brake_pads"] * 6,
            "horizon_h": [24.0, 48.0] * 3,
            "p_fail": [0.2, 0.7, 0.9, 0.95, 0.6, 0.8],
            "alert": [False, True, True, True, True, True],
        }
    )
    orders = work_orders(fleet_model, last, scores)
    # vins[1] and vins[2] are due within 24 h (ranked by confidence), vins[0] within 48 h
    assert orders["vin"].to_list() == [vins[1], vins[2], vins[0]]
    assert orders["confidence"].to_list() == [0.9, 0.6, 0.7]
    assert orders["due_by"][2] - orders["due_by"][0] == dt.timedelta(hours=24)


def test_words_for_a_driver() -> None:
    text = describe("pad_wear_pct_vs_fleet_slope6", 0.35, 1.2, 4.0, 6)
    assert text == (
        "highest brake pad wear rose 2.10 fleet MADs/day faster than the fleet (last 24 h) "
        "(raises risk)"
    )
    assert describe("lv_min_v_last", 11.62, -0.3, 4.0, 6) == (
        "12 V battery minimum voltage is 11.62 V (lowers risk)"
    )


def test_fleet_model_round_trip_and_cli(
    fleet_model: FleetRiskModel, fleet_lakes: tuple[Lake, Lake], tmp_path: Path
) -> None:
    folder = fleet_model.save(tmp_path / "fm")
    loaded = FleetRiskModel.load(folder)
    feats = fleet_model.features(fleet_lakes[1])
    a, b = fleet_model.predict_proba(feats), loaded.predict_proba(feats)
    np.testing.assert_allclose(a["p_fail"], b["p_fail"])
    lake = str(fleet_lakes[1].root)
    runner = CliRunner()
    res = runner.invoke(maintenance_app, ["evaluate", "--model", str(folder), "--lake", lake])
    assert res.exit_code == 0, res.output
    assert "alerts vs ground-truth" in res.output and "vehicles/s" in res.output
    wo = tmp_path / "orders.json"
    res = runner.invoke(
        maintenance_app,
        ["predict", "--model", str(folder), "--lake", lake, "--out", str(wo),
         "--risk-plot", str(tmp_path / "risk.png"), "--no-write-lake"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert wo.is_file() and (tmp_path / "risk.png").stat().st_size > 1000
    vin = feats["vin"][0]
    png = tmp_path / "why.png"
    res = runner.invoke(
        maintenance_app,
        ["explain", "--model", str(folder), "--lake", lake, "--vin", vin,
         "--component", "brake_pads", "--png", str(png)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "raises risk" in res.output or "lowers risk" in res.output
    assert png.stat().st_size > 1000
    bad = runner.invoke(
        maintenance_app,
        ["explain", "--model", str(folder), "--lake", lake, "--vin", vin, "--component", "wipers"],
    )
    assert bad.exit_code == 2 and "unknown component" in bad.output
    trained = runner.invoke(
        maintenance_app,
        ["train", "--lake", str(fleet_lakes[0].root), "--model-out", str(tmp_path / "cli-model"),
         "--horizon-h", "48"],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    card = json.loads((tmp_path / "cli-model" / "model_card.json").read_text())
    assert card["format"] == "fleetops.maintenance.fleet/1" and len(card["models"]) == 5
    assert card["training"]["vehicles"] == VEHICLES and card["created"]
    missing = runner.invoke(maintenance_app, ["evaluate", "--model", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "model_card.json" in missing.output


def test_grouped_cv_scores_held_out_units(fd001: pl.DataFrame) -> None:
    from fleetops.maintenance.cv import grouped_cv_rmse

    small = fd001.filter(pl.col("unit") <= 24)
    total, per_fold = grouped_cv_rmse(
        small, lambda: RulRegressor(n_seeds=1, n_estimators=40, windows=(5, 10)), folds=3
    )
    assert len(per_fold) == 3 and min(per_fold) <= total <= max(per_fold)
    assert 5.0 < total < 40.0  # a real model on unseen units: neither perfect nor useless
    with pytest.raises(ValidationError, match="folds"):
        grouped_cv_rmse(small.filter(pl.col("unit") <= 2), RulRegressor, folds=3)
