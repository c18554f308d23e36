"""Exact and permutation p-values for the claims' one-sided tests.

Three tests, each exact when the number of rearrangements is small and a seeded Monte Carlo
permutation test otherwise (``p = (1 + #{T* >= T}) / (1 + resamples)``, never 0):

- :func:`sign_flip_p`: a paired sample (per-example or per-run differences) against a
  threshold: under the null the differences are symmetric about it, so each sign may flip.
- :func:`two_sample_p`: two independent samples (e.g. models at two betas), the difference of
  their means against a threshold: under the null the shifted labels are exchangeable.
- :func:`trend_p`: Spearman's rank correlation of ``y + slope * x`` with ``x`` (every pairing
  equally likely under the null), i.e. whether ``y`` changes with ``x`` faster than ``-slope``.

The smallest sample with which a test can reach ``p < alpha`` at all is what the claims call
the minimum sample size (:func:`min_sign_flip_n`, ...): below it a verdict is impossible by
construction, so the claim is inconclusive.

References:
    Good, "Permutation, Parametric and Bootstrap Tests of Hypotheses", Springer 2005;
    Phipson & Smyth, "Permutation p-values should never be zero", SAGMB 2010.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

ALPHA = 0.05
RESAMPLES = 9999  # Monte Carlo permutations: p resolves to 1e-4
SEED = 0  # fixed: a claim recomputed from the same values gets the same p-value
_BATCH_ELEMENTS = 4_000_000  # sign-flip draws per batch (32 MB of float64)
ALTERNATIVES = ("greater", "less")


def _check(alternative: str) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"unknown alternative {alternative!r}; valid: {list(ALTERNATIVES)}")


def sign_flip_p(
    differences: np.ndarray,
    threshold: float = 0.0,
    alternative: str = "greater",
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> float:
    """One-sided p-value that the mean of ``differences`` lies above (below) ``threshold``.

    Args:
        differences: ``(n,)`` paired differences; NaN makes the p-value NaN.
        threshold: the value the mean is compared with.
        alternative: ``greater`` (mean above the threshold) or ``less``.
        resamples: Monte Carlo sign flips when ``2**n`` exceeds ``resamples + 1``; otherwise
            every one of the ``2**n`` sign patterns is enumerated (exact).
        seed: the Monte Carlo generator's seed.
    """
    _check(alternative)
    x = np.asarray(differences, dtype=np.float64).ravel() - threshold
    if x.size == 0 or not np.all(np.isfinite(x)):
        return math.nan
    if alternative == "less":
        x = -x
    observed = x.sum()
    # Equal sums computed in another order differ in the last bits: count them as ties.
    slack = 1e-9 * np.abs(x).sum()
    n = x.size
    if 2**n <= resamples + 1:
        patterns = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        null = (2 * patterns - 1) @ x
        return float(np.count_nonzero(null >= observed - slack) / 2**n)
    rng = np.random.default_rng(seed)
    batch = max(1, _BATCH_ELEMENTS // n)
    count, drawn = 0, 0
    while drawn < resamples:
        size = min(batch, resamples - drawn)
        # Random bits b (1: keep the sign, 0: flip it), unpacked from bytes (fast): the
        # flipped sum is sum((2b - 1) x) = 2 b.x - sum(x), at least the observed sum(x)
        # exactly when b.x >= sum(x).
        packed = rng.integers(0, 256, size=(size, (n + 7) // 8), dtype=np.uint8)
        bits = np.unpackbits(packed, axis=1, count=n).astype(np.float64)
        count += int(np.count_nonzero(bits @ x >= observed - slack / 2))
        drawn += size
    return (1 + count) / (1 + resamples)


def two_sample_p(
    sample: np.ndarray,
    reference: np.ndarray,
    threshold: float = 0.0,
    alternative: str = "greater",
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> float:
    """One-sided p-value that ``mean(sample) - mean(reference)`` lies above (below) ``threshold``.

    Exact (every split of the pooled values) when there are at most ``resamples`` splits;
    NaN when a side has fewer than two values or a value is not finite.
    """
    _check(alternative)
    a = np.asarray(sample, dtype=np.float64).ravel() - threshold
    b = np.asarray(reference, dtype=np.float64).ravel()
    # scipy's permutation test needs two values a side (claims test 4 or more)
    if min(a.size, b.size) < 2 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.nan
    result = stats.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        permutation_type="independent",
        vectorized=True,
        n_resamples=resamples,
        alternative=alternative,
        rng=np.random.default_rng(seed),
    )
    return float(result.pvalue)


def _spearman(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    rx, ry = stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    scale = np.sqrt((rx**2).sum(axis=axis) * (ry**2).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(axis=axis) / scale


def spearman_rho(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either is constant."""
    return float(_spearman(np.asarray(x, float), np.asarray(y, float)))


def trend_p(
    x: np.ndarray,
    y: np.ndarray,
    slope: float = 0.0,
    alternative: str = "greater",
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> float:
    """One-sided p-value that ``y`` rises with ``x`` faster (or slower) than ``slope``.

    ``greater``: faster, ``less``: slower. Spearman's rho of ``(x, y - slope * x)`` tested by
    permuting pairings, exact (all ``n!`` pairings) when ``n! <= resamples``.
    """
    _check(alternative)
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel() - slope * x
    if x.size < 2 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return math.nan
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    # One sample permuted against the fixed x: n! pairings (permuting both would count each
    # pairing n! times and leave the exact enumeration out of reach).
    result = stats.permutation_test(
        (y,),
        lambda values, axis: _spearman(np.broadcast_to(x, values.shape), values, axis),
        permutation_type="pairings",
        vectorized=True,
        n_resamples=resamples,
        alternative=alternative,
        rng=np.random.default_rng(seed),
    )
    return float(result.pvalue)


def min_sign_flip_n(alpha: float = ALPHA) -> int:
    """The smallest n whose exact sign-flip test can give ``p < alpha``: ``2**-n < alpha``."""
    return math.floor(math.log2(1 / alpha)) + 1


def min_two_sample_n(alpha: float = ALPHA) -> int:
    """The smallest size per group (equal groups) with ``1 / C(2n, n) < alpha``."""
    n = 1
    while 1 / math.comb(2 * n, n) >= alpha:
        n += 1
    return n


def min_trend_n(alpha: float = ALPHA) -> int:
    """The smallest number of points with ``1 / n! < alpha`` (no ties)."""
    n = 1
    while 1 / math.factorial(n) >= alpha:
        n += 1
    return n
