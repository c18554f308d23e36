"""Per-unit attribution batched over units equals the per-unit loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import GradientShap, IntegratedGradients, Saliency
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lfxai.explanations.features import attribute_individual_dim


def _conv_encoder(channels: int = 1) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(channels, 4, 3, stride=2, padding=1),
        nn.BatchNorm2d(4),
        nn.Softplus(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    )
    return model.double().eval()


def _loader(n: int, shape: tuple[int, ...], batch_size: int) -> DataLoader:
    x = torch.rand(n, *shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return DataLoader(TensorDataset(x, torch.zeros(n)), batch_size=batch_size)


def _both(encoder, loader, method, baseline=None):
    return [
        attribute_individual_dim(
            encoder,
            3,
            loader,
            torch.device("cpu"),
            method(encoder),
            baseline,
            progress=False,
            batch_units=batched,
        )
        for batched in (True, False)
    ]


@pytest.mark.parametrize("method", [Saliency, IntegratedGradients])
@pytest.mark.parametrize("channels", [1, 2])
def test_batched_units_equal_the_per_unit_loop(method, channels):
    """Deterministic methods: the same numbers in float64 (only the BLAS batch differs)."""
    encoder = _conv_encoder(channels)
    loader = _loader(5, (channels, 8, 8), batch_size=2)
    baseline = torch.full((1, channels, 8, 8), 0.1, dtype=torch.float64)
    batched, looped = _both(encoder, loader, method, baseline if method is not Saliency else None)
    assert batched.shape == (5, 3, 8, 8)  # channels summed
    np.testing.assert_allclose(batched, looped, rtol=1e-10, atol=1e-14)
    assert np.abs(batched).sum() > 0


def test_batched_gradient_shap_equals_the_loop_on_a_linear_encoder():
    """GradientShap draws random points, but a linear unit's gradient is constant: both
    paths then give |f_j(x) (x - b) W_j| (here b = 0) whatever they drew."""
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).double().eval()
    loader = _loader(4, (1, 8, 8), batch_size=3)
    baseline = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    batched, looped = _both(encoder, loader, GradientShap, baseline)
    np.testing.assert_allclose(batched, looped, rtol=1e-10, atol=1e-14)
    x = loader.dataset.tensors[0].reshape(4, 64)
    weight = encoder[1].weight.detach()
    codes = (x @ weight.T + encoder[1].bias).detach()
    expected = (codes[:, :, None] * x[:, None] * weight[None]).abs()
    np.testing.assert_allclose(batched.reshape(4, 3, 64), expected.numpy(), rtol=1e-10)


def test_sequences_keep_their_feature_axis():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(10 * 2, 3), nn.Tanh()).double().eval()
    loader = _loader(3, (10, 2), batch_size=2)
    batched, looped = _both(encoder, loader, Saliency)
    assert batched.shape == (3, 3, 10, 2)
    np.testing.assert_allclose(batched, looped, rtol=1e-10, atol=1e-14)
