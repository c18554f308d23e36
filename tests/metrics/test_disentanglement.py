"""disVAE metrics on hand-made saliency maps with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from lfxai.metrics.disentanglement import SALIENCY_METRICS, saliency_metrics


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


def test_correlations_pool_every_example_and_match_scipy():
    generator = np.random.default_rng(0)
    saliency = generator.integers(0, 4, size=(5, 3, 2, 4, 4)).astype(float)  # ties; C=2
    metrics = saliency_metrics(saliency)
    pooled = saliency.transpose(1, 0, 2, 3, 4).reshape(3, -1)
    pairs = [(0, 1), (0, 2), (1, 2)]
    pearson = np.mean([np.corrcoef(pooled[i], pooled[j])[0, 1] for i, j in pairs])
    spearman = np.mean([spearmanr(pooled[i], pooled[j])[0] for i, j in pairs])
    assert metrics["pearson"] == pytest.approx(pearson, rel=1e-12)
    assert metrics["spearman"] == pytest.approx(spearman, rel=1e-12)
    flat = saliency.reshape(5, 3, -1)
    cosines = [
        (flat[n, i] @ flat[n, j]) / (np.linalg.norm(flat[n, i]) * np.linalg.norm(flat[n, j]))
        for n in range(5)
        for i, j in pairs
    ]
    assert metrics["cosine"] == pytest.approx(np.mean(cosines), rel=1e-12)
    # Tensors and a flattened feature axis give the same numbers.
    assert saliency_metrics(torch.from_numpy(saliency).float()) == pytest.approx(metrics)
    assert saliency_metrics(flat) == pytest.approx(metrics)


@pytest.mark.parametrize(
    ("saliency", "message"),
    [
        (np.ones((2, 1, 4, 4)), r"at least 2 latent units, got d=1"),
        (-np.ones((2, 2, 4, 4)), r"non-negative"),
        (np.ones((2, 3)), r"\(N, d, \.\.\.\)"),
    ],
)
def test_bad_saliency_is_rejected(saliency, message):
    with pytest.raises(ValueError, match=message):
        saliency_metrics(saliency)
