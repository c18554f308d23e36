"""Correlation matrices between explanations: Pearson and Spearman (ties averaged)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from lfxai.metrics.correlation import CORRELATIONS, correlation_matrix, off_diagonal_mean


def test_correlation_matrices_are_symmetric_with_unit_diagonal() -> None:
    generator = np.random.default_rng(0)
    maps = generator.random((4, 30, 1, 5, 5))
    maps[1] = 2 * maps[0] + 1  # same explanation up to an affine map
    maps[2] = -(maps[0] ** 3)  # same ranking, reversed, non-linearly
    for method in CORRELATIONS:
        matrix = correlation_matrix(maps, method)
        assert matrix.shape == (4, 4)
        np.testing.assert_allclose(matrix, matrix.T, atol=1e-12)
        np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-12)
        assert matrix[0, 1] == pytest.approx(1.0)
    flat = maps.reshape(4, -1)
    pearson = correlation_matrix(maps, "pearson")
    np.testing.assert_allclose(pearson, np.corrcoef(flat), atol=1e-10)
    spearman = correlation_matrix(maps, "spearman")
    np.testing.assert_allclose(spearman, spearmanr(flat, axis=1)[0], atol=1e-10)
    assert spearman[0, 2] == pytest.approx(-1.0) and pearson[0, 2] > -1 + 1e-3
    with pytest.raises(ValueError, match="valid choices"):
        correlation_matrix(maps, "kendall")


def test_spearman_averages_tied_ranks() -> None:
    """GradientShap against a black baseline gives many exact zeros: ties must be ranked."""
    maps = np.array([[0.0, 0.0, 0.0, 1.0, 2.0], [0.0, 0.0, 5.0, 0.0, 3.0]])
    expected = spearmanr(maps[0], maps[1])[0]
    assert correlation_matrix(maps, "spearman")[0, 1] == pytest.approx(expected)


def test_off_diagonal_mean_ignores_the_diagonal() -> None:
    matrix = np.array([[1.0, 0.2, 0.4], [0.2, 1.0, 0.6], [0.4, 0.6, 1.0]])
    assert off_diagonal_mean(matrix) == pytest.approx(0.4)


@pytest.mark.filterwarnings("error")
def test_a_constant_map_has_nan_correlations_without_a_warning() -> None:
    """A constant map has no direction: NaN (skipped by nanmean), whatever its value."""
    varied = np.array([0.3, 0.9, 0.1, 0.5, 0.7, 0.2])
    # The mean of six 0.1s is not exactly 0.1: centring alone leaves a constant map a sign.
    maps = np.stack([np.full(6, 0.1), varied, np.zeros(6), np.full(6, -0.1), 2 * varied])
    constant = [0, 2, 3]
    for method in CORRELATIONS:
        matrix = correlation_matrix(maps, method)
        assert np.isnan(matrix[constant]).all() and np.isnan(matrix[:, constant]).all()
        np.testing.assert_allclose(matrix[np.ix_([1, 4], [1, 4])], 1.0, atol=1e-12)
