"""The training loop: learning, early stopping, checkpoints, determinism."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from lfxai.models.images import AutoEncoderMnist, DecoderMnist, EncoderMnist
from lfxai.models.pretext import GaussianNoise
from lfxai.training import fit, seed_everything


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
