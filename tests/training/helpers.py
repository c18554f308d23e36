"""Shared pieces of the training loop's tests: tiny data and models with scripted losses."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lfxai import training
from lfxai.data.splits import Split
from lfxai.models.images import AutoEncoderMnist, DecoderMnist, EncoderMnist
from lfxai.models.pretext import GaussianNoise


def mnist_like(n: int = 64) -> DataLoader:
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x, torch.zeros(n, dtype=torch.long)), batch_size=16)


def small_ae() -> AutoEncoderMnist:
    return AutoEncoderMnist(EncoderMnist(3), DecoderMnist(3), 3, GaussianNoise(0.3), name="t")


class Scripted(nn.Module):
    """One weight ``w``; the training loss is ``w`` and the k-th evaluation returns script[k].

    The test losses are exact numbers, so early stopping and the choice of the best epoch
    are decided by the rule under test alone (no float noise, no BatchNorm drift).
    """

    def __init__(self, script: list[float]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.script = list(script)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.training:
            return self.w * 1.0
        return torch.tensor(self.script.pop(0))


def fit_one_batch(
    model: nn.Module,
    n_epochs: int,
    checkpoint_dir: Path | None = None,
    on_epoch: training.EpochCallback | None = None,
    **settings,
) -> training.FitResult:
    """``fit`` on the CPU, quietly, with :func:`one_batch` as both splits.

    ``settings`` are members of :class:`~lfxai.training.TrainingSettings` besides ``n_epochs``.
    """
    return training.fit(
        model,
        one_batch(),
        one_batch(),
        torch.device("cpu"),
        training.TrainingSettings(n_epochs, **settings),
        checkpoint_dir=checkpoint_dir,
        on_epoch=on_epoch,
        progress=False,
    )


def one_batch(n: int = 4) -> DataLoader:
    return DataLoader(TensorDataset(torch.zeros(n, 1), torch.zeros(n)), batch_size=n)


class Spy(nn.Module):
    """A linear model with ``loss(x, y)`` that records every batch it trains on."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.seen: list[torch.Tensor] = []

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen.append(y.clone())
        return ((self.linear(x).squeeze(1) - y.float()) ** 2).mean()


def labelled_split(n: int, seed: int = 0) -> Split:
    x = torch.rand(n, 4, generator=torch.Generator().manual_seed(seed))
    return Split(x, torch.arange(n))
