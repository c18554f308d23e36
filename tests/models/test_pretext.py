"""Pretext perturbations: exact rules at the edges of each parameter, and the registry."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lfxai.models.autoencoder import AutoEncoder
from lfxai.models.pretext import PRETEXTS, GaussianNoise, Identity, RandomMask, make_pretext

X = torch.arange(1.0, 1 + 2 * 3 * 4 * 5).view(2, 3, 4, 5)  # no entry is 0


def test_random_mask_keeps_or_zeroes_each_feature():
    torch.manual_seed(0)
    out = RandomMask(0.5)(X)
    assert out.shape == X.shape
    assert bool(((out == X) | (out == 0)).all())  # each feature kept as it is, or 0
    assert 0 < int((out == 0).sum()) < X.numel()


def test_random_mask_edges_are_exact():
    """p=0 drops nothing and p=1 everything (uniform draws lie in [0, 1))."""
    assert torch.equal(RandomMask(0.0)(X), X)
    assert torch.equal(RandomMask(1.0)(X), torch.zeros_like(X))


def test_random_mask_drops_about_p_of_the_features():
    """The count of dropped features is Binomial(n, p); 6 standard deviations bound it."""
    torch.manual_seed(1)
    n, p = 40_000, 0.2
    dropped = int((RandomMask(p)(torch.ones(n)) == 0).sum())
    assert abs(dropped - n * p) <= 6 * (n * p * (1 - p)) ** 0.5


def test_gaussian_noise_is_additive_with_the_given_standard_deviation():
    assert torch.equal(GaussianNoise(0.0)(X), X)
    torch.manual_seed(2)
    n, std = 40_000, 0.3
    noise = GaussianNoise(std)(torch.full((n,), 5.0)) - 5.0
    # Sample mean ~ N(0, std^2 / n); sample variance ~ std^2 (1 +- sqrt(2 / n)): 6 sigmas.
    assert abs(noise.mean().item()) <= 6 * std / n**0.5
    assert abs(noise.var().item() / std**2 - 1) <= 6 * (2 / n) ** 0.5


def test_pretexts_by_name():
    assert {k: type(v()) for k, v in PRETEXTS.items()} == {
        "reconstruction": Identity,
        "denoising": GaussianNoise,
        "inpainting": RandomMask,
    }
    assert str(make_pretext("reconstruction")) == "Identity"
    assert str(make_pretext("denoising")) == "GaussianNoise(std=0.3)"
    assert str(make_pretext("inpainting")) == "RandomMask(p=0.2)"
    assert make_pretext("denoising").noise_std == 0.3
    assert make_pretext("inpainting").mask_proportion == 0.2
    assert make_pretext("denoising") is not make_pretext("denoising")  # fresh each time
    with pytest.raises(ValueError, match=r"unknown pretext 'colour'.*'denoising', 'inpainting'"):
        make_pretext("colour")


class _Shift(nn.Module):
    def forward(self, x):
        return x + 1


def test_autoencoder_perturbs_only_in_training_and_targets_the_clean_input():
    model = AutoEncoder(nn.Identity(), nn.Identity(), 5, _Shift())
    x = torch.rand(3, 5)
    assert torch.equal(model.train()(x), x + 1)
    assert model.loss(x).item() == 1.0  # MSE(x + 1, x): against the clean x
    assert torch.equal(model.eval()(x), x)
    assert model.loss(x).item() == 0.0
    assert isinstance(AutoEncoder(nn.Identity(), nn.Identity(), 5).input_pert, Identity)
    l1 = AutoEncoder(nn.Identity(), nn.Identity(), 5, _Shift(), loss_f=nn.L1Loss()).train()
    assert l1.loss(x).item() == 1.0 and l1.latent_dim == 5 and l1.name == "model"
