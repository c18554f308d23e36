"""Label-free feature importance on tiny encoders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import GradientShap, IntegratedGradients, Saliency
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lfxai.explanations.features import (
    FEATURE_METHODS,
    RandomAttribution,
    attribute_auxiliary,
    attribute_individual_dim,
    make_feature_method,
)


def _loader(n: int = 10, batch_size: int = 4) -> DataLoader:
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    return DataLoader(TensorDataset(x, torch.zeros(n)), batch_size=batch_size)


def _linear_encoder() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3, bias=False)).eval()


@pytest.mark.parametrize("name", sorted(FEATURE_METHODS))
def test_every_method_gives_input_shaped_attributions(name, tiny_encoder):
    method = make_feature_method(name, tiny_encoder)
    scores = attribute_auxiliary(
        tiny_encoder,
        _loader(),
        torch.device("cpu"),
        method,
        torch.zeros(1, 1, 8, 8),
        progress=False,
    )
    assert scores.shape == (10, 1, 8, 8)
    assert np.isfinite(scores).all()


def test_unknown_method_names_the_choices(tiny_encoder):
    with pytest.raises(ValueError, match="GradientShap"):
        make_feature_method("Gradient Shap", tiny_encoder)


def test_saliency_is_the_gradient_of_the_auxiliary_function(tiny_encoder):
    loader = _loader()
    scores = attribute_auxiliary(
        tiny_encoder, loader, torch.device("cpu"), Saliency(tiny_encoder), progress=False
    )
    x = loader.dataset.tensors[0].clone().requires_grad_(True)
    reference = tiny_encoder(x).detach()
    (tiny_encoder(x) * reference).sum().backward()
    np.testing.assert_allclose(scores, x.grad.abs().numpy(), rtol=1e-5, atol=1e-7)


def test_integrated_gradients_batched_equals_one_at_a_time(tiny_encoder):
    """IG expands the batch by steps: each step must be paired with its own reference."""
    loader = _loader(n=6, batch_size=6)
    batched = attribute_auxiliary(
        tiny_encoder,
        loader,
        torch.device("cpu"),
        IntegratedGradients(tiny_encoder),
        torch.zeros(1, 1, 8, 8),
        progress=False,
    )
    single = attribute_auxiliary(
        tiny_encoder,
        DataLoader(loader.dataset, batch_size=1),
        torch.device("cpu"),
        IntegratedGradients(tiny_encoder),
        torch.zeros(1, 1, 8, 8),
        progress=False,
    )
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-6)


def test_gradient_shap_pairs_each_noise_sample_with_its_own_image():
    """For a linear encoder W the exact answer is (x - b) * W^T W x, whatever the samples.

    Captum expands GradientShap's batch with repeat_interleave; pairing the samples with
    `repeat`-ed references (as the reference implementation did) would mix images.
    """
    encoder = _linear_encoder()
    loader = _loader(n=5, batch_size=5)
    scores = attribute_auxiliary(
        encoder,
        loader,
        torch.device("cpu"),
        GradientShap(encoder),
        torch.zeros(1, 1, 8, 8),
        progress=False,
    )
    x = loader.dataset.tensors[0].reshape(5, 64)
    weight = encoder[1].weight
    expected = (x * (x @ weight.T @ weight)).reshape(5, 1, 8, 8)
    np.testing.assert_allclose(scores, expected.detach().numpy(), rtol=1e-4, atol=1e-6)


def test_baseline_module_is_applied_per_batch(tiny_encoder):
    calls = []

    class Half(nn.Module):
        def forward(self, x):
            calls.append(len(x))
            return x / 2

    attribute_auxiliary(
        tiny_encoder,
        _loader(),
        torch.device("cpu"),
        IntegratedGradients(tiny_encoder),
        Half(),
        progress=False,
    )
    assert calls == [4, 4, 2]


def test_random_attribution_is_seeded_and_uniform():
    x = torch.zeros(3, 1, 4, 4)
    a = RandomAttribution(seed=5).attribute(x)
    b = RandomAttribution(seed=5).attribute(x)
    assert torch.equal(a, b) and a.shape == x.shape and a.min() >= 0 and a.max() <= 1


def test_individual_dim_scores_each_latent_unit():
    encoder = _linear_encoder()
    loader = _loader(n=4, batch_size=4)
    scores = attribute_individual_dim(
        encoder, 3, loader, torch.device("cpu"), Saliency(encoder), progress=False
    )
    assert scores.shape == (4, 3, 8, 8)
    x = loader.dataset.tensors[0]
    codes = encoder(x).detach()
    weight = encoder[1].weight.detach()
    # Saliency of f_j is |W_j| (abs of the gradient); score = |f_j(x) * |W_j||
    expected = torch.abs(codes[:, :, None] * weight.abs()[None]).reshape(4, 3, 8, 8)
    np.testing.assert_allclose(scores, expected.numpy(), rtol=1e-5, atol=1e-7)
