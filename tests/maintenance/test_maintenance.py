"""fleetops.maintenance: loader, labels, metrics, regime normalisation, model, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from fleetops.core.errors import ConfigError, ValidationError
from fleetops.maintenance import (
    FeatureBuilder,
    RegimeNormaliser,
    RulRegressor,
    add_rul,
    nasa_score,
    read_cmapss,
    read_rul,
    rmse,
)
from fleetops.maintenance.cli import maintenance_app
from fleetops.maintenance.cmapss import COLUMNS, SENSORS, SETTINGS, validate
from tests.conftest import require_shared

# FD002-like operating conditions (altitude kft, Mach, throttle angle)
CONDITIONS = np.array(
    [[0.0, 0.0, 100.0], [10.0, 0.25, 100.0], [20.0, 0.7, 100.0],
     [25.0, 0.62, 60.0], [35.0, 0.84, 100.0], [42.0, 0.84, 100.0]]
)  # fmt: skip


@pytest.fixture(scope="module")
def fd001() -> pl.DataFrame:
    return read_cmapss(require_shared("cmapss") / "train_FD001.txt")


def _write(path: Path, rows: list[list[float]]) -> Path:
    path.write_text("".join(" ".join(f"{v:g}" for v in r) + "  \n" for r in rows))
    return path


def _row(unit: int, cycle: int) -> list[float]:
    return [unit, cycle, 0.0, 0.0, 100.0, *[float(i) for i in range(21)]]


# -- metrics and labels --------------------------------------------------------------
def test_metrics_match_hand_computed_values() -> None:
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    # d = -13 → e − 1 (early), d = +10 → e − 1 (late), d = 0 → 0
    assert nasa_score([7, 20, 5], [20, 10, 5]) == pytest.approx(2 * (math.e - 1))
    # late is punished more than early by the same amount
    assert nasa_score([15], [10]) > nasa_score([5], [10])
    with pytest.raises(ValidationError):
        rmse([1, 2], [1])


def test_rul_is_capped_piecewise_linear() -> None:
    frame = validate(
        pl.DataFrame([_row(1, c) for c in range(1, 201)], schema=COLUMNS, orient="row")
    )
    rul = add_rul(frame, cap=125)["rul"].to_numpy()
    assert rul[0] == 125 and rul[-1] == 0 and rul[100] == 99  # cycle 101 of 200
    assert np.all(rul[75:] == np.arange(124, -1, -1))
    assert add_rul(frame, cap=None)["rul"][0] == 199


# -- bad input -------------------------------------------------------------------------
def test_loader_rejects_bad_rows(tmp_path: Path) -> None:
    good = [_row(1, 1), _row(1, 2)]
    assert read_cmapss(_write(tmp_path / "ok.txt", good)).height == 2
    with pytest.raises(ValidationError, match=r"short.txt:2: 25 columns, expected 26"):
        read_cmapss(_write(tmp_path / "short.txt", [good[0], good[1][:-1]]))
    nan = [_row(1, 1), [*_row(1, 2)[:7], math.nan, *_row(1, 2)[8:]]]
    with pytest.raises(ValidationError, match=r"nan.txt:2: NaN .* in s_3"):
        read_cmapss(_write(tmp_path / "nan.txt", nan))
    (tmp_path / "text.txt").write_text(" ".join(["1"] * 25) + " abc\n")
    with pytest.raises(ValidationError, match=r"text\.txt:1"):
        read_cmapss(tmp_path / "text.txt")
    with pytest.raises(ValidationError, match="cycles must increase"):
        read_cmapss(_write(tmp_path / "order.txt", [_row(1, 2), _row(1, 1)]))
    with pytest.raises(ConfigError, match="no such file"):
        read_cmapss(tmp_path / "absent.txt")


def test_frame_validation_names_missing_columns_and_nans() -> None:
    frame = pl.DataFrame([_row(1, 1)], schema=COLUMNS, orient="row")
    with pytest.raises(ValidationError, match="missing columns: s_7"):
        validate(frame.drop("s_7"))
    with pytest.raises(ValidationError, match="s_2 has NaN"):
        validate(frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("s_2")))


def test_rul_file_must_match_test_units(tmp_path: Path) -> None:
    path = tmp_path / "RUL.txt"
    path.write_text("112\n98\n")
    assert read_rul(path, [1, 2])["true_rul"].to_list() == [112.0, 98.0]
    with pytest.raises(ValidationError, match="unknown unit 3"):
        read_rul(path, [1, 2, 3])
    with pytest.raises(ValidationError, match="lacks"):
        read_rul(path, [1])
    path.write_text("12\n-1\n")
    with pytest.raises(ValidationError, match=":2:"):
        read_rul(path)


# -- features --------------------------------------------------------------------------
def test_rolling_features_look_back_only() -> None:
    t = np.arange(12, dtype=float)
    frame = pl.DataFrame({"unit": [1] * 12, "cycle": list(range(1, 13)), "s_2": 3.0 * t + 1})
    feats = FeatureBuilder(windows=(5,)).transform(frame, ["s_2"])
    assert feats["s_2_slope5"].to_list()[1:] == pytest.approx([3.0] * 11)
    assert feats["s_2_slope5"][0] == 0.0  # one point has no slope
    assert feats["s_2_mean5"][-1] == pytest.approx(np.mean(3.0 * t[-5:] + 1))
    assert feats["s_2_mean5"][1] == pytest.approx(2.5)  # partial window at the start
    assert feats["cycles_seen"].to_list() == list(range(1, 13))


# -- regime normalisation --------------------------------------------------------------
def _multi_condition(base: pl.DataFrame, regime: np.ndarray, seed: int = 1) -> pl.DataFrame:
    """Move each row into a synthetic operating condition: settings + affine sensor shift."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 3.0, size=(len(CONDITIONS), len(SENSORS)))
    shift = rng.uniform(-500, 500, size=(len(CONDITIONS), len(SENSORS)))
    settings = CONDITIONS[regime] + rng.normal(0, 0.002, size=(len(regime), 3))
    sensors = base.select(SENSORS).to_numpy() * scale[regime] + shift[regime]
    return base.with_columns(
        *[pl.Series(n, settings[:, i]) for i, n in enumerate(SETTINGS)],
        *[pl.Series(n, sensors[:, i]) for i, n in enumerate(SENSORS)],
    )


def test_single_condition_is_global_zscore(fd001: pl.DataFrame) -> None:
    norm = RegimeNormaliser().fit(fd001)
    assert len(norm.centres_) == 1
    assert {"s_1", "s_5", "s_10", "s_16", "s_18", "s_19"}.isdisjoint(norm.sensors_)
    z = norm.transform(fd001)
    raw = fd001["s_4"].to_numpy()
    np.testing.assert_allclose(z["s_4"].to_numpy(), (raw - raw.mean()) / raw.std(), atol=1e-9)


def test_multi_condition_copies_normalise_to_single_condition(fd001: pl.DataFrame) -> None:
    base = fd001.filter(pl.col("unit") <= 30)
    single = RegimeNormaliser().fit_transform(base)
    # six copies, each flown in one condition: per-regime statistics equal the global ones
    copies = pl.concat(
        [
            _multi_condition(base.with_columns(pl.col("unit") + 100 * r), np.full(base.height, r))
            for r in range(len(CONDITIONS))
        ]
    )
    norm = RegimeNormaliser()
    multi = norm.fit_transform(copies)
    assert len(norm.centres_) == len(CONDITIONS)
    assert norm.sensors_ == [c for c in single.columns if c.startswith("s_")]
    for r in range(len(CONDITIONS)):
        part = multi.filter((pl.col("unit") > 100 * r) & (pl.col("unit") <= 100 * r + 30))
        np.testing.assert_allclose(
            part.select(norm.sensors_).to_numpy(),
            single.select(norm.sensors_).to_numpy(),
            atol=1e-6,
        )


def test_multi_condition_random_regimes_match_closely(fd001: pl.DataFrame) -> None:
    base = fd001.filter(pl.col("unit") <= 50)
    single = RegimeNormaliser().fit_transform(base)
    regime = np.random.default_rng(3).integers(0, len(CONDITIONS), base.height)
    norm = RegimeNormaliser()
    multi = norm.fit_transform(_multi_condition(base, regime))
    assert len(norm.centres_) == len(CONDITIONS)
    # the learned regimes are the true ones, up to label order
    learned = norm.regimes(_multi_condition(base, regime))
    assert len({(a, b) for a, b in zip(regime, learned, strict=True)}) == len(CONDITIONS)
    cols = [c for c in norm.sensors_ if c in single.columns]
    diff = np.abs(multi.select(cols).to_numpy() - single.select(cols).to_numpy())
    assert diff.mean() < 0.05  # per-regime estimates of the same statistics
    # without per-regime statistics the conditions would dominate
    raw = _multi_condition(base, regime).select(cols).to_numpy()
    naive = (raw - raw.mean(axis=0)) / raw.std(axis=0)
    assert np.abs(naive - single.select(cols).to_numpy()).mean() > 0.3


# -- model, artifact, explanations -----------------------------------------------------
@pytest.fixture(scope="module")
def small_model(fd001: pl.DataFrame) -> RulRegressor:
    return RulRegressor(n_seeds=2, n_estimators=60, windows=(5, 10)).fit(
        fd001.filter(pl.col("unit") <= 40)
    )


def test_artifact_round_trip(
    small_model: RulRegressor, fd001: pl.DataFrame, tmp_path: Path
) -> None:
    held = fd001.filter(pl.col("unit") > 90).filter(pl.col("cycle") <= 120)
    before = small_model.predict_last(held)
    folder = small_model.save(tmp_path / "model", data={"train": "FD001 units 1-40"})
    card = json.loads((folder / "model_card.json").read_text())
    assert card["format"] == "fleetops.maintenance.rul/2"
    assert card["features"] == small_model.feature_names_ and card["created"]
    loaded = RulRegressor.load(folder)
    assert loaded.get_params() == small_model.get_params()
    after = loaded.predict_last(held)
    np.testing.assert_allclose(after["predicted_rul"], before["predicted_rul"], rtol=1e-12)
    (folder / "booster_1.txt").write_text("tampered")
    with pytest.raises(ConfigError, match="hash"):
        RulRegressor.load(folder)


def test_model_learns_and_explains(small_model: RulRegressor, fd001: pl.DataFrame) -> None:
    held = fd001.filter(pl.col("unit") > 90)
    rows = add_rul(held)
    pred = small_model.predict(held)
    # far better than predicting the mean label
    labels = rows["rul"].to_numpy()
    assert rmse(pred, labels) < 0.6 * float(labels.std())
    n = len(small_model.feature_names_)
    top = small_model.explain_last(held, top=n)
    last = small_model.predict_last(held)
    # contributions plus the bias add up to the prediction: check via the top-3 ordering
    first = top.filter(pl.col("unit") == 91)
    assert first.height == n and first["rank"].to_list() == list(range(1, n + 1))
    mags = np.abs(first["contribution"].to_numpy())
    assert np.all(np.diff(mags) <= 1e-12)
    assert last.height == 10
    assert small_model.explain_last(held, top=3).height == 30


def test_contributions_sum_to_prediction(small_model: RulRegressor, fd001: pl.DataFrame) -> None:
    held = fd001.filter(pl.col("unit") == 95)
    feats = small_model.features(held).tail(1).select(small_model.feature_names_).to_numpy()
    for booster in small_model.boosters_:
        contrib = np.asarray(booster.predict(feats, pred_contrib=True))
        assert contrib.sum() == pytest.approx(booster.predict(feats)[0], abs=1e-6)


def test_unfitted_model_says_so() -> None:
    with pytest.raises(ValidationError, match="not fitted"):
        RulRegressor().predict_last(pl.DataFrame([_row(1, 1)], schema=COLUMNS, orient="row"))


# -- CLI -------------------------------------------------------------------------------
def test_cli_trains_predicts_and_scores(fd001: pl.DataFrame, tmp_path: Path) -> None:
    data = require_shared("cmapss")
    train = tmp_path / "train.txt"
    test = tmp_path / "test.txt"
    rul = tmp_path / "rul.txt"
    fmt = ["%d", "%d"] + ["%.4f"] * 24
    np.savetxt(train, fd001.filter(pl.col("unit") <= 25).to_numpy(), fmt=fmt)
    full_test = read_cmapss(data / "test_FD001.txt").filter(pl.col("unit") <= 8)
    np.savetxt(test, full_test.to_numpy(), fmt=fmt)
    rul.write_text("\n".join((data / "RUL_FD001.txt").read_text().split()[:8]) + "\n")
    out = tmp_path / "pred.csv"
    args = ["--train", str(train), "--test", str(test), "--out", str(out), "--n-seeds", "1"]
    result = CliRunner().invoke(
        maintenance_app, ["cmapss", *args, "--rul", str(rul), "--model-out", str(tmp_path / "m")]
    )
    assert result.exit_code == 0, result.output
    assert "RMSE:" in result.output and "NASA score:" in result.output
    pred = pl.read_csv(out)
    assert pred.columns == ["unit", "predicted_rul"] and pred["unit"].to_list() == list(range(1, 9))
    assert (pred["predicted_rul"] >= 0).all()
    assert RulRegressor.load(tmp_path / "m").predict_last(full_test)["predicted_rul"].to_list() == (
        pytest.approx(pred["predicted_rul"].to_list(), abs=1e-3)
    )
    # a RUL file for the wrong units is a clean error with the validation exit code
    rul.write_text("10\n")
    bad = CliRunner().invoke(maintenance_app, ["cmapss", *args, "--rul", str(rul)])
    assert bad.exit_code == 2 and "error:" in bad.output and "unknown unit 2" in bad.output


@pytest.mark.slow
def test_fd001_test_set_rmse_is_in_range() -> None:
    data = require_shared("cmapss")
    model = RulRegressor(n_seeds=1).fit(read_cmapss(data / "train_FD001.txt"))
    test = read_cmapss(data / "test_FD001.txt")
    pred = model.predict_last(test)
    truth = read_rul(data / "RUL_FD001.txt", pred["unit"].to_list())
    assert rmse(pred["predicted_rul"], truth["true_rul"]) < 14.0


def test_blend_explanation_sums_to_prediction(
    small_model: RulRegressor, fd001: pl.DataFrame
) -> None:
    held = fd001.filter(pl.col("unit") > 95)
    assert small_model.mlps_ and small_model.mlp_weight == 0.5
    data = small_model.features(held).select(small_model.feature_names_).to_numpy()
    names, contrib = small_model.contributions(data)
    assert names[-1] == "mlp_blend" and contrib.shape == (len(data), len(names) + 1)
    np.testing.assert_allclose(contrib.sum(axis=1), small_model._blend(data), atol=1e-6)
    top = small_model.explain_last(held, top=len(names))
    assert "mlp_blend" in top["feature"].to_list()
    # without the MLP the model is the booster ensemble alone
    plain = RulRegressor(n_seeds=1, n_estimators=30, windows=(5,), mlp_weight=0.0).fit(
        fd001.filter(pl.col("unit") <= 10)
    )
    assert plain.mlps_ == []
    plain_data = plain.features(held).select(plain.feature_names_).to_numpy()
    plain_names, plain_contrib = plain.contributions(plain_data)
    assert "mlp_blend" not in plain_names
    np.testing.assert_allclose(plain_contrib.sum(axis=1), plain._blend(plain_data), atol=1e-6)
