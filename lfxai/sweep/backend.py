"""What a sweep's trial runs: the ``disvae`` experiment's VAE, or a test's stand-in.

The sweep samples a :class:`Sample` per trial and hands it to a :class:`TrialBackend`, which
trains and measures one model in the trial's run. The backend travels to the worker
processes (pickled), so an implementation is a plain module-level class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lfxai.config import BaseConfig
from lfxai.experiments.disvae import (
    DisvaeConfig,
    VaeTrial,
    load_vae_splits,
    train_and_measure,
)
from lfxai.models.vae import VAE_LOSSES
from lfxai.plugins import DatasetPlugin, Splits
from lfxai.tracking import Tracker
from lfxai.training import EpochCallback


@dataclass(frozen=True)
class Sample:
    """What the sampler chose for one trial."""

    loss: str
    beta: float
    dim_latent: int


class TrialBackend(Protocol):
    """Trains and measures one sampled model per trial.

    Attributes:
        schema: the trials' settings (their ``dim_latent`` is replaced by the sample's).
        losses: the losses a sweep may sample.
    """

    schema: type[BaseConfig]
    losses: tuple[str, ...]

    def load_splits(
        self, dataset: DatasetPlugin, config: BaseConfig, tracker: Tracker | None
    ) -> Splits:
        """The splits every trial trains on; logged as ``tracker``'s run's inputs, if given."""

    def train(
        self,
        dataset: DatasetPlugin,
        config: BaseConfig,
        tracker: Tracker,
        sample: Sample,
        splits: Splits,
        on_epoch: EpochCallback,
    ) -> dict[str, float]:
        """Trains and measures one model in ``tracker``'s run; its final metrics.

        ``on_epoch(epoch, metrics)`` is called after every epoch with per-epoch test
        metrics; what it raises (``optuna.TrialPruned``) propagates.
        """


class DisvaeBackend:
    """The ``disvae`` experiment's :func:`~lfxai.experiments.disvae.train_and_measure`."""

    schema: type[BaseConfig] = DisvaeConfig
    losses: tuple[str, ...] = tuple(VAE_LOSSES)

    def load_splits(
        self, dataset: DatasetPlugin, config: BaseConfig, tracker: Tracker | None
    ) -> Splits:
        """:func:`~lfxai.experiments.disvae.load_vae_splits`."""
        assert isinstance(config, DisvaeConfig)
        return load_vae_splits(dataset, config, tracker)

    def train(
        self,
        dataset: DatasetPlugin,
        config: BaseConfig,
        tracker: Tracker,
        sample: Sample,
        splits: Splits,
        on_epoch: EpochCallback,
    ) -> dict[str, float]:
        """One VAE of the sample's loss, beta and latent size (run 0 of its settings)."""
        assert isinstance(config, DisvaeConfig)
        trial = VaeTrial(sample.loss, sample.beta, sample.dim_latent)
        return train_and_measure(dataset, config, tracker, trial, splits, on_epoch)
