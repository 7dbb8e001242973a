"""The statistics behind the halt: error rates checked by simulation, with stated odds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

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


def test_rate_power_is_the_rejection_rate_of_rate_test() -> None:
    # The exact power against a Monte Carlo of the test itself: 3000 draws give a standard
    # error of at most 0.009, so a 4-SE band fails by chance with probability < 1e-4.
    rng = np.random.default_rng(21)
    for e_t, rate, e_c, extra, level in (
        (100.0, 0.0005, 6000.0, 0.05, 2.4e-4),
        (150.0, 0.13, 21000.0, 0.25, 8e-4),
        (60.0, 0.012, 3000.0, 0.1, 1e-3),
    ):
        power = stats.rate_power(e_t, rate, e_c, extra, 0.25, level)
        xt = rng.poisson((rate + extra) * e_t, 3000)
        xc = rng.poisson(rate * e_c, 3000)
        hits = np.mean(
            [
                stats.rate_test(int(a), e_t, int(b), e_c, 0.25).p_value <= level
                for a, b in zip(xt, xc, strict=True)
            ]
        )
        assert abs(hits - power) <= 4 * math.sqrt(0.25 / 3000), (e_t, rate, power, hits)
    # more exposure, more power; an effect inside the margin is never detected
    assert stats.rate_power(50, 0.01, 5000, 0.05, 0.25, 1e-3) < stats.rate_power(
        200, 0.01, 5000, 0.05, 0.25, 1e-3
    )
    assert stats.rate_power(1e5, 1.0, 1e5, 0.2, 0.25, 0.05) < 0.05
    assert stats.rate_power(0, 0.01, 5000, 0.05, 0.25, 1e-3) == 0.0


def test_failure_power_matches_the_test_it_describes() -> None:
    # Brute force: sum the binomial law over the failure counts failure_test rejects.
    for reference in (None, (4, 300)):
        for n, share, level in ((22, 0.17, 0.01), (120, 0.1, 1e-3)):
            want = sum(
                float(sps.binom.pmf(x, n, share))
                for x in range(n + 1)
                if stats.failure_test(x, n, 0.02, reference).p_value <= level
            )
            got = stats.failure_power(n, share, 0.02, level, reference)
            assert got == pytest.approx(want, abs=1e-9)
    assert stats.failure_power(0, 0.5, 0.02, 0.05) == 0.0
    # the error threshold's count rule: more than 1 failure among 22 at 17 %
    assert stats.exceed_probability(1, np.array([22]), 0.17)[0] == pytest.approx(
        1 - 0.83**22 - 22 * 0.17 * 0.83**21
    )
    assert 0.0 < stats.mean_shift_power(30, 300, 0.05, 0.05, 0.02, 1e-3) < 1.0
