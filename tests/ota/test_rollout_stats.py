"""The statistics behind the halt: error rates checked by simulation, with stated odds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fleetops.core.errors import ValidationError
from fleetops.ota.rollout import stats


def test_rate_test_holds_its_level_under_the_null() -> None:
    # 4000 draws with equal rates: the test at alpha 0.05 must reject at most 5 % (it is
    # exact and conservative). Bound: 5 % + 3 binomial standard errors (0.0103); a
    # correct test exceeds it with probability < 0.2 %.
    rng = np.random.default_rng(11)
    e_t, e_c, rate = 150.0, 3000.0, 0.12
    xt = rng.poisson(rate * e_t, 4000)
    xc = rng.poisson(rate * e_c, 4000)
    p = np.array(
        [stats.rate_test(int(a), e_t, int(b), e_c).p_value for a, b in zip(xt, xc, strict=True)]
    )
    assert np.mean(p <= 0.05) <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 4000)


def test_rate_test_detects_a_tripled_rate() -> None:
    # rate x3 on 300 vehicle-days against 3000 (expected 108 events vs 36 at the control's
    # rate), judged at p <= 0.001 with the 25 % margin: measured power 99.98 % (5000 draws),
    # so more than 2 misses in 200 draws happens by chance with probability < 1e-4.
    rng = np.random.default_rng(12)
    misses = sum(
        stats.rate_test(
            int(rng.poisson(0.36 * 300)), 300, int(rng.poisson(0.12 * 3000)), 3000, 0.25
        ).p_value
        > 0.001
        for _ in range(200)
    )
    assert misses <= 2


def test_margin_protects_a_release_within_it() -> None:
    # a rate 20 % higher, inside the 25 % margin: 95 % of large-sample looks must not reject
    p = stats.rate_test(round(0.144 * 5000), 5000, round(0.12 * 5000), 5000, margin=0.25).p_value
    assert p > 0.5
    assert stats.rate_test(0, 10, 0, 10).p_value == 1.0


def test_failure_test_binomial_and_fisher() -> None:
    assert stats.failure_test(1, 100, 0.02).p_value > 0.5
    assert stats.failure_test(15, 100, 0.02).p_value < 1e-6
    assert stats.failure_test(15, 100, 0.02, reference=(20, 1000)).p_value < 1e-4
    with pytest.raises(ValidationError):
        stats.failure_test(5, 3, 0.02)


def test_holm_and_alpha_spending() -> None:
    rejected, thr = stats.holm([0.001, 0.04, 0.012, 0.5], 0.05)
    assert rejected == [True, False, True, False]  # 0.001 <= .0125, .012 <= .0167, .04 > .025
    assert thr[0] == pytest.approx(0.0125)
    spent = sum(stats.look_alpha(0.05, k) for k in range(1, 10_000))
    assert spent < 0.05
    assert spent == pytest.approx(0.05, rel=1e-3)


def test_mean_shift_test() -> None:
    rng = np.random.default_rng(3)
    c = rng.normal(0.1, 0.02, 300)
    assert stats.mean_shift_test(rng.normal(0.2, 0.02, 50), c, 0.02).p_value < 1e-6
    assert stats.mean_shift_test(rng.normal(0.1, 0.02, 50), c, 0.02).p_value > 0.01
