"""What an experiment needs to know about a data set, declared once per data set.

A :class:`DatasetPlugin` binds a data set (``lfxai.data.<name>``) to everything dataset-specific
an experiment uses: how its splits are drawn, which registered model trains on it, the value
that replaces a perturbed feature (black image, mean training sequence, blurred image), how
an example and its importance are drawn, and which experiments apply to it. Experiments are
written once against this interface and never test for a data set's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from lfxai.config import ConfigError
from lfxai.data import DEFAULT_DATA_DIR, dataset_root
from lfxai.data.provision import Provisioned
from lfxai.data.splits import Split
from lfxai.models.autoencoder import TrainableModel
from lfxai.models.registry import ModelSpec, build_model


@dataclass(frozen=True)
class Splits:
    """The splits of one experiment.

    Attributes:
        train: what the model trains on.
        test: what early stopping and the reported test loss use.
        explain: the examples whose features are explained (often the test split).
    """

    train: Split
    test: Split
    explain: Split


class DatasetPlugin(ABC):
    """One data set as the experiments see it (subclass, set the class attributes).

    Attributes:
        name: registry key = MLflow entry point = ``configs/<name>.yaml``.
        title: display name in figure titles.
        model: key of the model in ``lfxai.models.registry.MODELS``.
        experiments: names of the experiments declared for this data set.
        splits: valid values of the experiments' ``split`` setting.
        feature_unit: what a feature is, in axis labels (``pixels``, ``time steps``).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    model: ClassVar[str]
    experiments: ClassVar[tuple[str, ...]]
    splits: ClassVar[tuple[str, ...]]
    feature_unit: ClassVar[str]

    def root(self, data_dir: str | Path) -> Path:
        """This data set's folder under the project data directory."""
        return dataset_root(data_dir, self.name)

    def provision(self, data_dir: str | Path) -> Provisioned:
        """Checks ``data_dir`` (:func:`check_data_dir`), then makes this data set's files
        ready under it: verified, fetched if missing, replaced if corrupt (``repaired``)."""
        check_data_dir(data_dir, self.name)
        return self.provision_root(self.root(data_dir))

    @abstractmethod
    def provision_root(self, root: Path) -> Provisioned:
        """Verifies (and fetches or repairs) the data set's files under its root."""

    def check_split(self, split: str) -> None:
        """Raises :class:`ConfigError` unless ``split`` is one of :attr:`splits`."""
        if split not in self.splits:
            raise ConfigError(
                f"unknown split {split!r} for dataset {self.name!r}; "
                f"valid choices: {list(self.splits)}"
            )

    @abstractmethod
    def load(
        self, data_dir: str, split: str, seed: int, n_train: int | None, n_test: int | None
    ) -> Splits:
        """The splits of an experiment; ``n_train`` / ``n_test`` keep a prefix (None: all)."""

    @abstractmethod
    def provisioned_files(self, data_dir: str | Path) -> dict[Path, str]:
        """The files the splits are read from, each with its recorded sha256."""

    @abstractmethod
    def baseline(self, train: Split) -> torch.Tensor | nn.Module:
        """What replaces a perturbed feature: a tensor broadcastable to the inputs, or a
        module mapping inputs to their replacements (e.g. a blur)."""

    @abstractmethod
    def example_figure(
        self, inputs: torch.Tensor, maps: list[np.ndarray], methods: list[str], title: str
    ) -> Figure:
        """A few examples (first row) and, per method, their importance maps.

        Args:
            inputs: ``(n, ...)`` examples.
            maps: per method, importance ``(n, ...)`` with the inputs' shape.
            methods: the methods' names, in the order of ``maps``.
            title: figure title.
        """

    def build_model(
        self, dim_latent: int, input_shape: tuple[int, ...], pretext: str, name: str
    ) -> TrainableModel:
        """A fresh instance of this data set's model."""
        return build_model(self.model, ModelSpec(dim_latent, tuple(input_shape), pretext, name))

    def factor_scores(self, encoder: nn.Module, splits: Splits, device: str) -> dict[str, float]:
        """Disentanglement scores of an encoder against the data set's true generative
        factors (e.g. MIG on dSprites), computed from the encoder on (part of) the test split.

        Default: none (a data set without known factors, like MNIST).
        """
        return {}


def replacement_for(baseline: torch.Tensor | nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The values that replace perturbed features of ``inputs`` under ``baseline``."""
    if isinstance(baseline, nn.Module):
        with torch.no_grad():
            return baseline(inputs)
    return baseline


def check_data_dir(data_dir: str | Path, dataset: str) -> None:
    """Raises :class:`ConfigError` if ``data_dir`` is not an existing folder.

    Only the default ``data`` folder is created on first use: any other ``data_dir`` must exist,
    so that a typo fails instead of silently provisioning a fresh copy somewhere else. To fill
    a new folder, ask for it: ``python -m lfxai.data provision <dataset> --data_dir <folder>``.
    """
    path = Path(data_dir)
    if path.is_dir() or (path == DEFAULT_DATA_DIR and not path.exists()):
        return
    if path.exists():
        raise ConfigError(f"data_dir {str(path)!r} is not a folder")
    raise ConfigError(
        f"data_dir {str(path)!r} does not exist (resolved: {path.absolute()}); fix the path, "
        f"or provision a new folder explicitly: python -m lfxai.data provision {dataset} "
        f"--data_dir {path}"
    )


DATASETS: dict[str, DatasetPlugin] = {}


def register_dataset(cls: type[DatasetPlugin]) -> type[DatasetPlugin]:
    """Class decorator adding one instance of a plugin to :data:`DATASETS`."""
    if cls.name in DATASETS:
        raise KeyError(f"dataset {cls.name!r} is registered twice")
    DATASETS[cls.name] = cls()
    return cls


def get_dataset(name: str) -> DatasetPlugin:
    """The plugin of a data set, or a :class:`ConfigError` listing the valid choices."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid choices: {sorted(DATASETS)}")
    return DATASETS[name]
