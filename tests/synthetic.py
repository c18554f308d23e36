"""A generated MNIST-shaped data set, so experiments run in-process in the fast tier.

:class:`SyntheticDigits` is the MNIST plugin (its model, baseline, figures, experiments)
reading generated 28x28 images instead of the IDX files: class ``c`` is a bright horizontal
bar on rows ``2c+4 .. 2c+5`` over faint noise, so examples of one class look alike and the
experiments' rules (similar examples share labels, masking important pixels hurts) have
something real to find in a second of training. Nothing is read from or written to disk.

:func:`use_synthetic` registers it as the data set ``synthetic`` whose settings are MNIST's
(``configs/mnist.yaml``), so ``lfxai.cli.experiment.main("synthetic", argv)`` runs any MNIST
experiment in seconds.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from lfxai.config import config_dir
from lfxai.data.provision import Provisioned
from lfxai.data.splits import Split
from lfxai.plugins.base import DATASETS, Splits, SplitSizes
from lfxai.plugins.mnist import Mnist

N_CLASSES = 10
SIZES = SplitSizes(train=200, test=60, explain=60)
RECIPE = "bar rows 2c+4..2c+5, columns 4..23 at 0.9, noise 0.1; train seed 1, test seed 2"


def digits(n: int, seed: int) -> Split:
    """``n`` images ``(n, 1, 28, 28)`` in [0, 1], labels cycling through the classes."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % N_CLASSES
    x = 0.1 * torch.rand(n, 1, 28, 28, generator=generator)
    rows = 2 * y + 4
    for offset in (0, 1):  # a loop over the bar's 2 rows, not over examples
        x[torch.arange(n), 0, rows + offset, 4:24] = 0.9
    return Split(x, y)


class SyntheticDigits(Mnist):
    """MNIST as the experiments see it, on :func:`digits` (train seed 1, test seed 2)."""

    name = "synthetic"
    title = "Synthetic digits"

    def provision_root(self, root: Path) -> Provisioned:
        return Provisioned(root, "generated")

    def split_sizes(self, data_dir: str | Path, split: str) -> SplitSizes:
        return SIZES

    def read_splits(
        self, data_dir: str, split: str, seed: int, n_train: int | None, n_test: int | None
    ) -> Splits:
        train = digits(SIZES.train, seed=1).head(n_train)
        test = digits(SIZES.test, seed=2).head(n_test)
        return Splits(train, test, test)

    def provisioned_files(self, data_dir: str | Path) -> dict[Path, str]:
        # No file: the "file" is the generator, named by a digest of its recipe.
        return {self.root(data_dir) / "generated": hashlib.sha256(RECIPE.encode()).hexdigest()}


def use_synthetic(monkeypatch: pytest.MonkeyPatch, folder: Path) -> Path:
    """Registers :class:`SyntheticDigits` with MNIST's settings, until the test ends.

    The project's configs are copied to ``folder / "configs"`` (``LFXAI_CONFIG_DIR``), with
    ``synthetic.yaml`` a copy of ``mnist.yaml`` and ``explain.yaml``'s ``mnist`` section copied
    to a ``synthetic`` one.

    Returns:
        A data folder to pass as ``--data_dir`` (empty: nothing is read).
    """
    configs = folder / "configs"
    shutil.copytree(config_dir(), configs)
    shutil.copyfile(configs / "mnist.yaml", configs / f"{SyntheticDigits.name}.yaml")
    explain = yaml.safe_load((configs / "explain.yaml").read_text())
    explain[SyntheticDigits.name] = explain["mnist"]
    (configs / "explain.yaml").write_text(yaml.safe_dump(explain))
    monkeypatch.setenv("LFXAI_CONFIG_DIR", str(configs))
    monkeypatch.setitem(DATASETS, SyntheticDigits.name, SyntheticDigits())
    data = folder / "data"
    data.mkdir()
    return data
