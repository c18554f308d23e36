"""Exact and permutation p-values of the claims' one-sided tests."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from lfxai.metrics.significance import (
    min_sign_flip_n,
    min_trend_n,
    min_two_sample_n,
    sign_flip_p,
    spearman_rho,
    trend_p,
    two_sample_p,
)


def test_sign_flip_enumerates_every_pattern_when_few():
    # all 5 positive: only the identity pattern reaches the observed sum -> 1/32
    assert sign_flip_p([1.0, 2.0, 3.0, 4.0, 5.0]) == 1 / 32
    assert sign_flip_p([1.0, 2.0, 3.0, 4.0, 5.0], alternative="less") == 1.0
    # one negative value of the smallest size: the identity and flipping it -> 2/32
    assert sign_flip_p([-1.0, 2.0, 3.0, 4.0, 5.0]) == 2 / 32
    # the threshold shifts every difference before flipping
    assert sign_flip_p([1.5, 1.5, 1.5], threshold=1.0) == 1 / 8
    assert sign_flip_p([1.5, 1.5, 1.5], threshold=2.0, alternative="less") == 1 / 8


def test_sign_flip_counts_ties_whatever_the_summation_order():
    # 0.1 + 0.2 is not 0.3 in floating point: sums equal in exact arithmetic are ties
    # (the all-flipped pattern sums to -5.6e-17 against the observed +5.6e-17: a tie)
    assert sign_flip_p([0.1, 0.2, -0.3]) == 5 / 8
    assert sign_flip_p(np.zeros(4)) == 1.0  # every pattern ties with the observed 0


def test_sign_flip_monte_carlo_is_seeded_and_never_zero():
    rng = np.random.default_rng(3)
    strong = rng.normal(1.0, 0.1, 200)
    p = sign_flip_p(strong, resamples=999)
    assert p == 1 / 1000  # no random pattern reaches the observed sum; p never 0
    noise = rng.normal(0.0, 1.0, 200)
    first, second = sign_flip_p(noise, resamples=999), sign_flip_p(noise, resamples=999)
    assert first == second and 0.05 < first < 1  # same seed, same p
    assert sign_flip_p(noise, resamples=999, seed=1) != first


def test_sign_flip_monte_carlo_agrees_with_the_exact_test():
    values = np.array([0.3, -0.1, 0.4, 0.2, -0.05, 0.25, 0.1, -0.2, 0.15, 0.05, 0.3, -0.1])
    exact = sign_flip_p(values, resamples=2**12)  # 4096 patterns: enumerated
    sampled = sign_flip_p(values, resamples=20000)  # more than 2**12 + 1: still exact
    assert exact == sampled
    monte_carlo = sign_flip_p(values, resamples=4000)  # fewer: random flips
    assert abs(monte_carlo - exact) < 0.02


def test_nan_or_empty_gives_nan_and_a_bad_alternative_is_refused():
    assert math.isnan(sign_flip_p([1.0, float("nan")]))
    assert math.isnan(sign_flip_p([]))
    assert math.isnan(two_sample_p([1.0], [float("nan")]))
    assert math.isnan(trend_p([1.0, 2.0, 3.0], [1.0, 1.0, 1.0]))  # constant: no ranking
    with pytest.raises(ValueError, match="two-sided"):
        sign_flip_p([1.0], alternative="two-sided")


def test_two_sample_is_exact_over_every_split():
    high, low = [5.0, 6.0, 7.0, 8.0], [1.0, 2.0, 3.0, 4.0]
    assert two_sample_p(high, low) == pytest.approx(1 / 70)  # C(8, 4) splits
    assert two_sample_p(high, low, alternative="less") == pytest.approx(1.0)
    # shifted by a threshold above the difference: the ordering reverses
    assert two_sample_p(high, low, threshold=10.0, alternative="less") == pytest.approx(1 / 70)


def test_trend_tests_the_rank_correlation_of_the_shifted_values():
    x, falling = np.arange(4.0), np.array([4.0, 3.0, 2.0, 1.0])
    assert spearman_rho(x, falling) == pytest.approx(-1.0)
    assert trend_p(x, falling, alternative="less") == pytest.approx(1 / 24)  # 4! pairings
    # a fall of 1 per step is slower than the slope -2: y + 2x rises
    assert trend_p(x, falling, slope=-2.0) == pytest.approx(1 / 24)


def test_minimum_sample_sizes_follow_from_alpha():
    assert min_sign_flip_n() == 5  # 2**-4 = 0.0625, 2**-5 = 0.031
    assert min_two_sample_n() == 4  # 1 / C(6, 3) = 0.05 is not below 0.05; 1 / C(8, 4) is
    assert min_trend_n() == 4  # 1 / 3! = 0.167, 1 / 4! = 0.042
    assert min_sign_flip_n(0.01) == 7


def test_two_sample_needs_two_values_a_side():
    assert math.isnan(two_sample_p([], [1.0, 2.0])) and math.isnan(two_sample_p([1.0, 2.0], []))
    assert math.isnan(two_sample_p([3.0], [1.0, 2.0]))  # scipy's test refuses one value
    assert math.isnan(two_sample_p([3.0, 4.0], [1.0]))
    assert two_sample_p([3.0, 4.0], [1.0, 2.0]) == pytest.approx(1 / 6)  # C(4, 2) splits


def test_two_sample_draws_seeded_splits_when_they_are_too_many():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.3, 1.0, 12), rng.normal(0.0, 1.0, 12)  # C(24, 12) splits
    p = two_sample_p(a, b, resamples=999, seed=1)
    assert p == two_sample_p(a, b, resamples=999, seed=1)  # the same splits again
    assert p != two_sample_p(a, b, resamples=999, seed=2)
    assert (p * 1000) == pytest.approx(round(p * 1000))  # (count + 1) / (999 + 1)


def test_minimum_two_sample_sizes_at_other_levels():
    assert min_two_sample_n(0.6) == 1  # 1 / C(2, 1) = 0.5
    assert min_two_sample_n(0.02) == 4  # 1 / C(8, 4) = 0.014


def test_sign_flip_is_exact_up_to_resamples_plus_one_patterns():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]  # 32 patterns
    assert sign_flip_p(x, resamples=31) == 1 / 32  # 2**5 <= 31 + 1: every pattern
    drawn = sign_flip_p(x, resamples=30)  # one too few: 30 random patterns
    assert drawn * 31 == pytest.approx(round(drawn * 31))  # (count + 1) / (30 + 1)


def test_sign_flip_monte_carlo_counts_every_draw_of_every_batch():
    # 1,000 values x 9,999 draws is several batches; zeros tie with every draw: p = 1
    assert sign_flip_p(np.zeros(1000)) == 1.0
    # a single non-zero value, first or last: its sign is kept in half the draws
    for where in (0, -1):
        one = np.zeros(200)
        one[where] = 1.0
        assert abs(sign_flip_p(one, resamples=999) - 0.5) < 0.1


def test_trend_needs_two_finite_points_that_vary():
    assert trend_p([0.0, 1.0], [0.0, 1.0]) == pytest.approx(0.5)  # 2 pairings
    assert math.isnan(trend_p([0.0, 1.0, 2.0], [0.0, 1.0, math.inf]))
    assert math.isnan(trend_p([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))  # x constant: no ranking


def test_trend_draws_seeded_pairings_when_they_are_too_many():
    x = np.arange(12.0)  # 12! pairings
    y = x + np.random.default_rng(0).normal(0.0, 6.0, 12)
    p = trend_p(x, y, resamples=999, seed=1)
    assert p == trend_p(x, y, resamples=999, seed=1)
    assert p != trend_p(x, y, resamples=999, seed=2)
    assert (p * 1000) == pytest.approx(round(p * 1000))  # (count + 1) / (999 + 1)


def test_a_constant_ranking_is_nan_without_a_warning_and_levels_are_strict():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(spearman_rho([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert min_trend_n(0.5) == 3  # 1 / 2! = 0.5 is not below 0.5
