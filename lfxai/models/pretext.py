"""Pretext perturbations applied to inputs while an autoencoder trains.

Each is a module mapping a batch to a perturbed batch of the same shape. Names follow the
paper's pretext tasks: Reconstruction (``Identity``), Denoising (``GaussianNoise``) and
Inpainting (``RandomMask``).
"""

from __future__ import annotations

import torch
from torch import nn


class Identity(nn.Module):
    """No perturbation: plain reconstruction."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` unchanged."""
        return x

    def __str__(self) -> str:
        return "Identity"


class GaussianNoise(nn.Module):
    """Additive isotropic Gaussian noise (denoising autoencoder).

    Args:
        noise_std: standard deviation of the noise.
    """

    def __init__(self, noise_std: float = 0.3) -> None:
        super().__init__()
        self.noise_std = noise_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` plus Gaussian noise of standard deviation ``noise_std``."""
        return x + self.noise_std * torch.randn_like(x)

    def __str__(self) -> str:
        return f"GaussianNoise(std={self.noise_std})"


class RandomMask(nn.Module):
    """Sets each input feature to zero with probability ``mask_proportion`` (inpainting).

    Args:
        mask_proportion: probability that a feature is dropped.
    """

    def __init__(self, mask_proportion: float = 0.2) -> None:
        super().__init__()
        self.mask_proportion = mask_proportion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with each value set to 0 with probability ``mask_proportion``."""
        keep = torch.rand_like(x) >= self.mask_proportion
        return x * keep

    def __str__(self) -> str:
        return f"RandomMask(p={self.mask_proportion})"


PRETEXTS: dict[str, type[nn.Module]] = {
    "reconstruction": Identity,
    "denoising": GaussianNoise,
    "inpainting": RandomMask,
}


def make_pretext(name: str) -> nn.Module:
    """The perturbation of a pretext task by its snake_case name."""
    try:
        return PRETEXTS[name]()
    except KeyError:
        raise ValueError(f"unknown pretext {name!r}; valid choices: {sorted(PRETEXTS)}") from None
