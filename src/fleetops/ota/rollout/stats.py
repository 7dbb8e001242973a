"""The tests behind the automatic halt and the virtual-fleet block.

Every test here is one-sided (is the updated cohort *worse*?) and tests a null hypothesis
that already grants the release a practical-significance margin, so a halt means "worse by
more than the margin", not merely "different":

* event rates (DTCs, failed boots, IDS alerts per vehicle-day): the exact conditional test
  for two Poisson rates. Given ``n = x_t + x_c`` events, ``x_t`` is binomial with
  ``p = e_t·r / (e_t·r + e_c)`` when the treated rate is ``r`` times the control rate; the
  null is ``r = 1 + margin`` (the worst rate still acceptable), p-value ``P(X >= x_t)``.
* install failures: Fisher's exact test against a reference campaign when one is known,
  else the exact binomial test against an acceptable failure probability.
* a continuous risk score (predicted failure risk): Welch's t-test of the per-vehicle mean,
  shifted by an absolute margin.

Across signals at one look, Holm's step-down procedure controls the family-wise error.
Across looks (the campaign is judged every day), look ``k`` (1-based) spends
``alpha / (k (k + 1))`` of the total: the series sums to ``alpha`` for any number of looks,
so by the union bound the chance that a release with no regression beyond the margins is
ever halted is at most ``alpha`` over the whole campaign — conservative (the looks are
positively correlated), but valid without fixing the number of looks in advance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from fleetops.core.errors import ValidationError


@dataclass(frozen=True, slots=True)
class TestResult:
    """One signal's comparison: what was counted and how surprising it is under the null."""

    statistic: float  # the treated/control ratio (rates), the failure share, or the mean shift
    p_value: float
    method: str


def rate_test(
    treated_events: int,
    treated_exposure: float,
    control_events: int,
    control_exposure: float,
    margin: float = 0.0,
) -> TestResult:
    """Is the treated Poisson rate above ``(1 + margin)`` × the control rate? (exact, one-sided)"""
    if treated_events < 0 or control_events < 0:
        raise ValidationError("event counts cannot be negative")
    if treated_exposure <= 0 or control_exposure <= 0:
        raise ValidationError("both cohorts need positive exposure to compare rates")
    if margin < 0:
        raise ValidationError(f"the margin must be >= 0, got {margin}")
    n = treated_events + control_events
    ratio = (
        (treated_events / treated_exposure) / (control_events / control_exposure)
        if control_events
        else math.inf
        if treated_events
        else 1.0
    )
    if n == 0:
        return TestResult(ratio, 1.0, "exact conditional binomial (Poisson rates)")
    weighted = treated_exposure * (1.0 + margin)
    p0 = weighted / (weighted + control_exposure)
    p = float(stats.binom.sf(treated_events - 1, n, p0))
    return TestResult(ratio, min(1.0, p), "exact conditional binomial (Poisson rates)")


def failure_test(
    failures: int,
    attempts: int,
    acceptable: float,
    reference: tuple[int, int] | None = None,
) -> TestResult:
    """Do installs fail more often than ``acceptable`` (or than a reference campaign)?

    With ``reference = (failures, attempts)`` of an earlier release: Fisher's exact test,
    one-sided. Without: the exact binomial test of ``failures / attempts > acceptable``.
    """
    if attempts <= 0 or not 0 <= failures <= attempts:
        raise ValidationError(
            f"need 0 <= failures <= attempts and attempts > 0 ({failures}/{attempts})"
        )
    if not 0 <= acceptable < 1:
        raise ValidationError(f"the acceptable failure share must be in [0, 1), got {acceptable}")
    share = failures / attempts
    if reference is not None:
        ref_fail, ref_attempts = reference
        if ref_attempts <= 0 or not 0 <= ref_fail <= ref_attempts:
            raise ValidationError("the reference needs 0 <= failures <= attempts and attempts > 0")
        table = [[failures, attempts - failures], [ref_fail, ref_attempts - ref_fail]]
        res = stats.fisher_exact(table, alternative="greater")
        return TestResult(share, float(res.pvalue), "Fisher's exact (one-sided)")
    if acceptable == 0:
        return TestResult(share, 0.0 if failures else 1.0, "exact binomial (one-sided)")
    p = float(stats.binom.sf(failures - 1, attempts, acceptable))
    return TestResult(share, min(1.0, p), "exact binomial (one-sided)")


def mean_shift_test(treated: np.ndarray, control: np.ndarray, margin: float = 0.0) -> TestResult:
    """Is the treated mean above the control mean plus ``margin``? (Welch, one-sided)"""
    t = np.asarray(treated, dtype=np.float64)
    c = np.asarray(control, dtype=np.float64)
    if t.size < 2 or c.size < 2:
        raise ValidationError("each cohort needs at least two values for a mean comparison")
    shift = float(t.mean() - c.mean())
    if np.ptp(t) == 0 and np.ptp(c) == 0:
        return TestResult(shift, 0.0 if shift > margin else 1.0, "Welch t (one-sided)")
    res = stats.ttest_ind(t - margin, c, equal_var=False, alternative="greater")
    return TestResult(shift, float(res.pvalue), "Welch t (one-sided)")


def look_alpha(alpha: float, look: int) -> float:
    """The share of ``alpha`` that look ``look`` (1-based) spends: ``alpha / (k (k + 1))``."""
    if look < 1:
        raise ValidationError(f"looks are numbered from 1, got {look}")
    return alpha / (look * (look + 1))


def holm(p_values: list[float], alpha: float) -> tuple[list[bool], list[float]]:
    """Holm's step-down procedure: which hypotheses are rejected, and the threshold of
    each p-value's rank (``alpha / (m - rank)``)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    rejected = [False] * m
    thresholds = [math.inf] * m
    stopped = False
    for rank, i in enumerate(order):
        thresholds[i] = alpha / (m - rank)
        stopped = stopped or p_values[i] > thresholds[i]
        rejected[i] = not stopped
    return rejected, thresholds


# -- power: what the tests above could have detected --------------------------------------
#
# The power gate (see :mod:`.health`) asks, before a wave is widened: had the release added
# the minimum effect of interest, would this look have halted it? The rate and install
# powers are exact for the tests above; the risk power is the usual normal approximation.

_TAIL = 1e-12  # Poisson mass ignored on each side when summing over the event total


def _binom_critical(n: npt.NDArray[np.int64], p0: float, alpha: float) -> npt.NDArray[np.int64]:
    """Smallest ``k`` per ``n`` with ``P(Bin(n, p0) >= k) <= alpha`` (``n + 1``: never)."""
    k = np.asarray(stats.binom.isf(alpha, n, p0), dtype=np.float64) + 1.0
    k = np.nan_to_num(k, nan=0.0).astype(np.int64)
    # isf of a discrete law is found by a float search: nudge to the exact boundary.
    k = np.where(stats.binom.sf(k - 1, n, p0) > alpha, k + 1, k)
    k = np.where((k >= 1) & (stats.binom.sf(k - 2, n, p0) <= alpha), k - 1, k)
    return np.minimum(k, n + 1)


def rate_power(
    treated_exposure: float,
    control_rate: float,
    control_exposure: float,
    extra_rate: float,
    margin: float,
    alpha: float,
) -> float:
    """Power of :func:`rate_test` at level ``alpha`` when the treated rate is
    ``control_rate + extra_rate`` (exact: the conditional test's rejection probability
    summed over the Poisson law of the event total)."""
    if treated_exposure <= 0 or control_exposure <= 0:
        return 0.0
    mu_t = (control_rate + extra_rate) * treated_exposure
    mu_c = control_rate * control_exposure
    mu = mu_t + mu_c
    if mu <= 0:
        return 0.0
    lo = int(stats.poisson.ppf(_TAIL, mu))
    hi = int(stats.poisson.isf(_TAIL, mu)) + 1
    n = np.arange(max(lo, 1), hi + 1, dtype=np.int64)
    weighted = treated_exposure * (1.0 + margin)
    p0 = weighted / (weighted + control_exposure)
    k = _binom_critical(n, p0, alpha)
    reject = stats.binom.sf(k - 1, n, mu_t / mu)
    return float(min(1.0, np.sum(stats.poisson.pmf(n, mu) * reject)))


def failure_power(
    attempts: int,
    failure_share: float,
    acceptable: float,
    alpha: float,
    reference: tuple[int, int] | None = None,
) -> float:
    """Power of :func:`failure_test` at level ``alpha`` when installs fail with probability
    ``failure_share`` (exact, for both the binomial and the Fisher form)."""
    if attempts <= 0:
        return 0.0
    x = np.arange(attempts + 1, dtype=np.int64)
    if reference is None:
        reject = stats.binom.sf(x - 1, attempts, acceptable) <= alpha
    else:
        ref_fail, ref_attempts = reference
        # Fisher's one-sided p-value of each possible failure count, the reference fixed.
        p = stats.hypergeom.sf(x - 1, attempts + ref_attempts, x + ref_fail, attempts)
        reject = p <= alpha
    share = min(max(failure_share, 0.0), 1.0)
    return float(np.sum(stats.binom.pmf(x, attempts, share)[reject]))


def mean_shift_power(
    treated_n: int, control_n: int, sd: float, shift: float, margin: float, alpha: float
) -> float:
    """Approximate power of :func:`mean_shift_test` (normal approximation, common ``sd``)."""
    if treated_n < 2 or control_n < 2:
        return 0.0
    if sd <= 0:
        return 1.0 if shift > margin else 0.0
    se = sd * math.sqrt(1.0 / treated_n + 1.0 / control_n)
    return float(stats.norm.sf(stats.norm.isf(alpha) - (shift - margin) / se))


def exceed_probability(
    limit: int, trials: npt.NDArray[np.int64], p: float
) -> npt.NDArray[np.float64]:
    """``P(Bin(n, p) > limit)`` for each ``n`` of ``trials``: how likely a count rule such as
    a wave's error threshold fires."""
    return np.asarray(stats.binom.sf(limit, trials, p), dtype=np.float64)
