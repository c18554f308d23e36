"""The training loop: learning, early stopping, checkpoints, determinism."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lfxai import training
from lfxai.data.splits import Split
from lfxai.models.images import AutoEncoderMnist, DecoderMnist, EncoderMnist
from lfxai.models.pretext import GaussianNoise
from lfxai.training import fit, get_device, seed_everything


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


def test_early_stopping_stops_after_patience():
    seed_everything(0)
    model = _model()
    # lr=0: the test loss never improves after the first epoch
    result = fit(
        model,
        _data(),
        _data(32),
        torch.device("cpu"),
        n_epochs=20,
        lr=0.0,
        patience=2,
        progress=False,
    )
    assert len(result.test_loss) == 3 and result.best_epoch == 0


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


def test_get_device_auto_warns_when_gpus_exist_that_torch_cannot_use(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.warns(RuntimeWarning, match="falling back to the CPU"):
        assert get_device("auto") == torch.device("cpu")


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
