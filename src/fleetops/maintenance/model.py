"""``RulRegressor``: regime normalisation + rolling features + a seed ensemble of LightGBM."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, RegressorMixin

import fleetops
from fleetops.core.errors import ConfigError, ValidationError
from fleetops.maintenance.cmapss import RUL_CAP, add_rul, validate
from fleetops.maintenance.features import DEFAULT_WINDOWS, FeatureBuilder
from fleetops.maintenance.normalise import RegimeNormaliser

ARTIFACT_FORMAT = "fleetops.maintenance.rul/1"
CARD = "model_card.json"


class RulRegressor(BaseEstimator, RegressorMixin):  # type: ignore[misc]
    """Remaining useful life (cycles) from raw C-MAPSS rows.

    ``fit(frame)`` takes run-to-failure trajectories (labels are derived, capped at ``cap``)
    or explicit ``y``; ``predict(frame)`` gives one RUL per row, ``predict_last(frame)`` one per
    unit at its last cycle. The ensemble averages ``n_seeds`` boosters with seeds
    ``seed, seed+1, …`` (bagging and feature sampling make them differ).
    """

    def __init__(
        self,
        cap: float = RUL_CAP,
        windows: Sequence[int] = DEFAULT_WINDOWS,
        n_seeds: int = 3,
        seed: int = 0,
        n_estimators: int = 600,
        learning_rate: float = 0.03,
        num_leaves: int = 31,
        min_child_samples: int = 40,
        subsample: float = 0.8,
        colsample_bytree: float = 0.5,
        max_regimes: int = 10,
        n_jobs: int = -1,
    ) -> None:
        self.cap = cap
        self.windows = windows
        self.n_seeds = n_seeds
        self.seed = seed
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.max_regimes = max_regimes
        self.n_jobs = n_jobs

    # -- training ------------------------------------------------------------------
    def _params(self, seed: int) -> dict[str, Any]:
        return {
            "objective": "regression",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "bagging_fraction": self.subsample,
            "bagging_freq": 1,
            "feature_fraction": self.colsample_bytree,
            "seed": seed,
            "num_threads": 0 if self.n_jobs == -1 else self.n_jobs,
            "verbosity": -1,
            "deterministic": True,
            "force_row_wise": True,
        }

    def features(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The model's feature table for raw rows (sorted by unit, cycle)."""
        self._check_fitted()
        norm = self.normaliser_.transform(validate(frame).sort("unit", "cycle"))
        return FeatureBuilder(self.windows).transform(norm, self.normaliser_.sensors_)

    def fit(
        self, frame: pl.DataFrame, y: Sequence[float] | np.ndarray | None = None
    ) -> RulRegressor:
        start = time.perf_counter()
        frame = validate(frame)
        if y is None:
            frame = add_rul(frame.sort("unit", "cycle"), self.cap)
            target = frame["rul"].to_numpy()
        else:
            target = np.minimum(np.asarray(y, dtype=np.float64), self.cap)
            if target.shape != (frame.height,):
                raise ValidationError(f"y has {target.shape} values for {frame.height} rows")
            order = np.lexsort((frame["cycle"].to_numpy(), frame["unit"].to_numpy()))
            frame, target = frame[order], target[order]
        self.normaliser_ = RegimeNormaliser(max_regimes=self.max_regimes, seed=self.seed).fit(frame)
        feats = FeatureBuilder(self.windows).transform(
            self.normaliser_.transform(frame), self.normaliser_.sensors_
        )
        self.feature_names_ = [c for c in feats.columns if c not in ("unit", "cycle")]
        data = feats.select(self.feature_names_).to_numpy()
        self.boosters_ = [
            lgb.train(
                self._params(self.seed + i),
                lgb.Dataset(data, label=target, feature_name=self.feature_names_),
                num_boost_round=self.n_estimators,
            )
            for i in range(self.n_seeds)
        ]
        self.n_features_in_ = len(self.feature_names_)
        self.train_info_ = {
            "rows": frame.height,
            "units": frame["unit"].n_unique(),
            "regimes": len(self.normaliser_.centres_),
            "sensors_kept": self.normaliser_.sensors_,
            "fit_seconds": round(time.perf_counter() - start, 3),
        }
        return self

    # -- scoring -------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "boosters_"):
            raise ValidationError("RulRegressor is not fitted (call fit or load)")

    def _raw(self, feats: pl.DataFrame) -> np.ndarray:
        data = feats.select(self.feature_names_).to_numpy()
        pred = np.mean([b.predict(data) for b in self.boosters_], axis=0)
        return np.asarray(np.clip(pred, 0.0, None), dtype=np.float64)  # RUL cannot be negative

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """RUL for every row, in the input's (unit, cycle) sorted order."""
        return self._raw(self.features(frame))

    def predict_last(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``unit, predicted_rul`` at each unit's last cycle, in unit order."""
        feats = _last(self.features(frame))
        return pl.DataFrame(
            {"unit": feats["unit"], "predicted_rul": self._raw(feats)},
            schema={"unit": pl.Int64, "predicted_rul": pl.Float64},
        )

    def explain_last(self, frame: pl.DataFrame, top: int = 5) -> pl.DataFrame:
        """Top ``top`` features per unit (last cycle) by |SHAP contribution| (ensemble mean).

        Columns: unit, rank, feature, value, contribution (cycles of RUL it adds).
        """
        feats = _last(self.features(frame))
        data = feats.select(self.feature_names_).to_numpy()
        contrib = np.mean([b.predict(data, pred_contrib=True) for b in self.boosters_], axis=0)
        contrib = contrib[:, :-1]  # the last column is the bias (expected value)
        rows: dict[str, list[Any]] = {
            k: [] for k in ("unit", "rank", "feature", "value", "contribution")
        }
        for i, unit in enumerate(feats["unit"].to_list()):
            for rank, j in enumerate(np.argsort(-np.abs(contrib[i]))[:top], start=1):
                rows["unit"].append(unit)
                rows["rank"].append(rank)
                rows["feature"].append(self.feature_names_[j])
                rows["value"].append(float(data[i, j]))
                rows["contribution"].append(float(contrib[i, j]))
        return pl.DataFrame(rows)

    # -- artifact ------------------------------------------------------------------
    def save(
        self,
        folder: Path | str,
        *,
        data: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> Path:
        """Write a versioned artifact folder: boosters as LightGBM text, JSON model card."""
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for i, booster in enumerate(self.boosters_):
            name = f"booster_{i}.txt"
            booster.save_model(str(folder / name))
            files.append({"file": name, "sha256": _sha256(folder / name)})
        card = {
            "format": ARTIFACT_FORMAT,
            "model": "RulRegressor (LightGBM seed ensemble)",
            "fleetops_version": fleetops.__version__,
            "lightgbm_version": lgb.__version__,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "params": {
                k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params().items()
            },
            "data": data or {},
            "training": self.train_info_,
            "metrics": metrics or {},
            "features": self.feature_names_,
            "normaliser": self.normaliser_.to_dict(),
            "boosters": files,
        }
        (folder / CARD).write_text(json.dumps(card, indent=2), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path | str) -> RulRegressor:
        folder = Path(folder)
        card_path = folder / CARD
        if not card_path.is_file():
            raise ConfigError(f"{folder}: not a model artifact (no {CARD})")
        card = json.loads(card_path.read_text(encoding="utf-8"))
        if card.get("format") != ARTIFACT_FORMAT:
            raise ConfigError(
                f"{folder}: format {card.get('format')!r}, expected {ARTIFACT_FORMAT}"
            )
        params = dict(card["params"])
        params["windows"] = tuple(params["windows"])
        model = cls(**params)
        model.normaliser_ = RegimeNormaliser.from_dict(card["normaliser"])
        model.feature_names_ = list(card["features"])
        model.n_features_in_ = len(model.feature_names_)
        model.train_info_ = card["training"]
        model.boosters_ = []
        for entry in card["boosters"]:
            path = folder / entry["file"]
            if not path.is_file() or _sha256(path) != entry["sha256"]:
                raise ConfigError(f"{path}: missing or does not match the model card's hash")
            model.boosters_.append(lgb.Booster(model_file=str(path)))
        return model


def _last(feats: pl.DataFrame) -> pl.DataFrame:
    return feats.group_by("unit", maintain_order=True).last()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
