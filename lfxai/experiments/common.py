"""Pieces shared by the experiments: autoencoder settings, a tracked fit, logged data."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lfxai.config import BaseConfig, ConfigError, check_choices, check_positive
from lfxai.data.splits import Split
from lfxai.models.autoencoder import TrainableModel
from lfxai.models.pretext import PRETEXTS
from lfxai.plugins import DatasetPlugin, Splits
from lfxai.tracking import Tracker
from lfxai.training import FitResult, fit, get_device


@dataclass(frozen=True)
class AutoencoderConfig(BaseConfig):
    """Settings shared by experiments that train an autoencoder on (a prefix of) a data set.

    ``split`` names how the data set is split (one of its plugin's ``splits``).
    """

    pretext: str
    patience: int
    split: str
    n_train: int | None
    n_test: int | None
    register_model: bool

    def validate(self) -> None:
        super().validate()
        check_choices("pretext", [self.pretext], PRETEXTS)
        check_positive(self, "n_train", "n_test")
        if self.patience < 0:
            raise ConfigError(f"patience must be >= 0, got {self.patience}")


def load_splits(dataset: DatasetPlugin, config: AutoencoderConfig, tracker: Tracker) -> Splits:
    """The experiment's splits; their sizes and the device are logged as params.

    The data set's files are checked first (:meth:`DatasetPlugin.provision`): the tag
    ``lfxai.data_source`` says where they came from and ``lfxai.data_repaired`` names any file
    that failed its checksum and was replaced.
    """
    provisioned = dataset.provision(config.data_dir)
    tracker.set_tags({"lfxai.data_source": provisioned.source})
    if provisioned.repaired:
        tracker.set_tags({"lfxai.data_repaired": "\n".join(provisioned.repaired)})
    splits = dataset.load(config.data_dir, config.split, config.seed, config.n_train, config.n_test)
    tracker.log_params(
        {
            "n_train_used": len(splits.train),
            "n_test_used": len(splits.test),
            "device_used": get_device(config.device),
        }
    )
    return splits


def new_model(
    dataset: DatasetPlugin, config: AutoencoderConfig, splits: Splits, name: str
) -> TrainableModel:
    """A fresh instance of the data set's model for these settings."""
    return dataset.build_model(config.dim_latent, splits.train.x.shape[1:], config.pretext, name)


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
) -> FitResult:
    """Trains with :func:`lfxai.training.fit`, logging ``<prefix>/{train,test}_loss`` per epoch.

    The optimiser, learning rate, weight decay and schedule come from ``config``.
    """
    device = get_device(config.device)
    start = time.perf_counter()
    # Splits stay on the device and are batched by slicing a seeded permutation: the same
    # batches as `train.loader(batch_size, shuffle=True, seed=seed)`, without its overhead.
    result = fit(
        model,
        train,
        test,
        device,
        n_epochs=config.n_epochs,
        lr=config.lr,
        weight_decay=config.weight_decay,
        optimizer=config.optimizer,
        lr_schedule=config.lr_schedule,
        patience=patience,
        checkpoint_every=checkpoint_every,
        checkpoint_dir=checkpoint_dir,
        batch_size=config.batch_size,
        seed=config.seed,
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


def model_title(dataset: DatasetPlugin, config: AutoencoderConfig) -> str:
    """Figure title naming the data set and model, e.g. ``MNIST denoising AE (d=4)``."""
    return f"{dataset.title} {config.pretext} AE (d={config.dim_latent})"


def log_example_maps(
    tracker: Tracker,
    dataset: DatasetPlugin,
    inputs: torch.Tensor,
    maps: list[np.ndarray],
    methods: list[str],
    path: str,
    title: str = "",
) -> None:
    """A figure of a few examples (top row) and one row of importance maps per method.

    Args:
        tracker: the run to log to.
        dataset: draws the examples the way that suits them (images, time series).
        inputs: ``(n, ...)`` examples.
        maps: per method, ``(n, ...)`` importance of the same examples.
        methods: the methods' names, in the order of ``maps``.
        path: artifact path without extension (logged as PNG and PDF).
        title: figure title.
    """
    tracker.log_figure(dataset.example_figure(inputs, maps, methods, title), path)
