"""MIG on codes with known answers: one unit per factor, mixtures, noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

from lfxai.metrics.mig import discretise, entropy, mutual_information, mutual_information_gap


def _grid(sizes: tuple[int, ...]) -> np.ndarray:
    """All combinations of the factor classes (independent factors), ``(n, K)``."""
    mesh = np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def test_entropy_of_uniform_and_constant_columns() -> None:
    labels = np.stack([np.arange(12) % 4, np.zeros(12, dtype=int), np.arange(12) % 2], axis=1)
    np.testing.assert_allclose(entropy(labels), [np.log(4), 0.0, np.log(2)], atol=1e-12)


@pytest.mark.filterwarnings("error")  # the constant column's bin 0 comes without a 0/0
def test_discretise_uses_equal_width_bins_per_unit() -> None:
    codes = np.array([[0.0, 5.0], [0.49, 5.0], [0.5, 5.0], [1.0, 5.0]])
    np.testing.assert_array_equal(discretise(codes, n_bins=2), [[0, 0], [0, 0], [1, 0], [1, 0]])


def test_mutual_information_of_a_copy_is_the_entropy_and_of_an_independent_factor_zero() -> None:
    factors = _grid((3, 4, 5))
    info = mutual_information(factors[:, [1, 0]], factors)
    np.testing.assert_allclose(info[0], [0.0, np.log(4), 0.0], atol=1e-12)
    np.testing.assert_allclose(info[1], [np.log(3), 0.0, 0.0], atol=1e-12)


def test_one_unit_per_factor_gives_mig_one() -> None:
    factors = _grid((3, 6, 10, 8))
    rng = np.random.default_rng(0)
    # Each unit is an affine function of one factor (20 equal-width bins keep its at most 10
    # classes apart), units in shuffled order, plus one unit of pure noise.
    order = [2, 0, 3, 1]
    units = [factors[:, k] * (1.5 + k) - 2.0 for k in order]
    codes = np.stack([*units, rng.normal(size=len(factors))], axis=1)
    result = mutual_information_gap(torch.from_numpy(codes), torch.from_numpy(factors), n_bins=20)
    assert result["mig"] == pytest.approx(1.0, abs=0.05)
    assert np.all(result["gaps"] > 0.9)
    assert result["mutual_information"].shape == (5, 4)


def test_random_codes_give_mig_near_zero() -> None:
    factors = _grid((3, 6, 10, 8, 8))
    codes = np.random.default_rng(1).normal(size=(len(factors), 6))
    assert mutual_information_gap(codes, factors)["mig"] < 0.02


def test_a_factor_shared_by_two_units_has_no_gap() -> None:
    factors = _grid((4, 5))
    copy = factors[:, 0].astype(float)
    codes = np.stack([copy, copy * 2.0 + 1.0, factors[:, 1]], axis=1)
    gaps = mutual_information_gap(codes, factors, n_bins=10)["gaps"]
    assert gaps[0] == pytest.approx(0.0, abs=1e-12)  # two units know factor 0 equally well
    assert gaps[1] == pytest.approx(1.0, abs=1e-12)


def test_constant_factors_are_skipped_and_bad_codes_refused() -> None:
    factors = np.stack([np.arange(40) % 4, np.zeros(40, dtype=int)], axis=1)
    codes = np.stack([factors[:, 0], np.zeros(40)], axis=1).astype(float)
    result = mutual_information_gap(codes, factors, n_bins=4)
    assert result["mig"] == pytest.approx(1.0)
    assert np.isnan(result["gaps"][1])
    with pytest.raises(ValueError, match="d >= 2"):
        mutual_information_gap(codes[:, :1], factors)


def test_float32_codes_are_binned_by_their_exact_values() -> None:
    """float32(0.7) is just below 0.7: bin 6 of 10 on [0, 1], though 0.7f / 0.1f rounds to 7."""
    codes = np.array([[0.0], [0.7], [0.9], [1.0]], dtype=np.float32)
    binned = discretise(codes, n_bins=10)
    np.testing.assert_array_equal(binned, discretise(codes.astype(np.float64), n_bins=10))
    np.testing.assert_array_equal(binned[:, 0], [0, 6, 8, 9])


def test_entropy_and_mutual_information_take_one_factor_as_a_1d_array() -> None:
    factor = np.array([0, 0, 1, 2, 2, 2])
    np.testing.assert_allclose(entropy(factor), entropy(factor[:, None]), atol=0)
    expected = -sum(p * np.log(p) for p in (2 / 6, 1 / 6, 3 / 6))
    assert entropy(factor)[0] == pytest.approx(expected, abs=1e-12)
    codes = np.stack([factor, np.arange(6) % 2], axis=1)
    np.testing.assert_allclose(
        mutual_information(codes, factor), mutual_information(codes, factor[:, None]), atol=0
    )


@pytest.mark.filterwarnings("error")  # empty (code bin, factor class) cells are not divided
def test_mutual_information_matches_sklearn_for_factors_with_different_class_counts() -> None:
    rng = np.random.default_rng(4)
    factors = np.stack([rng.integers(0, 2, 60), rng.integers(0, 5, 60) * 10], axis=1)
    codes = np.stack([factors[:, 1] // 20 + factors[:, 0], rng.integers(0, 3, 60)], axis=1)
    info = mutual_information(codes, factors)
    expected = [[mutual_info_score(c, f) for f in factors.T] for c in codes.T]
    np.testing.assert_allclose(info, expected, rtol=0, atol=1e-12)


def test_mutual_information_refuses_codes_and_factors_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="^3 codes but 4 factor rows$"):
        mutual_information(np.zeros((3, 2), dtype=int), np.zeros((4, 1), dtype=int))


def test_gaps_use_the_given_bins_and_keep_binary_factors() -> None:
    """Two bins halve a 4-class factor's unit; a binary factor (H = log 2 < 1 nat) still counts."""
    factors = _grid((4, 2))
    result = mutual_information_gap(factors.astype(float), factors, n_bins=2)
    # Unit 0 keeps 1 of factor 0's 2 bits, unit 1 all of factor 1's bit; no unit knows the other.
    np.testing.assert_allclose(result["gaps"], [np.log(2) / np.log(4), 1.0], atol=1e-12)
    assert result["mig"] == pytest.approx(0.75, abs=1e-12)


@pytest.mark.filterwarnings("error")  # no "mean of empty slice"
def test_no_varying_factor_gives_nan_mig() -> None:
    codes = np.random.default_rng(5).normal(size=(10, 2))
    result = mutual_information_gap(codes, np.zeros((10, 2), dtype=int))
    assert np.isnan(result["mig"]) and np.isnan(result["gaps"]).all()
