"""TracIn's own rules: where its checkpoints come from, how they are loaded, what users see."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lfxai.explanations.examples import TracIn
from lfxai.explanations.examples.tracin import Checkpoint

N_TRAIN, N_TEST = 5, 3


class LinearAE(nn.Module):
    """A linear autoencoder for 4-dimensional inputs."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Linear(4, 2)
        self.decoder = nn.Linear(2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(N_TRAIN, 4, generator=gen), torch.rand(N_TEST, 4, generator=gen)


def _scaled_state(model: nn.Module, scale: float) -> dict[str, torch.Tensor]:
    """The model's weights times ``scale``: a checkpoint with its own, distinct scores."""
    return {k: scale * v.detach().clone() for k, v in model.state_dict().items()}


def _scores(model: nn.Module, checkpoint: Checkpoint) -> torch.Tensor:
    """TracIn's scores of ``_data()`` from one checkpoint."""
    x_train, x_test = _data()
    explainer = TracIn(model, nn.MSELoss(), X_train=x_train, progress=False)
    return explainer.attribute(x_test, None, checkpoints=[checkpoint])


# Where the checkpoints come from -------------------------------------------------------------


def test_constructor_checkpoints_come_before_the_models_and_after_the_calls() -> None:
    model = LinearAE()
    own, given, called = (_scaled_state(model, scale) for scale in (0.5, 2.0, 3.0))
    model.checkpoints_files = [own]
    x_train, x_test = _data()
    explainer = TracIn(model, nn.MSELoss(), X_train=x_train, checkpoints=[given], progress=False)
    expected = _scores(model, given)
    assert not torch.equal(expected, _scores(model, own))  # the two sources are told apart
    assert torch.equal(explainer.attribute(x_test), expected)
    assert torch.equal(explainer.attribute(x_test, checkpoints=[called]), _scores(model, called))
    model.checkpoints_files = []  # the constructor's list alone suffices
    assert torch.equal(explainer.attribute(x_test), expected)


def test_no_checkpoint_anywhere_is_an_exact_error() -> None:
    x_train, x_test = _data()
    with pytest.raises(ValueError) as error:
        TracIn(LinearAE(), nn.MSELoss(), X_train=x_train, progress=False).attribute(x_test)
    assert str(error.value) == "TracIn needs checkpoints: train with checkpoint_every > 0"


def test_one_learning_rate_per_checkpoint_or_an_exact_error() -> None:
    model = LinearAE()
    x_train, x_test = _data()
    explainer = TracIn(model, nn.MSELoss(), X_train=x_train, progress=False)
    states = [_scaled_state(model, 1.0)] * 3
    with pytest.raises(ValueError) as error:
        explainer.attribute(x_test, checkpoints=states, learning_rate=[0.1, 0.2])
    assert str(error.value) == "2 learning rates for 3 checkpoints"
