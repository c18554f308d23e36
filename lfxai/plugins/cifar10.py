"""CIFAR-10: 32x32 colour images, SimCLR with a ResNet-18, blurred images replace masked pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from lfxai.config import ConfigError
from lfxai.data.cifar10 import (
    FILES,
    batches_dir,
    cifar10_split,
    expected_digests,
    provision_cifar10,
    split_sizes,
)
from lfxai.data.masking import GaussianBlur
from lfxai.data.provision import Provisioned
from lfxai.data.splits import Split
from lfxai.plotting.images import rgb_importance
from lfxai.plugins.base import DatasetPlugin, Splits, SplitSizes, register_dataset

BLUR_KERNEL = 21  # the paper's baseline: Gaussian blur, kernel 21, sigma 5
BLUR_SIGMA = 5.0
PRETEXT = "reconstruction"  # no extra perturbation: SimCLR's views are its own augmentations


@register_dataset
class Cifar10(DatasetPlugin):
    """The first ``n_train`` / ``n_test`` images of CIFAR-10's own train and test splits.

    The explained split is the test split; ``consistency_examples`` draws its explained train
    subset from the train split. Only SimplEx and DKNN apply: NT-Xent couples the examples of
    a batch, so the per-example losses that influence functions and TracIn differentiate do
    not exist.
    """

    name = "cifar10"
    title = "CIFAR-10"
    model = "simclr_resnet18"
    experiments = ("consistency_features", "consistency_examples")
    splits = ("standard",)
    feature_unit = "pixel values"
    example_methods = ("SimplEx", "DKNN")

    def provision_root(self, root: Path) -> Provisioned:
        """Checks the CIFAR-10 batches (torchvision's md5 or a fixture's manifest)."""
        return provision_cifar10(root)

    def check_config(self, config: object) -> None:
        """Also refuses a pretext task: SimCLR's augmentations are its pretext."""
        super().check_config(config)
        pretext = getattr(config, "pretext", PRETEXT)
        if pretext != PRETEXT:
            raise ConfigError(
                f"pretext {pretext!r} does not apply to dataset 'cifar10': SimCLR learns from "
                f"its own augmented views; valid choices: [{PRETEXT!r}]"
            )
        dim = getattr(config, "dim_latent", 512)
        if dim != 512:
            raise ConfigError(
                f"dim_latent={dim} does not fit dataset 'cifar10': its encoder (ResNet-18) "
                "gives 512 features; valid choices: [512]"
            )

    def model_label(self, pretext: str) -> str:
        """SimCLR ResNet-18, whatever the pretext."""
        return "SimCLR ResNet-18"

    def split_sizes(self, data_dir: str | Path, split: str) -> SplitSizes:
        """50,000 / 10,000, or a generated fixture's sizes (its manifest)."""
        n_train, n_test = split_sizes(self.root(data_dir))  # a fixture's, else the official
        return SplitSizes(n_train, n_test, n_test)

    def read_splits(
        self, data_dir: str, split: str, seed: int, n_train: int | None, n_test: int | None
    ) -> Splits:
        """The standard train / test split (the test split is explained)."""
        train = cifar10_split(self.root(data_dir), train=True, size=n_train)
        test = cifar10_split(self.root(data_dir), train=False, size=n_test)
        return Splits(train, test, test)

    def provisioned_files(self, data_dir: str | Path) -> dict[Path, str]:
        """The batch files with torchvision's md5, or a fixture's sha256."""
        # Official files carry torchvision's md5, fixtures their manifest's sha256.
        folder = batches_dir(self.root(data_dir))
        digests = expected_digests(folder).digests
        return {folder / name: digests[name] for name in FILES}

    def baseline(self, train: Split) -> nn.Module:
        """A Gaussian blur (kernel 21, sigma 5): a perturbed pixel takes the blurred value."""
        return GaussianBlur(BLUR_KERNEL, BLUR_SIGMA)

    def example_figure(
        self, inputs: torch.Tensor, maps: list[np.ndarray], methods: list[str], title: str
    ) -> Figure:
        """RGB images and their importance maps."""
        return rgb_importance(inputs.numpy(), maps, methods, title=title)
