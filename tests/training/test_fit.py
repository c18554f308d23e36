"""The training loop: learning, early stopping, the best epoch, losses, optimisers, progress."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lfxai import training
from lfxai.data.splits import Split
from lfxai.devices import seed_everything
from lfxai.models.autoencoder import AutoEncoder
from lfxai.models.pretext import make_pretext
from lfxai.training import TrainingSettings, evaluate, fit, make_optimizer, make_schedule
from tests.training.helpers import (
    Scripted,
    Spy,
    fit_one_batch,
    labelled_split,
    mnist_like,
    one_batch,
    small_ae,
)


def test_fit_learns_restores_best_and_writes_checkpoints(tmp_path):
    seed_everything(0)
    model = small_ae()
    seen = []
    result = fit(
        model,
        mnist_like(),
        mnist_like(32),
        torch.device("cpu"),
        TrainingSettings(n_epochs=4, checkpoint_every=2),
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


def test_early_stopping_stops_after_patience():
    """``patience`` epochs in a row without a strictly lower test loss end training."""
    # epoch:  0  1  2 (equal: no gain)  3 (gain: the count restarts)  4  5 -> stop
    script = [5.0, 4.0, 4.0, 3.5, 6.0, 7.0, 1.0, 1.0]
    result = fit_one_batch(Scripted(script), n_epochs=8, patience=2)
    assert result.test_loss == script[:6]
    assert (result.best_epoch, result.best_test_loss) == (3, 3.5)


def test_patience_zero_trains_every_epoch():
    script = [3.0, 4.0, 5.0, 6.0]
    result = fit_one_batch(Scripted(script), n_epochs=4, patience=0)
    assert result.test_loss == [3.0, 4.0, 5.0, 6.0] and result.best_epoch == 0


def test_an_equal_test_loss_is_no_improvement():
    model = Scripted([2.0, 2.0, 2.0, 2.0])
    weights = []

    def on_epoch(epoch: int, losses: dict[str, float]) -> None:
        weights.append(model.w.item())

    result = fit_one_batch(model, 4, lr=0.1, patience=2, on_epoch=on_epoch)
    assert len(result.test_loss) == 3 and result.best_epoch == 0
    assert model.w.item() == weights[0] != weights[-1]  # the first epoch's weights


def test_fit_restores_the_weights_of_the_best_epoch_not_the_last():
    model = Scripted([4.0, 2.0, 3.0, 5.0])
    weights = []

    def on_epoch(epoch: int, losses: dict[str, float]) -> None:
        weights.append(model.w.item())

    result = fit_one_batch(model, n_epochs=4, lr=0.1, patience=0, on_epoch=on_epoch)
    assert len(set(weights)) == 4  # every epoch moved the weight
    assert result.best_epoch == 1 and model.w.item() == weights[1] != weights[-1]
    assert not model.training


def test_no_finite_test_loss_restores_the_initial_weights():
    """NaN never beats the initial inf: the start weights come back, patience still counts."""
    nan = float("nan")
    model = Scripted([nan, nan, nan, nan])
    result = fit_one_batch(model, 4, lr=0.1, patience=2)
    assert len(result.test_loss) == 2 and result.best_epoch == -1
    assert model.w.item() == 0.0  # trained for 2 epochs, then restored
    untouched = Scripted([])
    assert (
        fit(untouched, one_batch(), one_batch(), torch.device("cpu"), TrainingSettings(0)).test_loss
        == []
    )
    assert untouched.w.item() == 0.0


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
    settings = TrainingSettings(n_epochs=1, lr=0.0)
    result = fit(model, loader, loader, torch.device("cpu"), settings, progress=False)
    assert result.train_loss == [4.0] and result.test_loss == [4.0]  # exact in binary
    assert model.modes == [True, True, False, False]  # trained in train mode, tested in eval
    model.train()
    assert evaluate(model, loader, torch.device("cpu")) == 4.0 and not model.training
    assert evaluate(model, [], torch.device("cpu")) == 0.0  # no batches: no division by 0


def test_losses_are_summed_in_float64():
    """Losses 2^24 and 1: float32 would round the sum 2^24 + 1 down; the mean is exact."""

    class Mean(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def loss(self, x, y=None):
            return x.mean() + 0 * self.w

    x = torch.tensor([[2.0**24], [1.0]])
    loader = DataLoader(TensorDataset(x, torch.zeros(2)), batch_size=1)
    assert evaluate(Mean(), loader, torch.device("cpu")) == (2**24 + 1) / 2
    split = Split(x, torch.zeros(2))
    assert evaluate(Mean(), split, torch.device("cpu"), batch_size=1) == (2**24 + 1) / 2


def test_sgd_momentum_and_cosine_schedule_step_once_per_epoch():
    """fit's updates equal SGD(momentum 0.9) stepped per batch, the schedule per epoch."""
    n_epochs, lr = 3, 0.5
    model = Scripted([1.0] * n_epochs)
    loader = DataLoader(TensorDataset(torch.zeros(4, 1), torch.zeros(4)), batch_size=2)
    trace = []
    fit(
        model,
        loader,
        one_batch(),
        torch.device("cpu"),
        TrainingSettings(
            n_epochs, lr=lr, weight_decay=0.0, optimizer="sgd", lr_schedule="cosine", patience=0
        ),
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


def test_fit_passes_the_optimiser_settings_and_the_models_own_options(monkeypatch):
    calls = []
    real = training.make_optimizer

    def spy(name, params, lr, weight_decay=0.0, **options):
        calls.append((name, lr, weight_decay, options))
        return real(name, params, lr, weight_decay, **options)

    monkeypatch.setattr(training, "make_optimizer", spy)
    model = Scripted([1.0])
    model.optimizer_options = {"eps": 0.25}
    fit_one_batch(model, 1, lr=0.5, weight_decay=0.125, optimizer="rmsprop")
    assert calls == [("rmsprop", 0.5, 0.125, {"eps": 0.25})]
    fit_one_batch(Scripted([1.0]), 1)
    assert calls[-1] == ("adam", 1e-3, 1e-5, {})  # the documented defaults


def test_a_models_max_grad_norm_clips_every_step():
    """loss = 10 w: the gradient 10 is clipped to norm 1, so one SGD step moves w by -lr."""

    class Steep(Scripted):
        max_grad_norm = 1.0

        def loss(self, x, y=None):
            return self.w * 10.0 if self.training else torch.tensor(self.script.pop(0))

    model = Steep([1.0])
    fit_one_batch(model, 1, lr=0.5, weight_decay=0.0, optimizer="sgd")
    # clip_grad_norm_ scales by max_norm / (norm + 1e-6): a relative change of 1e-7.
    assert abs(model.w.item() + 0.5) <= 0.5 * 2e-7
    unclipped = Scripted([1.0])  # the same loop without the attribute: the full step
    fit_one_batch(unclipped, 1, lr=0.5, weight_decay=0.0, optimizer="sgd")
    assert unclipped.w.item() == -0.5


def test_a_parameter_without_gradient_in_a_step_is_not_stepped():
    """Gradients are reset to None, not 0: Adam's momentum must not move an unused weight."""

    class Alternating(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Parameter(torch.zeros(())), nn.Parameter(torch.zeros(()))

        def loss(self, x, y=None):
            if not self.training:
                return x.sum() * 0
            return self.a * 1.0 if x.sum() > 0 else self.b * 1.0

    x = torch.tensor([[1.0], [0.0]])  # batch 1 trains a only, batch 2 b only
    model = Alternating()
    loader = DataLoader(TensorDataset(x, torch.zeros(2)), batch_size=1)
    settings = TrainingSettings(1, lr=0.1, weight_decay=0.0)
    fit(model, loader, loader, torch.device("cpu"), settings, progress=False)
    # One Adam step each, of size lr (the bias-corrected first step is lr * sign(grad)).
    assert abs(model.a.item() + 0.1) <= 1e-7 and abs(model.b.item() + 0.1) <= 1e-7


def test_fit_is_deterministic_on_cpu():
    runs = []
    for _ in range(2):
        seed_everything(7)
        model = small_ae()
        fit(
            model,
            mnist_like(),
            mnist_like(32),
            torch.device("cpu"),
            TrainingSettings(2),
            progress=False,
        )
        runs.append(model.encoder(torch.ones(2, 1, 28, 28)).detach())
    assert torch.equal(runs[0], runs[1])


def test_pretext_noise_only_while_training():
    model = small_ae().eval()
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
    settings = TrainingSettings(n_epochs=1, lr=0.0)
    result = fit(model, loader, loader, torch.device("cpu"), settings, progress=False)
    (train_mode, train_input), (eval_mode, eval_input) = seen
    assert train_mode and torch.equal(train_input, torch.zeros_like(x))
    assert not eval_mode and torch.equal(eval_input, x)
    # Train: MSE(0, x) = mean(k^2 / 4) = 374 / 16, exact in float32 (every partial sum is a
    # multiple of 1/4 far below 2^22); test: MSE(x, x) = 0.
    assert result.train_loss == [374 / 16] and result.test_loss == [0.0]


def test_fit_defaults_patience_ten_seed_zero_and_a_progress_bar(capsys):
    script = [1.0] * 20  # no improvement after epoch 0: 10 stale epochs end training
    result = fit(
        Scripted(script), one_batch(), one_batch(), torch.device("cpu"), TrainingSettings(20)
    )
    assert len(result.test_loss) == 11
    assert "train model" in capsys.readouterr().err  # tqdm's bar, named after the model
    orders = []
    for data in (labelled_split(12).loader(5, shuffle=True, seed=0), labelled_split(12)):
        model = Spy()
        fit(
            model,
            data,
            labelled_split(4),
            torch.device("cpu"),
            TrainingSettings(1, 5),
            progress=False,
        )
        orders.append([b.tolist() for b in model.seen])
    assert orders[0] == orders[1]


def test_progress_false_prints_nothing(capsys):
    fit_one_batch(Scripted([1.0]), 1)
    assert capsys.readouterr().err == ""


def test_the_progress_bar_names_the_model_and_shows_the_losses(capsys):
    model = Scripted([1.0 / 3])
    model.name = "net"
    fit(model, one_batch(), one_batch(), torch.device("cpu"), TrainingSettings(1))
    err = capsys.readouterr().err
    assert "train net" in err and "test=0.3333, train=0]" in err  # the losses to 4 digits
