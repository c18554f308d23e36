"""MIG on codes with known answers: one unit per factor, mixtures, noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfxai.metrics.mig import discretise, entropy, mutual_information, mutual_information_gap


def _grid(sizes: tuple[int, ...]) -> np.ndarray:
    """All combinations of the factor classes (independent factors), ``(n, K)``."""
    mesh = np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def test_entropy_of_uniform_and_constant_columns() -> None:
    labels = np.stack([np.arange(12) % 4, np.zeros(12, dtype=int), np.arange(12) % 2], axis=1)
    np.testing.assert_allclose(entropy(labels), [np.log(4), 0.0, np.log(2)], atol=1e-12)


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
