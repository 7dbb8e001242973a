"""Operating-condition (regime) normalisation of C-MAPSS sensors.

FD002/FD004 fly six operating conditions; a sensor's level there mostly reflects the
condition, not wear. We cluster the three operational settings into regimes learned on
training data and z-score each sensor within its regime, so one healthy engine looks the
same in every condition. With one condition (FD001/FD003) there is one regime and this
is plain global z-scoring.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from sklearn.cluster import KMeans

from fleetops.core.errors import ValidationError
from fleetops.maintenance.cmapss import SENSORS, SETTINGS

# k is the smallest number of clusters whose within-cluster spread of the settings is this
# small a share of the total: real regimes are tight points (ratio ~1e-6), noise around
# one point never gets there (each extra cluster only halves-ish the spread).
_TIGHT = 1e-3
_MIN_DISTINCT = 3  # a sensor with fewer distinct values per regime is quantised-constant


class RegimeNormaliser:
    """Learn regimes and per-regime sensor statistics on train; apply to any frame."""

    def __init__(self, n_regimes: int | None = None, max_regimes: int = 10, seed: int = 0) -> None:
        self.n_regimes = n_regimes  # None: choose from the data
        self.max_regimes = max_regimes
        self.seed = seed

    # -- fitting -------------------------------------------------------------------
    def fit(self, frame: pl.DataFrame) -> RegimeNormaliser:
        settings = frame.select(SETTINGS).to_numpy().astype(np.float64)
        self.settings_mean_ = settings.mean(axis=0)
        scale = settings.std(axis=0)
        self.settings_scale_ = np.where(scale > 0, scale, 1.0)
        z = (settings - self.settings_mean_) / self.settings_scale_
        self.centres_ = self._choose_centres(z)
        regime = self._assign(z)
        sensors = frame.select(SENSORS).to_numpy().astype(np.float64)
        k = len(self.centres_)
        self.mean_ = np.zeros((k, len(SENSORS)))
        self.std_ = np.ones((k, len(SENSORS)))
        distinct = np.zeros((k, len(SENSORS)))
        for r in range(k):
            block = sensors[regime == r]
            self.mean_[r] = block.mean(axis=0)
            std = block.std(axis=0)
            self.std_[r] = np.where(std > 0, std, 1.0)
            distinct[r] = [len(np.unique(block[:, j])) for j in range(block.shape[1])]
        # drop sensors that carry no within-regime signal in most regimes
        keep = np.median(distinct, axis=0) >= _MIN_DISTINCT
        self.sensors_ = [s for s, k_ in zip(SENSORS, keep, strict=True) if k_]
        if not self.sensors_:
            raise ValidationError("every sensor is constant within its regime: nothing to learn")
        return self

    def _choose_centres(self, z: np.ndarray) -> np.ndarray:
        if self.n_regimes is not None:
            return self._kmeans(z, self.n_regimes)
        total = float(((z - z.mean(axis=0)) ** 2).sum())
        if total == 0:
            return z[:1].copy()
        # subsample: regimes are dense, 20k rows pin them down and keep the fit fast
        rng = np.random.default_rng(self.seed)
        sample = z[rng.choice(len(z), size=min(len(z), 20_000), replace=False)]
        sample_total = float(((sample - sample.mean(axis=0)) ** 2).sum())
        for k in range(2, self.max_regimes + 1):
            km = KMeans(n_clusters=k, n_init=3, random_state=self.seed).fit(sample)
            if float(km.inertia_) / sample_total < _TIGHT:
                return self._kmeans(z, k)
        return np.asarray(
            z.mean(axis=0, keepdims=True), dtype=np.float64
        )  # no discrete regimes: one global regime

    def _kmeans(self, z: np.ndarray, k: int) -> np.ndarray:
        if k == 1:
            return np.asarray(z.mean(axis=0, keepdims=True), dtype=np.float64)
        km = KMeans(n_clusters=k, n_init=3, random_state=self.seed).fit(z)
        # order regimes by centre so the artifact is stable across runs
        centres = np.asarray(km.cluster_centers_)
        return np.asarray(centres[np.lexsort(centres.T[::-1])], dtype=np.float64)

    # -- applying ------------------------------------------------------------------
    def _assign(self, z: np.ndarray) -> np.ndarray:
        d = ((z[:, None, :] - self.centres_[None, :, :]) ** 2).sum(axis=2)
        return np.asarray(d.argmin(axis=1))

    def regimes(self, frame: pl.DataFrame) -> np.ndarray:
        settings = frame.select(SETTINGS).to_numpy().astype(np.float64)
        return self._assign((settings - self.settings_mean_) / self.settings_scale_)

    def transform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``unit``, ``cycle``, ``regime`` and the kept sensors, z-scored within regime."""
        if not hasattr(self, "centres_"):
            raise ValidationError("RegimeNormaliser is not fitted")
        regime = self.regimes(frame)
        idx = [SENSORS.index(s) for s in self.sensors_]
        sensors = frame.select(self.sensors_).to_numpy().astype(np.float64)
        z = (sensors - self.mean_[regime][:, idx]) / self.std_[regime][:, idx]
        return pl.DataFrame(
            {
                "unit": frame["unit"],
                "cycle": frame["cycle"],
                "regime": regime.astype(np.int64),
                **{name: z[:, i] for i, name in enumerate(self.sensors_)},
            }
        )

    def fit_transform(self, frame: pl.DataFrame) -> pl.DataFrame:
        return self.fit(frame).transform(frame)

    # -- persistence (plain JSON, no pickle) -----------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "n_regimes": self.n_regimes,
            "max_regimes": self.max_regimes,
            "seed": self.seed,
            "settings_mean": self.settings_mean_.tolist(),
            "settings_scale": self.settings_scale_.tolist(),
            "centres": self.centres_.tolist(),
            "mean": self.mean_.tolist(),
            "std": self.std_.tolist(),
            "sensors": self.sensors_,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> RegimeNormaliser:
        norm = cls(state["n_regimes"], state["max_regimes"], state["seed"])
        norm.settings_mean_ = np.asarray(state["settings_mean"], dtype=np.float64)
        norm.settings_scale_ = np.asarray(state["settings_scale"], dtype=np.float64)
        norm.centres_ = np.asarray(state["centres"], dtype=np.float64)
        norm.mean_ = np.asarray(state["mean"], dtype=np.float64)
        norm.std_ = np.asarray(state["std"], dtype=np.float64)
        norm.sensors_ = list(state["sensors"])
        return norm


class HealthIndex:
    """One linear health index from the normalised sensors: ridge regression on capped RUL.

    Trees split one feature at a time and so average many noisy sensors badly; a linear
    combination fitted on training rows fuses them into one far less noisy series, whose
    windows and trends then become features. Unit-grouped 5-fold CV on the FD001 training
    file: RMSE 12.84 → 12.20 with it (FD003: 13.26 → 13.05). Fitted on training data only.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def fit(self, normalised: pl.DataFrame, sensors: list[str], target: np.ndarray) -> HealthIndex:
        x = normalised.select(sensors).to_numpy().astype(np.float64)
        y = np.asarray(target, dtype=np.float64)
        x_mean, y_mean = x.mean(axis=0), float(y.mean())
        xc = x - x_mean
        gram = xc.T @ xc + self.alpha * np.eye(x.shape[1])
        self.coef_ = np.linalg.solve(gram, xc.T @ (y - y_mean))
        self.intercept_ = y_mean - float(x_mean @ self.coef_)
        self.sensors_ = list(sensors)
        return self

    def transform(self, normalised: pl.DataFrame) -> pl.Series:
        x = normalised.select(self.sensors_).to_numpy().astype(np.float64)
        return pl.Series("hi", x @ self.coef_ + self.intercept_)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
            "sensors": self.sensors_,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> HealthIndex:
        hi = cls(state["alpha"])
        hi.coef_ = np.asarray(state["coef"], dtype=np.float64)
        hi.intercept_ = float(state["intercept"])
        hi.sensors_ = list(state["sensors"])
        return hi
