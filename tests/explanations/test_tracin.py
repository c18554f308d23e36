"""TracIn's own rules: where its checkpoints come from, how they are loaded, what users see."""

from __future__ import annotations

import pickle

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
    explainer = TracIn(
        model, nn.MSELoss(), X_train=x_train, progress=False, checkpoints=[checkpoint]
    )
    return explainer.attribute(x_test, None)


# Where the checkpoints come from -------------------------------------------------------------


def test_constructor_checkpoints_come_before_the_models() -> None:
    model = LinearAE()
    own, given = (_scaled_state(model, scale) for scale in (0.5, 2.0))
    model.checkpoints_files = [own]
    x_train, x_test = _data()
    explainer = TracIn(model, nn.MSELoss(), X_train=x_train, checkpoints=[given], progress=False)
    expected = _scores(model, given)
    assert not torch.equal(expected, _scores(model, own))  # the two sources are told apart
    assert torch.equal(explainer.attribute(x_test), expected)
    default = TracIn(model, nn.MSELoss(), X_train=x_train, progress=False)
    assert torch.equal(default.attribute(x_test), _scores(model, own))  # the model's own list
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
    states = [_scaled_state(model, 1.0)] * 3
    explainer = TracIn(
        model,
        nn.MSELoss(),
        X_train=x_train,
        progress=False,
        checkpoints=states,
        learning_rate=[0.1, 0.2],
    )
    with pytest.raises(ValueError) as error:
        explainer.attribute(x_test)
    assert str(error.value) == "2 learning rates for 3 checkpoints"


# How checkpoint files are loaded --------------------------------------------------------------


def test_a_checkpoint_saved_on_a_gpu_this_machine_lacks_loads_on_the_models_device(
    tmp_path, monkeypatch
) -> None:
    """Train on a GPU, explain elsewhere: files load straight onto the model's device.

    The file is tagged as saved on ``cuda:999``, a GPU no machine has, so loading it where it
    was saved fails everywhere (no CUDA, or too few GPUs).
    """
    model = LinearAE()
    state = _scaled_state(model, 2.0)
    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:999")
        torch.save(state, tmp_path / "gpu.pt")
    assert torch.equal(_scores(model, tmp_path / "gpu.pt"), _scores(model, state))


class _RunsCode:
    """Unpickles by calling ``_record``: what a malicious checkpoint would do."""

    ran: list[str] = []

    def __reduce__(self) -> tuple:
        return _record, ("unpickled",)


def _record(message: str) -> torch.Tensor:
    _RunsCode.ran.append(message)
    return torch.zeros(2, 4)  # the shape of encoder.weight: loading it would then succeed


@pytest.mark.parametrize("env", [None, "1"])
def test_checkpoint_files_are_loaded_as_weights_only(tmp_path, monkeypatch, env) -> None:
    """No code in a checkpoint runs, even where the environment relaxes torch.load's default."""
    monkeypatch.delenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", raising=False)
    if env is None:
        monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)
    else:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", env)
    monkeypatch.setattr(_RunsCode, "ran", [])
    model = LinearAE()
    torch.save({**_scaled_state(model, 1.0), "encoder.weight": _RunsCode()}, tmp_path / "bad.pt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        _scores(model, tmp_path / "bad.pt")
    assert _RunsCode.ran == []


# Devices ------------------------------------------------------------------------------------


def test_scores_are_built_on_the_models_device_not_torchs_default() -> None:
    """E.g. ``torch.set_default_device("cuda")`` with a CPU model (meta stands in for CUDA)."""
    model = LinearAE()
    x_train, x_test = _data()
    state = _scaled_state(model, 2.0)
    explainer = TracIn(model, nn.MSELoss(), X_train=x_train, checkpoints=[state], progress=False)
    expected = explainer.attribute(x_test)
    with torch.device("meta"):
        assert torch.equal(explainer.attribute(x_test), expected)


def test_everything_moves_to_the_models_device(tmp_path) -> None:
    """CPU checkpoints (in memory and files) explain a model on another device.

    A model on the meta device stands in for a GPU on a CPU-only machine; meta tensors hold
    no data, so this calls ``_attribute``, which ``attribute`` ends with a copy to the CPU.
    """
    model = LinearAE()
    state = _scaled_state(model, 2.0)
    torch.save(state, tmp_path / "cpu.pt")
    model = model.to("meta")
    x_train, x_test = (x.to("meta") for x in _data())
    explainer = TracIn(
        model, nn.MSELoss(), progress=False, checkpoints=[state, tmp_path / "cpu.pt"]
    )
    scores = explainer._attribute(x_train, None, x_test, None)
    assert scores.device == torch.device("meta") and scores.shape == (N_TEST, N_TRAIN)


# Progress bar -------------------------------------------------------------------------------


def test_the_progress_bar_names_tracin_leaves_no_trace_and_obeys_progress(capsys) -> None:
    model = LinearAE()
    x_train, x_test = _data()
    states = [_scaled_state(model, 1.0), _scaled_state(model, 2.0)]
    TracIn(model, nn.MSELoss(), X_train=x_train, checkpoints=states).attribute(x_test)
    err = capsys.readouterr().err
    assert err.startswith("\rTracIn checkpoints:   0%|")  # shown by default
    assert "| 0/2 [" in err  # counts the checkpoints
    assert "\n" not in err and err.split("\r")[-2].isspace()  # leave=False: the line is blanked
    TracIn(model, nn.MSELoss(), X_train=x_train, progress=False, checkpoints=states).attribute(
        x_test
    )
    assert capsys.readouterr().err == ""
