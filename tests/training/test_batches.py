"""How the loop batches: device-resident splits batched like DataLoaders, moved to the device."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lfxai import training
from lfxai.data.splits import Split
from lfxai.devices import seed_everything
from lfxai.training import TrainingSettings, evaluate, fit
from tests.training.helpers import Spy, labelled_split, small_ae


@pytest.mark.parametrize("n, batch_size", [(50, 7), (48, 8)])  # a ragged and an even last batch
def test_split_batches_are_the_dataloaders_for_a_seed(n, batch_size):
    train, test = labelled_split(n), labelled_split(10, seed=1)
    orders = []
    for data in (train.loader(batch_size, shuffle=True, seed=3), train):
        model = Spy()
        settings = TrainingSettings(3, batch_size, patience=0, seed=3)
        fit(model, data, test, torch.device("cpu"), settings, progress=False)
        orders.append(model.seen)
    assert len(orders[1]) == 3 * -(-n // batch_size)
    assert [b.tolist() for b in orders[0]] == [b.tolist() for b in orders[1]]


def test_fit_on_a_split_gives_the_dataloader_losses():
    # The real model with its noisy pretext: the noise comes from the global RNG, which the
    # split path must leave exactly as the DataLoaders do for the later epochs to match.
    x = torch.rand(96, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    train, test = Split(x[:64], torch.zeros(64, dtype=torch.long)), Split(x[64:], x.new_zeros(32))
    results, weights = [], []
    for loaders in [(train.loader(16, shuffle=True, seed=5), test.loader(16)), (train, test)]:
        seed_everything(0)
        model = small_ae()
        results.append(
            fit(
                model,
                *loaders,
                torch.device("cpu"),
                TrainingSettings(3, 16, seed=5),
                progress=False,
            )
        )
        weights.append(model.encoder(torch.ones(2, 1, 28, 28)).detach())
    torch.testing.assert_close(results[1].train_loss, results[0].train_loss, rtol=1e-5, atol=0)
    torch.testing.assert_close(results[1].test_loss, results[0].test_loss, rtol=1e-5, atol=0)
    torch.testing.assert_close(weights[1], weights[0], rtol=1e-4, atol=1e-6)


def test_a_split_needs_a_positive_batch_size_and_takes_batches_of_one():
    split = Split(torch.tensor([[1.0], [3.0]]), torch.zeros(2))

    class Mean(nn.Module):
        def loss(self, x, y=None):
            assert len(x) == 1 or not self.training
            return x.mean()

    assert evaluate(Mean(), split, torch.device("cpu"), batch_size=1) == 2.0
    single = Split(torch.tensor([[3.0]]), torch.zeros(1))
    assert evaluate(Mean(), single, torch.device("cpu"), batch_size=4) == 3.0  # its own loss
    for bad in (0, None):
        with pytest.raises(ValueError) as error:
            evaluate(Mean(), split, torch.device("cpu"), batch_size=bad)
        assert str(error.value) == f"training on a Split needs a positive batch_size, got {bad}"
    with pytest.raises(ValueError, match="batch_size"):
        fit(Spy(), labelled_split(8), labelled_split(4), torch.device("cpu"), TrainingSettings(1))


def test_batches_and_splits_are_moved_to_the_device():
    """The meta device stands in for a GPU: every tensor must arrive there."""
    meta = torch.device("meta")
    moved = training.on_device(Split(torch.zeros(3, 2), torch.zeros(3)), meta)
    assert moved.x.device == meta and moved.y.device == meta
    loader = DataLoader(TensorDataset(torch.zeros(3, 2), torch.zeros(3)), batch_size=2)
    for x, y in training.batches(loader, meta, None, None):
        assert x.device == meta and y.device == meta
    assert training.on_device(loader, meta) is loader  # a loader stays as it is


def test_unlabelled_batches_give_no_labels():
    loader = DataLoader(TensorDataset(torch.arange(3.0)), batch_size=2)  # 1-tuples
    batches = list(training.batches(loader, torch.device("cpu"), None, None))
    assert [(x.tolist(), y) for x, y in batches] == [([0.0, 1.0], None), ([2.0], None)]
