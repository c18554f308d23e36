"""ECG5000: heartbeats of 140 steps, the LSTM autoencoder, the mean training beat as baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from lfxai.data.ecg5000 import (
    ECG5000_SHA256,
    SPLITS,
    dataset_dir,
    ecg5000_splits,
    provision_ecg5000,
    split_sizes,
)
from lfxai.data.provision import Provisioned
from lfxai.data.splits import Split
from lfxai.plotting.series import series_importance
from lfxai.plugins.base import DatasetPlugin, Splits, SplitSizes, register_dataset


@register_dataset
class Ecg5000(DatasetPlugin):
    """Splits ``normal`` (train on normal beats, explain abnormal ones) and ``random``.

    ``n_train`` keeps a prefix of the (shuffled) training split and ``n_test`` of the
    validation / test split and of the explained split; a prefix longer than its split is
    refused (``normal``: 2,335 train, 584 validation; ``random``: 4,000 / 1,000), never cut.
    """

    name = "ecg5000"
    title = "ECG5000"
    model = "lstm_ae"
    experiments = ("consistency_features", "consistency_examples")
    splits = SPLITS
    feature_unit = "time steps"

    def provision_root(self, root: Path) -> Provisioned:
        """Checks (or fetches) the UCR files."""
        return provision_ecg5000(root)

    def split_sizes(self, data_dir: str | Path, split: str) -> SplitSizes:
        """The split's recorded sizes."""
        return SplitSizes(*split_sizes(split))

    def read_splits(
        self, data_dir: str, split: str, seed: int, n_train: int | None, n_test: int | None
    ) -> Splits:
        """Normal beats (train / validation) and abnormal ones (explained), or a random split."""
        train, test, explain = ecg5000_splits(self.root(data_dir), split, seed)
        return Splits(train.head(n_train), test.head(n_test), explain.head(n_test))

    def provisioned_files(self, data_dir: str | Path) -> dict[Path, str]:
        """The two UCR files with their sha256."""
        folder = dataset_dir(self.root(data_dir))
        return {folder / name: digest for name, digest in ECG5000_SHA256.items()}

    def baseline(self, train: Split) -> torch.Tensor:
        """The mean training beat, as in the paper."""
        return train.x.mean(dim=0, keepdim=True)  # the mean training beat, as in the paper

    def example_figure(
        self, inputs: torch.Tensor, maps: list[np.ndarray], methods: list[str], title: str
    ) -> Figure:
        """Beats with their importance drawn along them."""
        return series_importance(
            inputs[..., 0].numpy(), [m[..., 0] for m in maps], methods, title=title
        )
