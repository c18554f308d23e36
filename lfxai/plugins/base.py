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
from lfxai.data.provision import DataUnavailable, Provisioned
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


@dataclass(frozen=True)
class SplitSizes:
    """How many examples each role of a split holds, known before any data is read.

    Attributes:
        train: examples of the training split (``n_train`` keeps a prefix of it).
        test: examples of the test (or validation) split (``n_test`` keeps a prefix).
        explain: examples of the explained split (``n_test`` keeps a prefix of it too).
    """

    train: int
    test: int
    explain: int


TRAIN_SUBSETS = ("n_train_explained", "scae_n_train")
"""Settings that draw examples from what the model trains on (the ``n_train`` prefix)."""
EXPLAIN_SUBSETS = ("n_test_explained", "n_explained")
"""Settings that draw examples from the explained split (its ``n_test`` prefix)."""


def check_size(setting: str, value: int | None, limit: int, what: str, hint: str = "") -> None:
    """Raises :class:`ConfigError` if ``value`` (None: all) exceeds ``limit`` examples.

    The message names the setting, its value and the limit: ``n_train=100000 exceeds the
    60000 training examples of mnist (split 'standard'); choose n_train <= 60000``.
    """
    if value is not None and value > limit:
        raise ConfigError(
            f"{setting}={value} exceeds the {limit} {what}; choose {setting} <= {limit}{hint}"
        )


class DatasetPlugin(ABC):
    """One data set as the experiments see it (subclass, set the class attributes).

    Attributes:
        name: registry key = MLflow entry point = ``configs/<name>.yaml``.
        title: display name in figure titles.
        model: key of the model in ``lfxai.models.registry.MODELS``.
        experiments: names of the experiments declared for this data set.
        splits: valid values of the experiments' ``split`` setting.
        feature_unit: what a feature is, in axis labels (``pixels``, ``time steps``).
        pretext_tasks: the models the ``pretext`` experiment compares, by task.
        example_methods: the example importance methods that apply to its model (None: all;
            e.g. only the representation-based ones when the loss is not per example).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    model: ClassVar[str]
    experiments: ClassVar[tuple[str, ...]]
    splits: ClassVar[tuple[str, ...]]
    feature_unit: ClassVar[str]
    # The `pretext` experiment's models: task -> (model key in MODELS, its pretext
    # perturbation). Empty for a data set without that experiment.
    pretext_tasks: ClassVar[dict[str, tuple[str, str]]] = {}
    example_methods: ClassVar[tuple[str, ...] | None] = None

    def root(self, data_dir: str | Path) -> Path:
        """This data set's folder under the project data directory."""
        return dataset_root(data_dir, self.name)

    def provision(self, data_dir: str | Path) -> Provisioned:
        """Checks ``data_dir``, then makes this data set's files ready under it.

        The folder is checked by :func:`check_data_dir`; the files are verified, fetched if missing,
        replaced if corrupt (``repaired``).

        Raises:
            ConfigError: ``data_dir`` is not a folder, or the files are missing or damaged
                and no source could provide them (one line: files, digests, how to fix).
        """
        check_data_dir(data_dir, self.name)
        try:
            return self.provision_root(self.root(data_dir))
        except DataUnavailable as error:
            raise ConfigError(str(error)) from None

    @abstractmethod
    def provision_root(self, root: Path) -> Provisioned:
        """Verifies (and fetches or repairs) the data set's files under its root."""

    @abstractmethod
    def split_sizes(self, data_dir: str | Path, split: str) -> SplitSizes:
        """The examples of each role of ``split``, known without reading the data.

        From recorded sizes, a fixture's manifest or a cache's metadata: what size settings are
        checked against before any data is loaded or any model trained.
        """

    def check_split(self, split: str) -> None:
        """Raises :class:`ConfigError` unless ``split`` is one of :attr:`splits`."""
        if split not in self.splits:
            raise ConfigError(
                f"unknown split {split!r} for dataset {self.name!r}; "
                f"valid choices: {list(self.splits)}"
            )

    def check_config(self, config: object) -> None:
        """Raises :class:`ConfigError` on settings this data set cannot run, before any reading.

        The ``split``, sizes larger than what they are drawn from (:meth:`check_sizes`) and
        ``example_methods`` it does not support.
        """
        if hasattr(config, "split"):
            self.check_split(config.split)
            self.check_sizes(config)
        methods = getattr(config, "example_methods", None)
        if methods is not None and self.example_methods is not None:
            unsupported = [m for m in methods if m not in self.example_methods]
            if unsupported:
                raise ConfigError(
                    f"example_methods {unsupported} do not apply to dataset {self.name!r} "
                    f"(model {self.model!r}); valid choices: {list(self.example_methods)}"
                )

    def check_sizes(self, config: object) -> None:
        """Raises :class:`ConfigError` when a size exceeds the examples it is drawn from.

        The message names the setting, its value and the limit: ``n_train`` / ``n_test`` against
        their splits, :data:`TRAIN_SUBSETS` against the ``n_train`` examples,
        :data:`EXPLAIN_SUBSETS` against the explained ones. Nothing is silently cut: what trains is
        what the params say.
        """
        split = config.split
        sizes = self.split_sizes(config.data_dir, split)
        n_train, n_test = getattr(config, "n_train", None), getattr(config, "n_test", None)
        self._check_prefixes(sizes, split, n_train, n_test)
        trained = sizes.train if n_train is None else n_train
        explained = sizes.explain if n_test is None else min(n_test, sizes.explain)
        whole = f"(all of {self.name}'s {split!r} {{}} split)"
        on = f"(n_train={n_train})" if n_train is not None else whole.format("training")
        for setting in TRAIN_SUBSETS:
            value = getattr(config, setting, None)
            check_size(setting, value, trained, f"examples the model trains on {on}")
        on = f"(n_test={n_test})" if n_test is not None else whole.format("explained")
        for setting in EXPLAIN_SUBSETS:
            value = getattr(config, setting, None)
            check_size(setting, value, explained, f"examples of the explained split {on}")

    def _check_prefixes(
        self, sizes: SplitSizes, split: str, n_train: int | None, n_test: int | None
    ) -> None:
        where = f"of {self.name} (split {split!r})"
        hint = " (none: all of them)"
        check_size("n_train", n_train, sizes.train, f"training examples {where}", hint)
        # n_test cuts the test split and the explained split alike: it must fit both.
        test = min(sizes.test, sizes.explain)
        check_size("n_test", n_test, test, f"test examples {where}", hint)

    def model_label(self, pretext: str) -> str:
        """What the trained model is, in figure titles and registered names (``denoising AE``)."""
        return f"{pretext} AE"

    def load(
        self, data_dir: str, split: str, seed: int, n_train: int | None, n_test: int | None
    ) -> Splits:
        """The splits of an experiment; ``n_train`` / ``n_test`` keep a prefix (None: all).

        Raises:
            ConfigError: an unknown split; a prefix longer than its split (checked against
                :meth:`split_sizes` before any data is read); data that cannot be provided;
                splits whose sizes are not the ones asked for.
        """
        self.check_split(split)
        sizes = self.split_sizes(data_dir, split)
        self._check_prefixes(sizes, split, n_train, n_test)
        try:
            splits = self.read_splits(data_dir, split, seed, n_train, n_test)
        except DataUnavailable as error:
            raise ConfigError(str(error)) from None
        # What is trained on is what the params say: never a silently shorter split.
        expected = {
            "train": sizes.train if n_train is None else n_train,
            "test": sizes.test if n_test is None else n_test,
            "explain": sizes.explain if n_test is None else min(n_test, sizes.explain),
        }
        found = {role: len(getattr(splits, role)) for role in expected}
        if found != expected:
            raise ConfigError(
                f"{self.name} under {data_dir} gave splits of {found} examples where "
                f"{expected} were expected (split {split!r}, n_train={n_train}, "
                f"n_test={n_test}); its files do not hold the data set their records describe"
            )
        return splits

    @abstractmethod
    def read_splits(
        self, data_dir: str, split: str, seed: int, n_train: int | None, n_test: int | None
    ) -> Splits:
        """Reads the splits (called by :meth:`load` once the sizes are checked)."""

    @abstractmethod
    def provisioned_files(self, data_dir: str | Path) -> dict[Path, str]:
        """The files the splits are read from, each with its recorded sha256."""

    @abstractmethod
    def baseline(self, train: Split) -> torch.Tensor | nn.Module:
        """What replaces a perturbed feature.

        A tensor broadcastable to the inputs, or a module mapping inputs to their replacements (e.g.
        a blur).
        """

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
        """Disentanglement scores of an encoder against the data set's true generative factors.

        E.g. MIG on dSprites, computed from the encoder on (part of) the test split.

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
    a new folder, ask for it: ``python -m lfxai provision <dataset> --data_dir <folder>``.
    """
    path = Path(data_dir)
    if path.is_dir() or (path == DEFAULT_DATA_DIR and not path.exists()):
        return
    if path.exists():
        raise ConfigError(f"data_dir {str(path)!r} is not a folder")
    raise ConfigError(
        f"data_dir {str(path)!r} does not exist (resolved: {path.absolute()}); fix the path, "
        f"or provision a new folder explicitly: python -m lfxai provision {dataset} "
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
