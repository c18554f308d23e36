"""Pieces shared by the experiments: data splits, a tracked fit, the logged encoder."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lfxai.config import BaseConfig, ConfigError, check_choices, check_positive
from lfxai.data.mnist import mnist_tensors
from lfxai.data.splits import Split
from lfxai.models.images import AutoEncoderMnist, DecoderMnist, EncoderMnist
from lfxai.models.pretext import PRETEXTS, make_pretext
from lfxai.plotting.curves import image_grid
from lfxai.tracking import Tracker
from lfxai.training import FitResult, fit, get_device


@dataclass(frozen=True)
class AutoencoderConfig(BaseConfig):
    """Settings shared by experiments that train an autoencoder on (a prefix of) a data set."""

    pretext: str
    patience: int
    n_train: int | None
    n_test: int | None
    register_model: bool

    def validate(self) -> None:
        super().validate()
        check_choices("pretext", [self.pretext], PRETEXTS)
        check_positive(self, "n_train", "n_test")
        if self.patience < 0:
            raise ConfigError(f"patience must be >= 0, got {self.patience}")


def mnist_split(data_dir: str, train: bool, size: int | None) -> Split:
    """The first ``size`` examples (all if None) of an MNIST split under ``data_dir/mnist``."""
    x, y = mnist_tensors(Path(data_dir) / "mnist", train=train)
    if size is not None:
        x, y = x[:size], y[:size]
    return Split(x, y)


def mnist_autoencoder(dim_latent: int, pretext: str, name: str) -> AutoEncoderMnist:
    """The MNIST autoencoder of the paper with a pretext perturbation by name."""
    return AutoEncoderMnist(
        EncoderMnist(dim_latent),
        DecoderMnist(dim_latent),
        latent_dim=dim_latent,
        input_pert=make_pretext(pretext),
        name=name,
    )


def tracked_fit(
    model: nn.Module,
    config: BaseConfig,
    tracker: Tracker,
    train: Split,
    test: Split,
    prefix: str = "fit",
    patience: int = 10,
    checkpoint_every: int = 0,
    checkpoint_dir: Path | None = None,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
) -> FitResult:
    """Trains with :func:`lfxai.training.fit`, logging ``<prefix>/{train,test}_loss`` per epoch."""
    device = get_device(config.device)
    start = time.perf_counter()
    result = fit(
        model,
        train.loader(config.batch_size, shuffle=True, seed=config.seed),
        test.loader(config.batch_size),
        device,
        n_epochs=config.n_epochs,
        lr=lr,
        weight_decay=weight_decay,
        patience=patience,
        checkpoint_every=checkpoint_every,
        checkpoint_dir=checkpoint_dir,
        on_epoch=lambda epoch, losses: tracker.log_metrics(
            {f"{prefix}/{k}": v for k, v in losses.items()}, step=epoch
        ),
    )
    seconds = time.perf_counter() - start
    epochs = len(result.train_loss)
    tracker.log_metrics(
        {
            f"{prefix}/best_test_loss": result.best_test_loss,
            f"{prefix}/best_epoch": result.best_epoch,
            f"{prefix}/epochs": epochs,
            f"time/{prefix}_seconds": seconds,
            f"time/{prefix}_seconds_per_epoch": seconds / max(epochs, 1),
        }
    )
    return result


def scratch_dir() -> Path:
    """A private temporary folder for files that are not artifacts (e.g. TracIn checkpoints)."""
    return Path(tempfile.mkdtemp(prefix="lfxai-"))


def registered_name(dataset: str, model: str) -> str:
    """Model Registry name, e.g. ``lfxai-mnist-denoising-ae``."""
    return f"lfxai-{dataset}-{model}"


def log_example_maps(
    tracker: Tracker, images: torch.Tensor, maps: list[np.ndarray], methods: list[str], path: str
) -> None:
    """A figure of a few images (top row) and one row of importance maps per method.

    Args:
        tracker: the run to log to.
        images: ``(n, 1, H, W)`` images.
        maps: per method, ``(n, H, W)`` importance of the same images.
        methods: the methods' names, in the order of ``maps``.
        path: artifact path without extension (logged as PNG and PDF).
    """
    grid = np.concatenate([images[:, 0].numpy()[None], np.stack(maps)])
    tracker.log_figure(image_grid(grid, ["image", *methods]), path)
