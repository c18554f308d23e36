"""The GPU check's data, models and problem sizes (see :mod:`benchmarks.gpu_check`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lfxai.data.splits import Split
from lfxai.devices import seed_everything
from lfxai.models.images import AutoEncoderMnist, DecoderMnist, EncoderMnist
from lfxai.models.pretext import GaussianNoise
from lfxai.training import TrainingSettings, fit

SEED = 0
CPU = torch.device("cpu")


def images(n: int, seed: int = SEED) -> Split:
    """Random 1x28x28 images in [0, 1] with dummy labels."""
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    return Split(x, torch.zeros(n, dtype=torch.long))


def sequences(n: int, length: int = 24, seed: int = SEED) -> Split:
    """Noisy sine waves ``(n, length, 1)`` of random frequency and phase."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, length)
    freq, phase = 1 + 3 * torch.rand(n, 1, generator=g), 6.28 * torch.rand(n, 1, generator=g)
    x = torch.sin(6.28 * freq * t + phase) + 0.1 * torch.randn(n, length, generator=g)
    return Split(x.unsqueeze(-1), torch.zeros(n, dtype=torch.long))


class LSTMAutoencoder(nn.Module):
    """Tiny sequence autoencoder shaped like the ECG5000 one, with an L1 loss.

    Encoder: LSTM 1 -> 2d -> d, the code is the last hidden state; decoder: the code repeated
    over time, LSTM d -> 2d and a linear read-out to one channel.
    """

    def __init__(self, d: int = 4, name: str = "lstm") -> None:
        super().__init__()
        self.encoder = _LSTMEncoder(d)
        self.decoder = nn.LSTM(d, 2 * d, batch_first=True)
        self.readout = nn.Linear(2 * d, 1)
        self.name, self.loss_f = name, nn.L1Loss()
        self.checkpoints_files: list[str] = []
        self.lr: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstructions ``(N, T, 1)`` of sequences ``(N, T, 1)``."""
        code = self.encoder(x)[:, None, :].repeat(1, x.shape[1], 1)
        return self.readout(self.decoder(code)[0])

    def loss(self, x: torch.Tensor, _y: torch.Tensor | None = None) -> torch.Tensor:
        """Mean L1 reconstruction loss (labels unused)."""
        return self.loss_f(self(x), x)


class _LSTMEncoder(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.first = nn.LSTM(1, 2 * d, batch_first=True)
        self.second = nn.LSTM(2 * d, d, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x)[0])[1][0][-1]


def mnist_model(noise: bool = True) -> AutoEncoderMnist:
    """The MNIST autoencoder (d=4), with Gaussian-noise pretext unless ``noise`` is False."""
    pretext = GaussianNoise() if noise else None
    return AutoEncoderMnist(EncoderMnist(4), DecoderMnist(4), 4, pretext, name="gpu_check")


def train(make: Callable[[], nn.Module], data: tuple[Split, Split], device, folder: Path):
    """Seeds, builds and fits a model for 2 epochs with a checkpoint after each."""
    seed_everything(SEED)
    model = make()
    settings = TrainingSettings(2, batch_size=64, patience=0, checkpoint_every=1, seed=SEED)
    result = fit(model, *data, device, settings, checkpoint_dir=folder, progress=False)
    return model, result


@dataclass(frozen=True)
class Sizes:
    """Problem sizes: the GPU's exercise the kernels; the CPU's only show that the code runs."""

    n_fit: int  # training images of the fit checks (and explained examples' pool)
    n_train: int  # explained training examples
    n_test: int  # explained test examples
    lissa_depth: int
    arnoldi_iter: int
    simplex_epochs: int
    timing_images: int  # MNIST epoch of the timing check
    timing_lissa: int  # training vectors (and batch) of the timed LiSSA step
    lstm_train: int  # explained training sequences (a quarter as many test ones)
    lstm_length: int  # time steps per sequence


# The LSTM's CPU reference runs through vmap's slow per-example fallback: kept small.
GPU_SIZES = Sizes(512, 64, 16, 20, 30, 1000, 60_000, 1000, 32, 24)
CPU_SIZES = Sizes(256, 8, 4, 2, 4, 100, 900, 10, 8, 12)


@dataclass
class Trained:
    """Sizes, data and the models trained by the fit checks (reused by the explainers)."""

    folder: Path
    sizes: Sizes
    models: dict[str, nn.Module] = field(default_factory=dict)

    @property
    def data(self) -> tuple[Split, Split]:
        """The fit checks' training and test images."""
        return images(self.sizes.n_fit), images(self.sizes.n_fit // 4, seed=1)
