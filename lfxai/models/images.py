"""Convolutional models for 28x28 MNIST images.

The encoder and decoder follow the reference architecture (Crabbé & van der Schaar, 2022):
three stride-2 convolutions 1 -> 8 -> 16 -> 32 channels (BatchNorm after the second), a
288 -> 128 -> d MLP, and the mirrored transposed convolutions with a sigmoid output.
"""

from __future__ import annotations

import torch
from torch import nn

from lfxai.models.autoencoder import AutoEncoder, TrainableModel


class EncoderMnist(nn.Module):
    """Maps images ``(N, 1, 28, 28)`` to codes ``(N, encoded_space_dim)``."""

    def __init__(self, encoded_space_dim: int) -> None:
        super().__init__()
        self.encoded_space_dim = encoded_space_dim
        self.encoder_cnn = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1),
            nn.ReLU(True),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(True),
            nn.Conv2d(16, 32, 3, stride=2, padding=0),
            nn.ReLU(True),
        )
        self.flatten = nn.Flatten(start_dim=1)
        self.encoder_lin = nn.Sequential(
            nn.Linear(3 * 3 * 32, 128), nn.ReLU(True), nn.Linear(128, encoded_space_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``(N, d)`` of images ``(N, 1, 28, 28)``."""
        return self.encoder_lin(self.flatten(self.encoder_cnn(x)))


class DecoderMnist(nn.Module):
    """Maps codes ``(N, encoded_space_dim)`` back to images ``(N, 1, 28, 28)`` in [0, 1]."""

    def __init__(self, encoded_space_dim: int) -> None:
        super().__init__()
        self.decoder_lin = nn.Sequential(
            nn.Linear(encoded_space_dim, 128),
            nn.ReLU(True),
            nn.Linear(128, 3 * 3 * 32),
            nn.ReLU(True),
        )
        self.unflatten = nn.Unflatten(dim=1, unflattened_size=(32, 3, 3))
        self.decoder_conv = nn.Sequential(
            nn.ConvTranspose2d(32, 16, 3, stride=2, output_padding=0),
            nn.BatchNorm2d(16),
            nn.ReLU(True),
            nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(True),
            nn.ConvTranspose2d(8, 1, 3, stride=2, padding=1, output_padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 1, 28, 28)`` in [0, 1] decoded from codes ``(N, d)``."""
        return torch.sigmoid(self.decoder_conv(self.unflatten(self.decoder_lin(z))))


class AutoEncoderMnist(AutoEncoder):
    """The MNIST autoencoder: :class:`AutoEncoder` with an MSE loss by default.

    Args:
        encoder: maps images to codes.
        decoder: maps codes to images.
        latent_dim: dimension of the codes.
        input_pert: pretext perturbation applied to the inputs while training.
        name: a short identifier used in file and run names.
        loss_f: per-batch reconstruction loss (mean reduction).
    """


class ClassifierMnist(TrainableModel):
    """The MNIST encoder followed by a linear head (the "Classification" pretext task).

    Args:
        encoder: maps images to codes of dimension ``latent_dim``.
        latent_dim: dimension of the codes.
        n_classes: number of classes.
        name: a short identifier.
    """

    target = "label"

    def __init__(
        self, encoder: EncoderMnist, latent_dim: int, n_classes: int = 10, name: str = "model"
    ) -> None:
        super().__init__(name, nn.CrossEntropyLoss())
        self.encoder = encoder
        self.latent_dim = latent_dim
        self.lin_output = nn.Linear(latent_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, 10)`` of images ``(N, 1, 28, 28)``."""
        return self.lin_output(self.encoder(x))
