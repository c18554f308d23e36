"""MNIST: 28x28 digits, the paper's conv autoencoder, black pixels replace perturbed ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from lfxai.data.mnist import (
    MNIST_SHA256,
    mnist_resized_split,
    mnist_split,
    provision_mnist,
    raw_dir,
)
from lfxai.data.provision import Provisioned
from lfxai.data.splits import Split
from lfxai.plotting.curves import image_grid
from lfxai.plugins.base import DatasetPlugin, Splits, register_dataset


@register_dataset
class Mnist(DatasetPlugin):
    """The first ``n_train`` / ``n_test`` images of MNIST's own train and test splits.

    Splits: ``standard`` (28x28) and ``resized32`` (the same images resized once to 32x32
    and cached under the data directory, for the Burgess VAE of ``disvae``).
    """

    name = "mnist"
    title = "MNIST"
    model = "mnist_ae"
    experiments = ("consistency_features", "consistency_examples", "roar_test", "disvae")
    splits = ("standard", "resized32")
    feature_unit = "pixels"

    def provision_root(self, root: Path) -> Provisioned:
        return provision_mnist(root)

    def load(
        self, data_dir: str, split: str, seed: int, n_train: int | None, n_test: int | None
    ) -> Splits:
        self.check_split(split)
        if split == "resized32":
            train = mnist_resized_split(self.root(data_dir), train=True, size=n_train, side=32)
            test = mnist_resized_split(self.root(data_dir), train=False, size=n_test, side=32)
        else:
            train = mnist_split(self.root(data_dir), train=True, size=n_train)
            test = mnist_split(self.root(data_dir), train=False, size=n_test)
        return Splits(train, test, test)

    def provisioned_files(self, data_dir: str | Path) -> dict[Path, str]:
        folder = raw_dir(self.root(data_dir))
        return {folder / name: digest for name, digest in MNIST_SHA256.items()}

    def baseline(self, train: Split) -> torch.Tensor:
        return torch.zeros(1, *train.x.shape[1:])  # a black image, as in the paper

    def example_figure(
        self, inputs: torch.Tensor, maps: list[np.ndarray], methods: list[str], title: str
    ) -> Figure:
        # One channel: the grid shows (H, W) maps.
        grid = np.concatenate([inputs[:, 0].numpy()[None], np.stack([m[:, 0] for m in maps])])
        return image_grid(grid, ["image", *methods])
