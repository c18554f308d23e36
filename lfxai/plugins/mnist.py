"""MNIST: 28x28 digits, the paper's conv autoencoder, black pixels replace perturbed ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from lfxai.data.mnist import (
    MNIST_SHA256,
    TEST_LABEL_COUNTS,
    TRAIN_LABEL_COUNTS,
    mnist_split,
    provision_mnist,
    raw_dir,
)
from lfxai.data.mnist_resized import mnist_resized_split
from lfxai.data.provision import Provisioned
from lfxai.data.splits import Split
from lfxai.plotting.curves import image_grid
from lfxai.plugins.base import DatasetPlugin, Splits, SplitSizes, register_dataset


@register_dataset
class Mnist(DatasetPlugin):
    """The first ``n_train`` / ``n_test`` images of MNIST's own train and test splits.

    Splits: ``standard`` (28x28) and ``resized32`` (the same images resized once to 32x32
    and cached under the data directory, for the Burgess VAE of ``disvae``).
    """

    name = "mnist"
    title = "MNIST"
    model = "mnist_ae"
    experiments = (
        "consistency_features",
        "consistency_examples",
        "roar_test",
        "pretext",
        "disvae",
    )
    splits = ("standard", "resized32")
    feature_unit = "pixels"
    pretext_tasks = {
        "reconstruction": ("mnist_ae", "reconstruction"),
        "denoising": ("mnist_ae", "denoising"),
        "inpainting": ("mnist_ae", "inpainting"),
        "classification": ("mnist_classifier", "reconstruction"),  # no input perturbation
        "scae": ("mnist_scae", "reconstruction"),
    }

    def provision_root(self, root: Path) -> Provisioned:
        """Checks (or fetches) the IDX files."""
        return provision_mnist(root)

    def split_sizes(self, data_dir: str | Path, split: str) -> SplitSizes:
        """60,000 / 10,000 (``resized32`` holds the same images, resized)."""
        # Both splits hold the standard files' images (resized32: the same ones, resized).
        n_test = sum(TEST_LABEL_COUNTS)
        return SplitSizes(sum(TRAIN_LABEL_COUNTS), n_test, n_test)

    def read_splits(
        self, data_dir: str, split: str, seed: int, n_train: int | None, n_test: int | None
    ) -> Splits:
        """The standard split at 28x28, or resized once to 32x32 (``resized32``)."""
        if split == "resized32":
            train = mnist_resized_split(self.root(data_dir), train=True, size=n_train, side=32)
            test = mnist_resized_split(self.root(data_dir), train=False, size=n_test, side=32)
        else:
            train = mnist_split(self.root(data_dir), train=True, size=n_train)
            test = mnist_split(self.root(data_dir), train=False, size=n_test)
        return Splits(train, test, test)

    def provisioned_files(self, data_dir: str | Path) -> dict[Path, str]:
        """The four IDX files with their sha256."""
        folder = raw_dir(self.root(data_dir))
        return {folder / name: digest for name, digest in MNIST_SHA256.items()}

    def baseline(self, train: Split) -> torch.Tensor:
        """A black image, as in the paper."""
        return torch.zeros(1, *train.x.shape[1:])  # a black image, as in the paper

    def example_figure(
        self, inputs: torch.Tensor, maps: list[np.ndarray], methods: list[str], title: str
    ) -> Figure:
        """Digits and their importance maps in one grid."""
        # One channel: the grid shows (H, W) maps.
        grid = np.concatenate([inputs[:, 0].numpy()[None], np.stack([m[:, 0] for m in maps])])
        return image_grid(grid, ["image", *methods], title)
