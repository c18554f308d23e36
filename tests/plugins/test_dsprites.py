"""The dSprites plugin on a small rendered sub-grid: splits, files, MIG of a known encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from lfxai.config import ConfigError
from lfxai.data.dsprites import CACHE_NAME, META_NAME, provision_dsprites
from lfxai.data.packed import PackedImages
from lfxai.data.splits import Split
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
