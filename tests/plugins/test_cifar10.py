"""The CIFAR-10 plugin on a generated fixture: splits, prefixes, settings it refuses, baseline."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from lfxai.config import ConfigError
from lfxai.data import cifar10
from lfxai.data.masking import GaussianBlur
from lfxai.data.splits import Split
from lfxai.plugins import get_dataset

N_TRAIN, N_TEST, SEED = 10, 5, 3


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    cifar10.write_cifar10(tmp_path / "cifar10", n_train=N_TRAIN, n_test=N_TEST, seed=SEED)
    return tmp_path


def _written() -> tuple[torch.Tensor, torch.Tensor]:
    """The fixture's images in writing order (train first, then test) as floats in [0, 1]."""
    images, labels = cifar10.generated_images(N_TRAIN + N_TEST, np.random.default_rng(SEED))
    return torch.from_numpy(images).float() / 255, torch.from_numpy(labels.astype(np.int64))


def test_train_and_test_are_the_files_own_splits(data_dir):
    splits = get_dataset("cifar10").read_splits(str(data_dir), "standard", 0, None, None)
    images, labels = _written()
    assert splits.train.x.shape == (N_TRAIN, 3, 32, 32) and splits.test.x.shape == (
        N_TEST,
        3,
        32,
        32,
    )
    torch.testing.assert_close(splits.train.x, images[:N_TRAIN], rtol=0, atol=0)
    torch.testing.assert_close(splits.test.x, images[N_TRAIN:], rtol=0, atol=0)
    assert torch.equal(splits.test.y, labels[N_TRAIN:])
    assert splits.explain is splits.test


def test_load_keeps_prefixes(data_dir):
    splits = get_dataset("cifar10").load(str(data_dir), "standard", 0, 7, 3)
    images, _ = _written()
    assert (len(splits.train), len(splits.test), len(splits.explain)) == (7, 3, 3)
    torch.testing.assert_close(splits.train.x, images[:7], rtol=0, atol=0)
    torch.testing.assert_close(splits.test.x, images[N_TRAIN : N_TRAIN + 3], rtol=0, atol=0)


def test_settings_left_out_are_simclr_s_own(data_dir):
    plugin = get_dataset("cifar10")
    plugin.check_config(SimpleNamespace(split="standard", data_dir=str(data_dir)))
    plugin.check_config(SimpleNamespace(pretext="reconstruction", dim_latent=512))


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            {"pretext": "denoising"},
            "pretext 'denoising' does not apply to dataset 'cifar10': SimCLR learns from its "
            "own augmented views; valid choices: ['reconstruction']",
        ),
        (
            {"dim_latent": 128},
            "dim_latent=128 does not fit dataset 'cifar10': its encoder (ResNet-18) gives 512 "
            "features; valid choices: [512]",
        ),
    ],
)
def test_a_pretext_or_latent_size_simclr_cannot_have_is_refused(setting, message):
    with pytest.raises(ConfigError) as error:
        get_dataset("cifar10").check_config(SimpleNamespace(**setting))
    assert str(error.value) == message


def test_baseline_is_the_papers_blur_whatever_the_training_split():
    baseline = get_dataset("cifar10").baseline(Split(torch.rand(2, 3, 32, 32), torch.zeros(2)))
    assert isinstance(baseline, GaussianBlur)
    assert (baseline.kernel_size, baseline.sigma) == (21, 5.0)


def test_example_figure_rows_are_the_images_then_each_method():
    inputs = torch.rand(2, 3, 32, 32)
    maps = [np.random.default_rng(k).random((2, 3, 32, 32)) for k in range(2)]
    figure = get_dataset("cifar10").example_figure(inputs, maps, ["SimplEx", "DKNN"], "rgb")
    axes = np.array(figure.axes).reshape(3, 2)
    assert [row[0].get_ylabel() for row in axes] == ["image", "SimplEx", "DKNN"]
    assert figure.get_suptitle() == "rgb"
    for c in range(2):
        shown = axes[0, c].images[0].get_array()
        np.testing.assert_allclose(shown, inputs[c].permute(1, 2, 0).numpy())
        pixels = maps[1][c].sum(axis=0)  # all positive: |.| is the identity
        np.testing.assert_allclose(axes[2, c].images[0].get_array(), pixels / pixels.max())
    plt.close(figure)


def test_names_used_in_runs_figures_and_registered_models():
    plugin = get_dataset("cifar10")
    assert (plugin.name, plugin.title, plugin.model) == ("cifar10", "CIFAR-10", "simclr_resnet18")
    assert plugin.example_methods == ("SimplEx", "DKNN") and plugin.splits == ("standard",)
    for pretext in ("reconstruction", "denoising"):
        assert plugin.model_label(pretext) == "SimCLR ResNet-18"
