"""cuDNN is switched off around gradient computations through RNNs on CUDA, and only then.

No GPU here: the one fact that differs on a GPU machine, "the model runs on CUDA", is faked
by patching ``per_sample_grads._is_cuda``. Detecting the RNN, entering the context and
restoring the flag are the real code; a forward hook on each recurrent module records the
cuDNN flag that PyTorch consulted when it ran.
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import Saliency
from torch import nn

from lfxai.explanations.examples import InfluenceFunctions, TracIn, per_sample_grads
from lfxai.explanations.features import attribute_auxiliary, attribute_individual_dim


class LSTMAE(nn.Module):
    """Sequence autoencoder: LSTM encoder to a code, code repeated over time, linear decoder."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = _LastState()
        self.decoder = nn.Linear(2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)[:, None, :].repeat(1, x.shape[1], 1))


class _LastState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[1][0][-1]


class MLPAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(5, 2))
        self.decoder = nn.Sequential(nn.Linear(2, 5), nn.Unflatten(1, (5, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def _spy(model: nn.Module, kinds: tuple[type, ...]) -> list[bool]:
    """Records ``torch.backends.cudnn.enabled`` at every forward of the given module types."""
    seen: list[bool] = []
    for module in model.modules():
        if isinstance(module, kinds):
            module.register_forward_hook(lambda *_: seen.append(torch.backends.cudnn.enabled))
    return seen


def _explainers(model: nn.Module, x: torch.Tensor):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    yield (
        "lissa",
        lambda: InfluenceFunctions(
            model, nn.MSELoss(), progress=False, recursion_depth=2, hvp_batch_size=3
        ).attribute_loader("cpu", [(x,)], [(x[:2],)]),
    )
    yield (
        "arnoldi",
        lambda: InfluenceFunctions(
            model,
            nn.MSELoss(),
            progress=False,
            influence_method="arnoldi",
            arnoldi_iter=3,
            arnoldi_rank=2,
        ).attribute_loader("cpu", [(x,)], [(x[:2],)]),
    )
    yield (
        "tracin",
        lambda: TracIn(
            model, nn.MSELoss(), progress=False, checkpoints=[state], learning_rate=0.1
        ).attribute_loader("cpu", [(x,)], [(x[:2],)]),
    )
    yield (
        "features",
        lambda: attribute_auxiliary(
            model.encoder, [(x,)], torch.device("cpu"), Saliency(model.encoder), progress=False
        ),
    )
    yield (
        "individual_dim",
        lambda: attribute_individual_dim(
            model.encoder, 2, [(x,)], torch.device("cpu"), Saliency(model.encoder), progress=False
        ),
    )


def _sequences() -> torch.Tensor:
    return torch.rand(6, 5, 1, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("call", ["lissa", "arnoldi", "tracin", "features", "individual_dim"])
def test_cudnn_is_off_while_an_rnn_on_cuda_is_differentiated(call, monkeypatch):
    monkeypatch.setattr(per_sample_grads, "_is_cuda", lambda device: True)
    torch.manual_seed(0)
    model = LSTMAE()
    run = dict(_explainers(model, _sequences()))[call]
    seen = _spy(model, (nn.LSTM,))
    assert torch.backends.cudnn.enabled
    run()
    assert seen and not any(seen)
    assert torch.backends.cudnn.enabled  # restored afterwards


@pytest.mark.parametrize("call", ["lissa", "tracin", "features"])
def test_cudnn_stays_on_without_an_rnn(call, monkeypatch):
    monkeypatch.setattr(per_sample_grads, "_is_cuda", lambda device: True)
    torch.manual_seed(0)
    model = MLPAE()
    run = dict(_explainers(model, _sequences()))[call]
    seen = _spy(model, (nn.Linear,))
    run()
    assert seen and all(seen)


def test_cudnn_stays_on_for_an_rnn_on_the_cpu():
    torch.manual_seed(0)
    model = LSTMAE()
    run = dict(_explainers(model, _sequences()))["tracin"]
    seen = _spy(model, (nn.LSTM,))
    run()
    assert seen and all(seen)


def test_the_decision_needs_both_an_rnn_and_cuda():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert per_sample_grads.cudnn_blocks_rnn_grads(LSTMAE(), cuda)
    assert per_sample_grads.cudnn_blocks_rnn_grads(nn.Sequential(nn.GRU(1, 2)), cuda)
    assert not per_sample_grads.cudnn_blocks_rnn_grads(LSTMAE(), cpu)
    assert not per_sample_grads.cudnn_blocks_rnn_grads(MLPAE(), cuda)
    assert not per_sample_grads.cudnn_blocks_rnn_grads(LSTMAE())  # its parameters: CPU
