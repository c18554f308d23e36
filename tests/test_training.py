"""The training loop: learning, early stopping, checkpoints, determinism."""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lfxai import training
from lfxai.data.splits import Split
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


# -- device-resident splits -------------------------------------------------------------------


class Spy(nn.Module):
    """A linear model with ``loss(x, y)`` that records every batch it trains on."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.seen: list[torch.Tensor] = []

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen.append(y.clone())
        return ((self.linear(x).squeeze(1) - y.float()) ** 2).mean()


def _split(n: int, seed: int = 0) -> Split:
    x = torch.rand(n, 4, generator=torch.Generator().manual_seed(seed))
    return Split(x, torch.arange(n))


@pytest.mark.parametrize("n, batch_size", [(50, 7), (48, 8)])  # a ragged and an even last batch
def test_split_batches_are_the_dataloaders_for_a_seed(n, batch_size):
    train, test = _split(n), _split(10, seed=1)
    orders = []
    for data in (train.loader(batch_size, shuffle=True, seed=3), train):
        model = Spy()
        fit(
            model,
            data,
            test,
            torch.device("cpu"),
            3,
            patience=0,
            progress=False,
            batch_size=batch_size,
            seed=3,
        )
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
        model = _model()
        results.append(
            fit(model, *loaders, torch.device("cpu"), 3, progress=False, batch_size=16, seed=5)
        )
        weights.append(model.encoder(torch.ones(2, 1, 28, 28)).detach())
    torch.testing.assert_close(results[1].train_loss, results[0].train_loss, rtol=1e-5, atol=0)
    torch.testing.assert_close(results[1].test_loss, results[0].test_loss, rtol=1e-5, atol=0)
    torch.testing.assert_close(weights[1], weights[0], rtol=1e-4, atol=1e-6)


def test_fit_on_a_split_needs_a_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        fit(Spy(), _split(8), _split(4), torch.device("cpu"), 1, progress=False)


def test_checkpoints_hold_cpu_tensors(tmp_path, monkeypatch):
    # A CUDA run cannot be made here, so the state dict is spied on as torch.save sees it.
    saved = []
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f: (saved.append(obj), real_save(obj, f)))
    model = _model()
    fit(
        model,
        _data(32),
        _data(16),
        torch.device("cpu"),
        2,
        checkpoint_every=1,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert len(saved) == 2
    for state in saved:
        assert all(v.device.type == "cpu" and not v.requires_grad for v in state.values())
    loaded = torch.load(model.checkpoints_files[0], map_location=None, weights_only=True)
    assert all(v.device.type == "cpu" for v in loaded.values())


# -- devices and determinism ------------------------------------------------------------------


def test_get_device_cuda_without_cuda_raises(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="cuda"):
        get_device("cuda")
    with pytest.raises(ValueError, match="cuda:1"):
        get_device("cuda:1")
    assert get_device("cpu") == torch.device("cpu")


def _caller_file(function: Callable) -> str:
    """The file a warning with ``stacklevel=2`` from ``function`` names when this test calls it.

    That is this file, unless a decorator wraps ``function`` (mutmut's trampoline does while
    it mutates lfxai): then the wrapper's file is the caller. The trampoline is two frames, so
    under mutmut a stacklevel one too high names it as well: these tests catch that only
    outside mutmut (checked by applying stacklevel=3 by hand).
    """
    return function.__code__.co_filename if hasattr(function, "__wrapped__") else __file__


def test_get_device_auto_warns_when_gpus_exist_that_torch_cannot_use(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.warns(RuntimeWarning, match="falling back to the CPU") as record:
        assert get_device("auto") == torch.device("cpu")
    assert record[0].filename == _caller_file(get_device)  # the caller's line, not lfxai's


def test_get_device_auto_is_silent_without_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(training, "_driver_gpu_count", lambda: 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_device("auto") == torch.device("cpu")


def test_seed_everything_selects_deterministic_kernels(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's own choice stays
    seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_seed_everything_warns_the_caller_when_cuda_started_first(monkeypatch):
    """cuBLAS read the variable already, so setting it can no longer make it deterministic."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.warns(UserWarning, match="CUDA was initialised before seed_everything") as record:
        seed_everything(0)
    assert [w.filename for w in record] == [_caller_file(seed_everything)]
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # still set for new handles


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


# -- why no CUDA: the exact messages a user reads ----------------------------------------------


def _no_cuda(monkeypatch, driver_gpus: int, cuda_version: str | None = "12.4") -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", cuda_version)
    monkeypatch.setattr(training, "_driver_gpu_count", lambda: driver_gpus)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_why_no_cuda_names_the_cause(monkeypatch):
    _no_cuda(monkeypatch, driver_gpus=0, cuda_version=None)
    assert training._why_no_cuda() == (
        f"this torch build ({torch.__version__}) has no CUDA support"
    )
    _no_cuda(monkeypatch, driver_gpus=0)
    assert training._why_no_cuda() == "no CUDA device was found"
    for hidden in ("", " -1 "):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert training._why_no_cuda() == f"CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # a visible GPU: the driver is asked
    assert training._why_no_cuda() == "no CUDA device was found"
    _no_cuda(monkeypatch, driver_gpus=2)
    assert training._why_no_cuda() == (
        f"torch {torch.__version__} (CUDA 12.4) sees 2 GPU(s) but cannot initialise CUDA (is "
        "the driver older than this CUDA version needs? torch's own warning says more)"
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert training._why_no_cuda() == "CUDA is available"


def test_driver_gpu_count_reads_the_driver_only_when_torch_sees_none(monkeypatch, tmp_path):
    gpus = tmp_path / "proc/driver/nvidia/gpus"
    monkeypatch.setattr(training, "Path", lambda path: tmp_path / path.lstrip("/"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert training._driver_gpu_count() == 0  # no driver folder
    gpus.mkdir(parents=True)
    for bus in ("0000:01:00.0", "0000:02:00.0", "0000:03:00.0"):
        (gpus / bus).mkdir()
    assert training._driver_gpu_count() == 3
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # NVML's count wins
    assert training._driver_gpu_count() == 1


def test_get_device_auto_picks_cuda_when_torch_can_use_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device("auto") == torch.device("cuda") and get_device().type == "cuda"


def test_get_device_fallback_warning_names_the_cause_and_the_caller(monkeypatch):
    _no_cuda(monkeypatch, driver_gpus=1)  # one GPU is enough to warn
    with pytest.warns(RuntimeWarning) as record:
        assert get_device("auto") == torch.device("cpu")
    (warning,) = record
    assert str(warning.message) == f"falling back to the CPU: {training._why_no_cuda()}"
    # stacklevel=2: attributed to the caller, not to training.py (an exact frame is not
    # asserted: wrappers, e.g. a mutation tester's, add frames in between).
    assert Path(warning.filename).resolve() != Path(training.__file__).resolve()


def test_get_device_rejects_an_index_past_the_visible_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert get_device("cuda:1") == torch.device("cuda", 1)
    assert get_device("cuda") == torch.device("cuda")
    message = "device 'cuda:2' asked for, but only 2 CUDA device(s) are visible"
    with pytest.raises(ValueError) as error:
        get_device("cuda:2")  # indices count from 0: index 2 is the third device
    assert str(error.value) == message


def test_get_device_cuda_without_cuda_says_why(monkeypatch):
    _no_cuda(monkeypatch, driver_gpus=0)
    with pytest.raises(ValueError) as error:
        get_device("cuda:0")
    assert str(error.value) == "device 'cuda:0' asked for, but no CUDA device was found"


def test_seed_everything_warns_when_cuda_was_initialised_first(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.warns(UserWarning) as record:
        seed_everything(0)
    (warning,) = record
    assert str(warning.message) == (
        "CUDA was initialised before seed_everything set CUBLAS_WORKSPACE_CONFIG; "
        "cuBLAS may not be deterministic in this process"
    )
    assert Path(warning.filename).resolve() != Path(training.__file__).resolve()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


# -- exact rules of the loop that the tests above leave open ------------------------------------


def test_fit_passes_the_optimiser_settings_and_the_models_own_options(monkeypatch):
    calls = []
    real = training.make_optimizer

    def spy(name, params, lr, weight_decay=0.0, **options):
        calls.append((name, lr, weight_decay, options))
        return real(name, params, lr, weight_decay, **options)

    monkeypatch.setattr(training, "make_optimizer", spy)
    model = Scripted([1.0])
    model.optimizer_options = {"eps": 0.25}
    fit(
        model,
        _one_batch(),
        _one_batch(),
        torch.device("cpu"),
        1,
        lr=0.5,
        weight_decay=0.125,
        optimizer="rmsprop",
        progress=False,
    )
    assert calls == [("rmsprop", 0.5, 0.125, {"eps": 0.25})]
    fit(Scripted([1.0]), _one_batch(), _one_batch(), torch.device("cpu"), 1, progress=False)
    assert calls[-1] == ("adam", 1e-3, 1e-5, {})  # the documented defaults


def test_a_models_max_grad_norm_clips_every_step():
    """loss = 10 w: the gradient 10 is clipped to norm 1, so one SGD step moves w by -lr."""

    class Steep(Scripted):
        max_grad_norm = 1.0

        def loss(self, x, y=None):
            return self.w * 10.0 if self.training else torch.tensor(self.script.pop(0))

    model = Steep([1.0])
    fit(
        model,
        _one_batch(),
        _one_batch(),
        torch.device("cpu"),
        1,
        lr=0.5,
        weight_decay=0.0,
        optimizer="sgd",
        progress=False,
    )
    # clip_grad_norm_ scales by max_norm / (norm + 1e-6): a relative change of 1e-7.
    assert abs(model.w.item() + 0.5) <= 0.5 * 2e-7
    unclipped = Scripted([1.0])  # the same loop without the attribute: the full step
    fit(
        unclipped,
        _one_batch(),
        _one_batch(),
        torch.device("cpu"),
        1,
        lr=0.5,
        weight_decay=0.0,
        optimizer="sgd",
        progress=False,
    )
    assert unclipped.w.item() == -0.5


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


def test_checkpoint_files_are_named_by_model_and_epoch_in_a_new_folder(tmp_path):
    folder = tmp_path / "not" / "yet"  # created, parents included
    model = Scripted([3.0, 2.0, 1.0])
    model.checkpoints_files = []
    result = fit(
        model,
        _one_batch(),
        _one_batch(),
        torch.device("cpu"),
        3,
        checkpoint_every=1,
        checkpoint_dir=folder,
        progress=False,
    )
    names = [f"model_checkpoint_{k}.pt" for k in (1, 2, 3)]  # a model without a name
    assert result.checkpoints == [str(folder / name) for name in names]
    assert model.checkpoints_files == result.checkpoints
    assert sorted(p.name for p in folder.iterdir()) == names


def test_a_split_accepts_batches_of_one_and_names_a_bad_batch_size():
    split = Split(torch.tensor([[1.0], [3.0]]), torch.zeros(2))

    class Mean(nn.Module):
        def loss(self, x, y=None):
            assert len(x) == 1
            return x.mean()

    assert evaluate(Mean(), split, torch.device("cpu"), batch_size=1) == 2.0
    for bad in (0, None):
        with pytest.raises(ValueError) as error:
            evaluate(Mean(), split, torch.device("cpu"), batch_size=bad)
        assert str(error.value) == f"training on a Split needs a positive batch_size, got {bad}"


def test_batches_and_splits_are_moved_to_the_device():
    """The meta device stands in for a GPU: every tensor must arrive there."""
    meta = torch.device("meta")
    moved = training._on_device(Split(torch.zeros(3, 2), torch.zeros(3)), meta)
    assert moved.x.device == meta and moved.y.device == meta
    loader = DataLoader(TensorDataset(torch.zeros(3, 2), torch.zeros(3)), batch_size=2)
    for x, y in training._batches(loader, meta, None, None):
        assert x.device == meta and y.device == meta
    assert training._on_device(loader, meta) is loader  # a loader stays as it is


def test_unlabelled_batches_give_no_labels():
    loader = DataLoader(TensorDataset(torch.arange(3.0)), batch_size=2)  # 1-tuples
    batches = list(training._batches(loader, torch.device("cpu"), None, None))
    assert [(x.tolist(), y) for x, y in batches] == [([0.0, 1.0], None), ([2.0], None)]


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
    fit(model, loader, loader, torch.device("cpu"), 1, lr=0.1, weight_decay=0.0, progress=False)
    # One Adam step each, of size lr (the bias-corrected first step is lr * sign(grad)).
    assert abs(model.a.item() + 0.1) <= 1e-7 and abs(model.b.item() + 0.1) <= 1e-7


def test_fit_defaults_patience_ten_seed_zero_and_a_progress_bar(capsys):
    script = [1.0] * 20  # no improvement after epoch 0: 10 stale epochs end training
    result = fit(Scripted(script), _one_batch(), _one_batch(), torch.device("cpu"), 20)
    assert len(result.test_loss) == 11
    assert "train model" in capsys.readouterr().err  # tqdm's bar, named after the model
    orders = []
    for data in (_split(12).loader(5, shuffle=True, seed=0), _split(12)):
        model = Spy()
        fit(model, data, _split(4), torch.device("cpu"), 1, progress=False, batch_size=5)
        orders.append([b.tolist() for b in model.seen])
    assert orders[0] == orders[1]


def test_checkpoints_without_a_folder_is_an_exact_error():
    with pytest.raises(ValueError) as error:
        fit(
            Scripted([1.0]),
            _one_batch(),
            _one_batch(),
            torch.device("cpu"),
            1,
            checkpoint_every=2,
            progress=False,
        )
    assert str(error.value) == "checkpoint_every > 0 needs a checkpoint_dir"


def test_no_finite_test_loss_restores_the_initial_weights():
    """NaN never beats the initial inf: the start weights come back, patience still counts."""
    nan = float("nan")
    model = Scripted([nan, nan, nan, nan])
    result = fit(
        model,
        _one_batch(),
        _one_batch(),
        torch.device("cpu"),
        4,
        lr=0.1,
        patience=2,
        progress=False,
    )
    assert len(result.test_loss) == 2 and result.best_epoch == -1
    assert model.w.item() == 0.0  # trained for 2 epochs, then restored
    untouched = Scripted([])
    assert fit(untouched, _one_batch(), _one_batch(), torch.device("cpu"), 0).test_loss == []
    assert untouched.w.item() == 0.0


def test_progress_false_prints_nothing(capsys):
    fit(Scripted([1.0]), _one_batch(), _one_batch(), torch.device("cpu"), 1, progress=False)
    assert capsys.readouterr().err == ""


def test_the_progress_bar_names_the_model_and_shows_the_losses(capsys):
    model = Scripted([1.0 / 3])
    model.name = "net"
    fit(model, _one_batch(), _one_batch(), torch.device("cpu"), 1)
    err = capsys.readouterr().err
    assert "train net" in err and "test=0.3333, train=0]" in err  # the losses to 4 digits


def test_checkpoints_are_written_after_every_kth_epoch(tmp_path):
    result = fit(
        Scripted([1.0] * 7),
        _one_batch(),
        _one_batch(),
        torch.device("cpu"),
        7,
        checkpoint_every=3,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert [Path(p).name for p in result.checkpoints] == [
        "model_checkpoint_3.pt",
        "model_checkpoint_6.pt",
    ]


def test_an_equal_test_loss_is_no_improvement():
    model = Scripted([2.0, 2.0, 2.0, 2.0])
    weights = []
    result = fit(
        model,
        _one_batch(),
        _one_batch(),
        torch.device("cpu"),
        4,
        lr=0.1,
        patience=2,
        on_epoch=lambda epoch, losses: weights.append(model.w.item()),
        progress=False,
    )
    assert len(result.test_loss) == 3 and result.best_epoch == 0
    assert model.w.item() == weights[0] != weights[-1]  # the first epoch's weights


def test_checkpoint_files_carry_the_models_name(tmp_path):
    model = Scripted([1.0])
    model.name = "net"
    result = fit(
        model,
        _one_batch(),
        _one_batch(),
        torch.device("cpu"),
        1,
        checkpoint_every=1,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    assert result.checkpoints == [str(tmp_path / "net_checkpoint_1.pt")]


def test_the_mean_over_a_single_example_is_its_loss():
    class Mean(nn.Module):
        def loss(self, x, y=None):
            return x.mean()

    split = Split(torch.tensor([[3.0]]), torch.zeros(1))
    assert evaluate(Mean(), split, torch.device("cpu"), batch_size=4) == 3.0
