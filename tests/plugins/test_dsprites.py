"""The dSprites plugin on a small rendered sub-grid: splits, files, MIG, figure, names."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from lfxai.config import ConfigError
from lfxai.data.dsprites import CACHE_NAME, META_NAME, provision_dsprites
from lfxai.data.packed import PackedImages
from lfxai.data.splits import Split
from lfxai.data.sprites import FACTORS
from lfxai.plugins import dsprites as plugin_module
from lfxai.plugins import get_dataset
from lfxai.training import TrainingSettings, fit

SMALL = (1, 5, 8, 4, 4)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    provision_dsprites(folder / "dsprites", download=False, strides=SMALL)
    return folder


class Centroid(nn.Module):
    """Codes = (column centroid, row centroid, area, a constant): positions per unit."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x[:, 0]
        grid = torch.arange(64.0)
        mass = image.sum(dim=(1, 2)).clamp(min=1)
        cols = (image.sum(dim=1) * grid).sum(dim=1) / mass
        rows = (image.sum(dim=2) * grid).sum(dim=1) / mass
        return torch.stack([cols, rows, mass, torch.zeros_like(mass)], dim=1)


def test_splits_files_and_bad_split(data_dir):
    plugin = get_dataset("dsprites")
    splits = plugin.load(str(data_dir), "random", 0, 500, None)
    assert isinstance(splits.train.x, PackedImages) and splits.explain is splits.test
    assert (len(splits.train), len(splits.test)) == (500, 192)
    assert splits.train.y.shape == (500, 5)
    meta = json.loads((data_dir / "dsprites" / META_NAME).read_text())
    assert plugin.provisioned_files(data_dir) == {
        data_dir / "dsprites" / CACHE_NAME: meta["sha256"]
    }
    assert plugin.provision(data_dir).source.startswith("cache: rendered")
    assert plugin.baseline(splits.train).shape == (1, 1, 64, 64)
    with pytest.raises(ConfigError, match=r"unknown split 'standard'.*\['random'\]"):
        plugin.load(str(data_dir), "standard", 0, None, None)


def test_mig_of_an_encoder_that_reads_the_position(data_dir):
    plugin = get_dataset("dsprites")
    splits = plugin.load(str(data_dir), "random", 0, None, None)
    scores = plugin.factor_scores(Centroid(), splits, "cpu")
    # One unit per position: both gaps large; nothing isolates shape or orientation.
    assert scores["mig/pos_x"] > 0.6 and scores["mig/pos_y"] > 0.6
    assert scores["mig/orientation"] < 0.2
    assert scores["mig"] == pytest.approx(
        np.mean([scores[f"mig/{f}"] for f in ("shape", "scale", "orientation", "pos_x", "pos_y")])
    )


def test_packed_split_trains_like_its_decoded_tensor(data_dir):
    plugin = get_dataset("dsprites")
    splits = plugin.load(str(data_dir), "random", 0, 64, 32)
    decoded = [Split(s.x[torch.arange(len(s))], s.y) for s in (splits.train, splits.test)]

    def train(train_split: Split, test_split: Split) -> list[float]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64 * 64, 2))
        model.loss = lambda x, y: model(x).square().mean()
        settings = TrainingSettings(2, batch_size=16, seed=1)
        result = fit(model, train_split, test_split, torch.device("cpu"), settings, progress=False)
        return result.train_loss + result.test_loss

    packed = train(splits.train, splits.test)
    assert packed == train(*decoded)
    loader = splits.train.loader(16, shuffle=True, seed=2)
    reference = decoded[0].loader(16, shuffle=True, seed=2)
    for (x, y), (x_ref, y_ref) in zip(loader, reference, strict=True):
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)


class Recorder(nn.Module):
    """Records each batch it encodes (size and device; the CPU ones themselves); two units."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, str]] = []
        self.batches: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((len(x), x.device.type))
        if x.device.type == "cpu":
            self.batches.append(x)
        return torch.zeros(len(x), 2)


def test_mig_encodes_the_first_test_images_in_batches_on_the_device(data_dir, monkeypatch):
    plugin = get_dataset("dsprites")
    splits = plugin.load(str(data_dir), "random", 0, None, None)
    monkeypatch.setattr(plugin_module, "MIG_EXAMPLES", 50)
    monkeypatch.setattr(plugin_module, "ENCODE_BATCH", 16)
    encoder = Recorder()
    scores = plugin.factor_scores(encoder, splits, "cpu")
    assert encoder.seen == [(16, "cpu"), (16, "cpu"), (16, "cpu"), (2, "cpu")]
    assert torch.equal(torch.cat(encoder.batches), splits.test.x[torch.arange(50)])
    assert set(scores) == {"mig", *(f"mig/{f}" for f in FACTORS)}
    monkeypatch.setattr(plugin_module, "MIG_EXAMPLES", 10_000)  # more than the 192 test images
    meta = Recorder()
    plugin.factor_scores(meta, splits, "meta")
    assert [n for n, _ in meta.seen] == [16] * 12 and {d for _, d in meta.seen} == {"meta"}


def test_example_figure_rows_are_the_sprites_then_each_unit():
    inputs = torch.rand(3, 1, 64, 64)
    maps = [np.random.default_rng(k).random((3, 1, 64, 64)) for k in range(2)]
    figure = get_dataset("dsprites").example_figure(inputs, maps, ["unit 0", "unit 1"], "title")
    axes = np.array(figure.axes).reshape(3, 3)
    assert [row[0].get_ylabel() for row in axes] == ["image", "unit 0", "unit 1"]
    assert figure.get_suptitle() == "title"
    for c in range(3):
        np.testing.assert_array_equal(axes[0, c].images[0].get_array(), inputs[c, 0].numpy())
        np.testing.assert_array_equal(axes[2, c].images[0].get_array(), maps[1][c, 0])
    plt.close(figure)


def test_names_and_baseline():
    plugin = get_dataset("dsprites")
    assert (plugin.name, plugin.title, plugin.model) == ("dsprites", "dSprites", "burgess_vae")
    assert plugin.experiments == ("disvae",) and plugin.feature_unit == "pixels"
    baseline = plugin.baseline(Split(torch.rand(2, 1, 64, 64), torch.zeros(2, 5)))
    assert baseline.shape == (1, 1, 64, 64) and not baseline.any()
