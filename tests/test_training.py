"""The training loop: learning, early stopping, checkpoints, determinism."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lfxai.models.autoencoder import AutoEncoder
from lfxai.models.images import AutoEncoderMnist, DecoderMnist, EncoderMnist
from lfxai.models.pretext import GaussianNoise, make_pretext
from lfxai.training import (
    evaluate,
    fit,
    get_device,
    make_optimizer,
    make_schedule,
    seed_everything,
)


def _data(n: int = 64) -> DataLoader:
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x, torch.zeros(n, dtype=torch.long)), batch_size=16)


def _model() -> AutoEncoderMnist:
    return AutoEncoderMnist(EncoderMnist(3), DecoderMnist(3), 3, GaussianNoise(0.3), name="t")


def test_fit_learns_restores_best_and_writes_checkpoints(tmp_path):
    seed_everything(0)
    model = _model()
    seen = []
    result = fit(
        model,
        _data(),
        _data(32),
        torch.device("cpu"),
        n_epochs=4,
        checkpoint_every=2,
        checkpoint_dir=tmp_path,
        on_epoch=lambda e, m: seen.append((e, sorted(m))),
        progress=False,
    )
    assert result.train_loss[-1] < result.train_loss[0]
    assert seen == [(e, ["test_loss", "train_loss"]) for e in range(4)]
    assert [p.rsplit("_", 1)[-1] for p in model.checkpoints_files] == ["2.pt", "4.pt"]
    assert model.lr == 1e-3 and not model.training
    state = torch.load(model.checkpoints_files[-1], weights_only=True)
    assert set(state) == set(model.state_dict())


class Scripted(nn.Module):
    """One weight ``w``; the training loss is ``w`` and the k-th evaluation returns script[k].

    The test losses are exact numbers, so early stopping and the choice of the best epoch
    are decided by the rule under test alone (no float noise, no BatchNorm drift).
    """

    def __init__(self, script: list[float]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.script = list(script)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.training:
            return self.w * 1.0
        return torch.tensor(self.script.pop(0))


def _one_batch(n: int = 4) -> DataLoader:
    return DataLoader(TensorDataset(torch.zeros(n, 1), torch.zeros(n)), batch_size=n)


def test_early_stopping_stops_after_patience():
    """``patience`` epochs in a row without a strictly lower test loss end training."""
    # epoch:  0  1  2 (equal: no gain)  3 (gain: the count restarts)  4  5 -> stop
    script = [5.0, 4.0, 4.0, 3.5, 6.0, 7.0, 1.0, 1.0]
    result = fit(
        Scripted(script),
        _one_batch(),
        _one_batch(),
        torch.device("cpu"),
        n_epochs=8,
        patience=2,
        progress=False,
    )
    assert result.test_loss == script[:6]
    assert (result.best_epoch, result.best_test_loss) == (3, 3.5)


def test_patience_zero_trains_every_epoch():
    script = [3.0, 4.0, 5.0, 6.0]
    result = fit(
        Scripted(script),
        _one_batch(),
        _one_batch(),
        torch.device("cpu"),
        n_epochs=4,
        patience=0,
        progress=False,
    )
    assert result.test_loss == [3.0, 4.0, 5.0, 6.0] and result.best_epoch == 0


def test_fit_restores_the_weights_of_the_best_epoch_not_the_last():
    model = Scripted([4.0, 2.0, 3.0, 5.0])
    weights = []
    result = fit(
        model,
        _one_batch(),
        _one_batch(),
        torch.device("cpu"),
        n_epochs=4,
        lr=0.1,
        patience=0,
        on_epoch=lambda epoch, losses: weights.append(model.w.item()),
        progress=False,
    )
    assert len(set(weights)) == 4  # every epoch moved the weight
    assert result.best_epoch == 1 and model.w.item() == weights[1] != weights[-1]
    assert not model.training


def test_train_loss_is_the_sample_weighted_mean_over_batches():
    """Batches of 3 and 1 examples with losses 2 and 10 average to (3*2 + 10) / 4 = 4."""

    class Mean(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))
            self.modes: list[bool] = []

        def loss(self, x, y=None):
            self.modes.append(self.training)
            return x.mean() + 0 * self.w

    x = torch.tensor([[2.0], [2.0], [2.0], [10.0]])
    loader = DataLoader(TensorDataset(x, torch.zeros(4)), batch_size=3)
    model = Mean()
    result = fit(model, loader, loader, torch.device("cpu"), n_epochs=1, lr=0.0, progress=False)
    assert result.train_loss == [4.0] and result.test_loss == [4.0]  # exact in binary
    assert model.modes == [True, True, False, False]  # trained in train mode, tested in eval
    model.train()
    assert evaluate(model, loader, torch.device("cpu")) == 4.0 and not model.training
    assert evaluate(model, [], torch.device("cpu")) == 0.0  # no batches: no division by 0


def test_sgd_momentum_and_cosine_schedule_step_once_per_epoch():
    """fit's updates equal SGD(momentum 0.9) stepped per batch, the schedule per epoch."""
    n_epochs, lr = 3, 0.5
    model = Scripted([1.0] * n_epochs)
    loader = DataLoader(TensorDataset(torch.zeros(4, 1), torch.zeros(4)), batch_size=2)
    trace = []
    fit(
        model,
        loader,
        _one_batch(),
        torch.device("cpu"),
        n_epochs=n_epochs,
        lr=lr,
        weight_decay=0.0,
        optimizer="sgd",
        lr_schedule="cosine",
        patience=0,
        on_epoch=lambda epoch, losses: trace.append(model.w.item()),
        progress=False,
    )
    # The same updates by hand: identical operations, so identical floats.
    w = nn.Parameter(torch.zeros(()))
    optimizer = torch.optim.SGD([w], lr=lr, momentum=0.9)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_epochs)
    expected = []
    for _ in range(n_epochs):
        for _ in range(2):  # two batches per epoch
            optimizer.zero_grad()
            (w * 1.0).backward()
            optimizer.step()
        schedule.step()
        expected.append(w.item())
    assert trace == expected


def test_optimizers_and_schedules_by_name():
    params = [nn.Parameter(torch.zeros(2))]
    sgd = make_optimizer("sgd", params, lr=0.5, weight_decay=0.1)
    assert type(sgd) is torch.optim.SGD
    assert {k: sgd.defaults[k] for k in ("lr", "momentum", "weight_decay")} == {
        "lr": 0.5,
        "momentum": 0.9,
        "weight_decay": 0.1,
    }
    rms = make_optimizer("rmsprop", params, lr=0.01)
    assert type(rms) is torch.optim.RMSprop and rms.defaults["momentum"] == 0.9
    adam = make_optimizer("adam", params, lr=0.02)
    assert type(adam) is torch.optim.Adam and adam.defaults["weight_decay"] == 0.0
    with pytest.raises(ValueError, match=r"unknown optimizer 'adagrad'.*'adam', 'rmsprop'"):
        make_optimizer("adagrad", params, lr=0.1)
    assert make_schedule("constant", adam, 10) is None
    cosine = make_schedule("cosine", adam, 10)
    assert type(cosine) is torch.optim.lr_scheduler.CosineAnnealingLR and cosine.T_max == 10
    assert make_schedule("cosine", sgd, 0).T_max == 1  # no division by zero epochs
    with pytest.raises(ValueError, match=r"unknown lr_schedule 'step'.*'constant', 'cosine'"):
        make_schedule("step", adam, 10)


def test_checkpoints_need_a_folder():
    with pytest.raises(ValueError, match="checkpoint_every > 0 needs a checkpoint_dir"):
        fit(
            Scripted([1.0]),
            _one_batch(),
            _one_batch(),
            torch.device("cpu"),
            n_epochs=1,
            checkpoint_every=1,
            progress=False,
        )


def test_get_device():
    assert get_device("cpu") == torch.device("cpu")
    assert get_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert get_device("auto") == get_device()


def test_seed_everything_seeds_every_generator():
    generator = seed_everything(11)
    first = (
        random.random(),
        np.random.rand(),
        torch.rand(()).item(),
        torch.rand((), generator=generator).item(),
    )
    generator = seed_everything(11)
    again = (
        random.random(),
        np.random.rand(),
        torch.rand(()).item(),
        torch.rand((), generator=generator).item(),
    )
    assert first == again
    assert torch.rand((), generator=seed_everything(12)).item() != first[3]


def test_fit_is_deterministic_on_cpu():
    runs = []
    for _ in range(2):
        seed_everything(7)
        model = _model()
        fit(model, _data(), _data(32), torch.device("cpu"), n_epochs=2, progress=False)
        runs.append(model.encoder(torch.ones(2, 1, 28, 28)).detach())
    assert torch.equal(runs[0], runs[1])


def test_pretext_noise_only_while_training():
    model = _model().eval()
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(model(x), model(x))


def test_training_sees_perturbed_inputs_and_is_scored_against_clean_ones():
    """Inpainting with p=1 blanks every training input; the loss still targets the clean x."""
    seen: list[tuple[bool, torch.Tensor]] = []

    class Spy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, x):
            seen.append((self.training, x.clone()))
            return x * self.scale

    model = AutoEncoder(Spy(), nn.Identity(), 1, make_pretext("inpainting"), name="spy")
    model.input_pert.mask_proportion = 1.0
    x = torch.arange(1, 17, dtype=torch.float32).view(4, 1, 2, 2) / 2  # k/2: exact squares
    loader = DataLoader(TensorDataset(x, torch.zeros(4)), batch_size=4)
    result = fit(model, loader, loader, torch.device("cpu"), n_epochs=1, lr=0.0, progress=False)
    (train_mode, train_input), (eval_mode, eval_input) = seen
    assert train_mode and torch.equal(train_input, torch.zeros_like(x))
    assert not eval_mode and torch.equal(eval_input, x)
    # Train: MSE(0, x) = mean(k^2 / 4) = 374 / 16, exact in float32 (every partial sum is a
    # multiple of 1/4 far below 2^22); test: MSE(x, x) = 0.
    assert result.train_loss == [374 / 16] and result.test_loss == [0.0]
