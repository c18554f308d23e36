"""disVAE metrics on hand-made saliency maps with known answers."""

from __future__ import annotations

import math
import warnings
from itertools import combinations

import numpy as np
import pytest
import torch
from scipy.stats import entropy, spearmanr

from lfxai.metrics.disentanglement import SALIENCY_METRICS, pixel_shares, saliency_metrics

# A float64 result of these tiny inputs passes through at most a few hundred roundings
# (gamma(300, 2**-53) ~ 3e-14 relative), and the references round differently: 1e-12 leaves
# a margin, while a float32 computation (relative error ~1e-7) is far outside it.
TOL = 1e-12


def _mean_defined(values: list[float]) -> float:
    """Mean of the values that are not NaN; NaN if none is."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def _pair_correlation(a: np.ndarray, b: np.ndarray, rank: bool) -> float:
    """Pearson (or Spearman) correlation of two vectors; NaN when either is constant."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b)[0] if rank else np.corrcoef(a, b)[0, 1])


def _reference_metrics(saliency: np.ndarray) -> dict[str, float]:
    """The six metrics from the module docstring's definitions, pair by pair and pixel by
    pixel in float64 with numpy / scipy."""
    n, d = saliency.shape[:2]
    flat = np.asarray(saliency, dtype=np.float64).reshape(n, d, -1)
    pooled = flat.transpose(1, 0, 2).reshape(d, -1)
    salient = pooled[:, pooled.sum(axis=0) > 0]
    pairs = list(combinations(range(d), 2))
    norms = np.linalg.norm(flat, axis=-1)
    pixels = [flat[k, :, p] for k in range(n) for p in range(flat.shape[-1]) if flat[k, :, p].sum()]
    return {
        "pearson": _mean_defined(
            [_pair_correlation(pooled[i], pooled[j], False) for i, j in pairs]
        ),
        "spearman": _mean_defined(
            [_pair_correlation(pooled[i], pooled[j], True) for i, j in pairs]
        ),
        "spearman_active": _mean_defined(
            [_pair_correlation(salient[i], salient[j], True) for i, j in pairs]
        ),
        "cosine": _mean_defined(
            [
                flat[k, i] @ flat[k, j] / (norms[k, i] * norms[k, j])
                for k in range(n)
                for i, j in pairs
                if norms[k, i] > 0 and norms[k, j] > 0
            ]
        ),
        "entropy": _mean_defined([entropy(pixel) for pixel in pixels]),
        "active_units": _mean_defined(
            [float(np.sum(pixel / pixel.sum() > 1 / d)) for pixel in pixels]
        ),
    }


def _sparse_saliency(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Random non-negative maps in [0, 1) with about half the entries zero, one unit blank
    in example 0, and pixel 0 blank in every unit of every example."""
    generator = np.random.default_rng(seed)
    saliency = generator.random(shape) * (generator.random(shape) > 0.5)
    saliency[0, 1] = 0.0
    saliency.reshape(shape[0], shape[1], -1)[..., 0] = 0.0
    return saliency


def test_identical_maps_overlap_completely():
    one = np.array([[0.0, 1.0], [2.0, 3.0]])
    saliency = np.stack([np.stack([one, one]), np.stack([2 * one, 2 * one])])  # (2, 2, 2, 2)
    metrics = saliency_metrics(saliency)
    assert set(metrics) == set(SALIENCY_METRICS)
    assert metrics["pearson"] == pytest.approx(1.0)
    assert metrics["spearman"] == pytest.approx(1.0)
    assert metrics["cosine"] == pytest.approx(1.0)
    # Every salient pixel is split 1/2, 1/2: entropy log 2, and no share exceeds 1/d.
    assert metrics["entropy"] == pytest.approx(math.log(2))
    assert metrics["active_units"] == 0.0


def test_disjoint_maps_do_not_overlap():
    unit_0 = np.array([[1.0, 1.0], [0.0, 0.0]])
    unit_1 = np.array([[0.0, 0.0], [1.0, 1.0]])
    metrics = saliency_metrics(np.stack([unit_0, unit_1])[None])
    assert metrics["pearson"] == pytest.approx(-1.0)
    assert metrics["spearman"] == pytest.approx(-1.0)
    assert metrics["cosine"] == 0.0
    assert metrics["entropy"] == 0.0  # one unit per pixel
    assert metrics["active_units"] == 1.0


def test_three_units_worked_by_hand():
    # One example, two pixels; unit 1 is constant, so its correlations are undefined.
    saliency = np.array([[[2.0, 1.0], [1.0, 1.0], [1.0, 2.0]]])  # (1, d=3, P=2)
    metrics = saliency_metrics(saliency)
    assert metrics["pearson"] == pytest.approx(-1.0)  # units 0 and 2 only
    assert metrics["spearman"] == pytest.approx(-1.0)
    # cos(u0, u1) = cos(u1, u2) = 3 / sqrt(10), cos(u0, u2) = 4 / 5.
    assert metrics["cosine"] == pytest.approx((6 / math.sqrt(10) + 0.8) / 3)
    # Shares (1/2, 1/4, 1/4) and (1/4, 1/4, 1/2): entropy 1.5 log 2; one share > 1/3 each.
    assert metrics["entropy"] == pytest.approx(1.5 * math.log(2))
    assert metrics["active_units"] == 1.0


def test_pixels_without_saliency_are_left_out_of_entropy_and_active_units():
    saliency = np.zeros((1, 2, 3))
    saliency[0, :, 0] = [1.0, 0.0]  # one unit alone: entropy 0, 1 active unit
    saliency[0, :, 1] = [1.0, 3.0]  # shares 1/4, 3/4
    # pixel 2 has no saliency at all
    metrics = saliency_metrics(saliency)
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert metrics["entropy"] == pytest.approx(h / 2)
    assert metrics["active_units"] == 1.0


def test_spearman_active_leaves_out_the_background_every_unit_ignores():
    # Two units with opposite rankings on 4 salient pixels, on a background of 96 pixels
    # that neither unit explains (saliency 0, as on black pixels against a black baseline).
    saliency = np.zeros((1, 2, 100))
    saliency[0, 0, :4] = [1.0, 2.0, 3.0, 4.0]
    saliency[0, 1, :4] = [4.0, 3.0, 2.0, 1.0]
    metrics = saliency_metrics(saliency)
    assert metrics["spearman"] == pytest.approx(spearmanr(saliency[0, 0], saliency[0, 1])[0])
    assert metrics["spearman"] > 0.8  # the shared zeros dominate the ranks
    assert metrics["spearman_active"] == pytest.approx(-1.0)


def test_spearman_active_keeps_pixels_one_unit_explains():
    # Pixel 2 is salient for unit 0 only: it stays (tied at rank 1 in unit 1's map).
    saliency = np.array([[[1.0, 3.0, 2.0, 0.0], [1.0, 3.0, 0.0, 0.0]]])
    expected = spearmanr([1.0, 3.0, 2.0], [1.0, 3.0, 0.0])[0]
    assert saliency_metrics(saliency)["spearman_active"] == pytest.approx(expected, rel=1e-12)


def test_correlations_pool_every_example_and_match_scipy():
    generator = np.random.default_rng(0)
    saliency = generator.integers(0, 4, size=(5, 3, 2, 4, 4)).astype(float)  # ties; C=2
    metrics = saliency_metrics(saliency)
    assert metrics == pytest.approx(_reference_metrics(saliency), rel=TOL, abs=TOL)
    # Tensors and a flattened feature axis give the same numbers.
    assert saliency_metrics(torch.from_numpy(saliency).float()) == pytest.approx(metrics)
    assert saliency_metrics(saliency.reshape(5, 3, -1)) == pytest.approx(metrics)


@pytest.mark.parametrize("scale", [1.0, 2.0**-10])
def test_metrics_follow_their_definitions_on_sparse_maps(scale: float):
    # A power-of-two scale changes no digit of the data; 2**-10 puts every pixel's total
    # saliency below 1, and none of the metrics depends on the scale.
    saliency = scale * _sparse_saliency((4, 3, 2, 3))
    expected = _reference_metrics(saliency)
    assert saliency_metrics(saliency) == pytest.approx(expected, rel=TOL, abs=TOL)
    assert saliency_metrics(saliency) == pytest.approx(
        _reference_metrics(saliency / scale), rel=TOL, abs=TOL
    )


def test_float32_tensors_are_measured_in_float64():
    # The metrics of float32 maps are those of the same numbers in float64, to float64
    # accuracy: every sum and norm is taken in float64, not in the input's format.
    saliency = torch.from_numpy(_sparse_saliency((4, 3, 8), seed=1)).float()
    expected = _reference_metrics(saliency.double().numpy())
    assert saliency_metrics(saliency) == pytest.approx(expected, rel=TOL, abs=TOL)


def test_pixel_shares_are_distributions_over_units_and_zero_where_nothing_is_salient():
    # Dyadic values: every share below is exact. Pixel totals 0.5, 0 and 0.25 (below 1).
    units = np.array([[[0.25, 0.0, 0.0625], [0.25, 0.0, 0.1875]]])  # (N=1, d=2, P=3)
    shares, active = pixel_shares(units)
    np.testing.assert_array_equal(shares, [[[0.5, 0.0, 0.25], [0.5, 0.0, 0.75]]])
    np.testing.assert_array_equal(active, [[True, False, True]])


def test_saliency_without_any_signal_gives_nan_for_every_metric_quietly():
    # No pixel is salient: every metric is undefined, reported as NaN without numpy's
    # "Mean of empty slice" / "invalid value" warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = saliency_metrics(np.zeros((2, 3, 4, 4)))
    assert set(metrics) == set(SALIENCY_METRICS)
    assert all(math.isnan(value) for value in metrics.values()), metrics


@pytest.mark.parametrize(
    ("saliency", "message"),
    [
        (np.ones((2, 1, 4, 4)), r"^saliency needs at least 2 latent units, got d=1$"),
        (
            -np.ones((2, 2, 4, 4)),
            r"^saliency must be non-negative \(absolute attributions\)$",
        ),
        (
            np.ones((2, 3)),
            r"^saliency must be \(N, d, \.\.\.\) with features, got shape \(2, 3\)$",
        ),
    ],
)
def test_bad_saliency_is_rejected(saliency, message):
    with pytest.raises(ValueError, match=message):
        saliency_metrics(saliency)
