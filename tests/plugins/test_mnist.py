"""The MNIST plugin on tiny IDX files: splits, normalisation, resizing, baseline, figure, names."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from lfxai.data import idx, mnist
from lfxai.data import provision as prov
from lfxai.data.mnist_resized import resize_images
from lfxai.data.splits import Split
from lfxai.plugins import get_dataset

N_TRAIN, N_TEST = 5, 4


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    """Random IDX files under ``<tmp>/mnist/MNIST/raw`` (checksums patched to accept them)."""
    rng = np.random.default_rng(0)
    folder = mnist.raw_dir(tmp_path / "mnist")
    arrays = {}
    for train, n in ((True, N_TRAIN), (False, N_TEST)):
        image_name, label_name = mnist.file_names(train)
        arrays[image_name] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        arrays[label_name] = rng.integers(0, 10, size=n, dtype=np.uint8)
    for name, array in arrays.items():
        idx.write_idx(folder / name, array)
    digests = {name: prov.sha256_file(folder / name) for name in mnist.MNIST_SHA256}
    monkeypatch.setattr(mnist, "MNIST_SHA256", digests)
    return arrays


def _images(arrays: dict[str, np.ndarray], train: bool) -> np.ndarray:
    return arrays[mnist.file_names(train)[0]]


def _labels(arrays: dict[str, np.ndarray], train: bool) -> torch.Tensor:
    return torch.from_numpy(arrays[mnist.file_names(train)[1]].astype(np.int64))


def test_standard_split_is_the_files_own_train_and_test_scaled_to_unit(tiny, tmp_path):
    splits = get_dataset("mnist").read_splits(str(tmp_path), "standard", 0, None, None)
    for split, train in ((splits.train, True), (splits.test, False)):
        expected = torch.from_numpy(_images(tiny, train)).float()[:, None] / 255
        assert split.x.shape == expected.shape and split.x.dtype == torch.float32
        torch.testing.assert_close(split.x, expected, rtol=0, atol=0)
        assert torch.equal(split.y, _labels(tiny, train))
    assert splits.explain is splits.test  # the test split is the one explained


def test_load_keeps_prefixes_of_both_splits(tiny, tmp_path):
    splits = get_dataset("mnist").load(str(tmp_path), "standard", 0, 3, 2)
    assert (len(splits.train), len(splits.test), len(splits.explain)) == (3, 2, 2)
    torch.testing.assert_close(
        splits.train.x[:, 0], torch.from_numpy(_images(tiny, True)[:3]).float() / 255
    )
    assert torch.equal(splits.test.y, _labels(tiny, False)[:2])


def test_resized32_is_the_same_images_resized_once_to_32(tiny, tmp_path):
    splits = get_dataset("mnist").read_splits(str(tmp_path), "resized32", 0, 3, 2)
    for split, train, n in ((splits.train, True, 3), (splits.test, False, 2)):
        expected = torch.from_numpy(resize_images(_images(tiny, train)[:n], 32)).float() / 255
        assert split.x.shape == (n, 1, 32, 32)
        torch.testing.assert_close(split.x[:, 0], expected, rtol=0, atol=0)
        assert torch.equal(split.y, _labels(tiny, train)[:n])
    assert splits.explain is splits.test
    whole = get_dataset("mnist").read_splits(str(tmp_path), "resized32", 0, None, None)
    assert (len(whole.train), len(whole.test)) == (N_TRAIN, N_TEST)


def test_baseline_is_one_black_image_of_the_inputs_shape():
    plugin = get_dataset("mnist")
    for side in (28, 32):
        baseline = plugin.baseline(Split(torch.rand(3, 1, side, side), torch.zeros(3)))
        assert baseline.shape == (1, 1, side, side) and not baseline.any()


def test_provisioned_files_are_the_four_idx_files_with_their_digests(tmp_path):
    folder = tmp_path / "mnist" / "MNIST" / "raw"
    names = {
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    }
    files = get_dataset("mnist").provisioned_files(tmp_path)
    assert files == {folder / name: mnist.MNIST_SHA256[name] for name in names}


def test_example_figure_rows_are_the_digits_then_each_method(tmp_path):
    inputs = torch.rand(2, 1, 28, 28)
    maps = [np.random.default_rng(k).random((2, 1, 28, 28)) for k in range(2)]
    figure = get_dataset("mnist").example_figure(inputs, maps, ["Saliency", "SHAP"], "the title")
    axes = np.array(figure.axes).reshape(3, 2)
    assert [row[0].get_ylabel() for row in axes] == ["image", "Saliency", "SHAP"]
    assert figure.get_suptitle() == "the title"
    for c in range(2):
        np.testing.assert_array_equal(axes[0, c].images[0].get_array(), inputs[c, 0].numpy())
        for r, scores in enumerate(maps, start=1):
            np.testing.assert_array_equal(axes[r, c].images[0].get_array(), scores[c, 0])
    plt.close(figure)


def test_names_used_in_runs_figures_and_registered_models():
    plugin = get_dataset("mnist")
    assert (plugin.name, plugin.title, plugin.model) == ("mnist", "MNIST", "mnist_ae")
    assert plugin.splits == ("standard", "resized32") and plugin.feature_unit == "pixels"
    assert plugin.model_label("denoising") == "denoising AE"
    assert plugin.pretext_tasks == {
        "reconstruction": ("mnist_ae", "reconstruction"),
        "denoising": ("mnist_ae", "denoising"),
        "inpainting": ("mnist_ae", "inpainting"),
        "classification": ("mnist_classifier", "reconstruction"),
        "scae": ("mnist_scae", "reconstruction"),
    }
