"""LossFunctional: which loss is differentiated, per-example gradients, HVPs and the LSTM path.

References are computed independently in float64: a Python loop of ``torch.autograd.grad``
over single examples for per-example gradients, ``torch.func.hessian`` (or a double backward
through the fused ``nn.LSTM``) for Hessian-vector products. The functional runs in float64 as
well, so the two sides differ only by the order of a few float64 sums.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

from lfxai.explanations.examples import per_sample_grads, recurrent
from lfxai.explanations.examples.per_sample_grads import (
    LossFunctional,
    flatten,
    model_device,
    unflatten,
)
from lfxai.models.autoencoder import TrainableModel
from lfxai.models.time_series import RecurrentAutoencoder

SEQ, D = 5, 2


def _assert_close64(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float64 rounding: both sides add the same O(1) terms in another order, a
    few ulps (~1e-16) of the largest entry; 1e-10 of it leaves a margin of about 10^5."""
    actual, expected = actual.detach(), expected.detach()
    assert actual.dtype == expected.dtype == torch.float64
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10 * scale)


def _loop_grads(loss_of_one, params: list[torch.Tensor], n: int) -> torch.Tensor:
    """Per-example gradients ``(n, P)``: one backward pass per example."""
    rows = [
        torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss_of_one(i), params)])
        for i in range(n)
    ]
    return torch.stack(rows)


class _Classifier(TrainableModel):
    """A supervised model: its own ``target`` is ``"label"`` and its loss needs labels."""

    target = "label"

    def __init__(self) -> None:
        super().__init__(criterion=nn.CrossEntropyLoss())
        self.net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _SemiSupervised(TrainableModel):
    """An autoencoder whose loss adds a label term when it is given labels.

    Explained with the input target, only its unsupervised part may be differentiated.
    """

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 2), nn.Tanh())
        self.decoder = nn.Linear(2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        unsupervised = nn.functional.mse_loss(self(x), x)
        return unsupervised if y is None else unsupervised + self.encoder(x).sum()


class _MLP(nn.Module):
    """A model without a ``loss`` method: explained through a given ``loss_f``."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(3, 2), nn.Tanh())
        self.decoder = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class _OneLSTM(nn.Module):
    """An LSTM encoder (the explained parameters, the model's only LSTM) and a read-out."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.LSTM(1, 3, batch_first=True)
        self.decoder = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)[0])


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# Which loss is differentiated --------------------------------------------------------------


def test_a_label_model_is_explained_by_its_own_loss_against_the_labels() -> None:
    """With no target given, the model's own ``target = "label"`` applies: the explained loss
    is the model's cross-entropy against each example's label. Without an encoder, every
    parameter of the model is explained."""
    torch.manual_seed(0)
    model = _Classifier().double().eval()
    x = torch.randn(5, 4, generator=_generator(1), dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 2, 0])
    functional = LossFunctional(model)
    assert functional.target == "label"
    assert functional.names == [name for name, _ in model.named_parameters()]
    t = functional.targets(x, y)
    assert t is y
    params, fixed = functional.split()
    grads = functional.per_example_grads(params, fixed, x, t, chunk_size=5)

    def loss_of_one(i: int) -> torch.Tensor:
        return nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1])

    _assert_close64(grads, _loop_grads(loss_of_one, list(model.parameters()), 5))


def test_the_input_target_calls_the_models_own_loss_without_labels() -> None:
    """``target="input"`` differentiates ``model.loss(x, None)``: a loss that would use labels
    (here the examples themselves, the input target's ``t``) never receives them."""
    torch.manual_seed(0)
    model = _SemiSupervised().double().eval()
    x = torch.randn(4, 4, generator=_generator(2), dtype=torch.float64)
    functional = LossFunctional(model)
    assert functional.target == "input"
    params, fixed = functional.split()
    t = functional.targets(x, torch.tensor([0, 1, 0, 1]))
    assert t is x
    grads = functional.per_example_grads(params, fixed, x, t, chunk_size=4)

    def loss_of_one(i: int) -> torch.Tensor:
        return model.loss(x[i : i + 1])

    _assert_close64(grads, _loop_grads(loss_of_one, list(model.encoder.parameters()), 4))


def test_an_unknown_target_is_refused_with_the_allowed_names() -> None:
    with pytest.raises(ValueError) as error:
        LossFunctional(_MLP(), nn.MSELoss(), target="labels")
    assert str(error.value) == "target must be one of ('input', 'label'), got 'labels'"


def test_a_model_without_its_own_loss_needs_loss_f() -> None:
    """Not an AttributeError from deep inside: the message names the model and the fix."""
    with pytest.raises(ValueError) as error:
        LossFunctional(_MLP())
    assert str(error.value) == "_MLP has no loss(x, y): pass loss_f"


@pytest.mark.parametrize("explained", ["parameter-free", "foreign"])
def test_an_explained_module_without_parameters_of_the_model_is_refused(explained: str) -> None:
    """A parameter-free submodule, or a module that is not part of the model, leaves nothing
    to differentiate: refused at construction, not as an empty gradient later."""
    model = _MLP()
    module = model.encoder[1] if explained == "parameter-free" else nn.Linear(3, 2)
    with pytest.raises(ValueError) as error:
        LossFunctional(model, nn.MSELoss(), params_module=module)
    assert str(error.value) == "the explained module has no parameters"


def test_the_label_target_without_labels_is_refused() -> None:
    functional = LossFunctional(_MLP(), nn.MSELoss(), target="label")
    with pytest.raises(ValueError) as error:
        functional.targets(torch.zeros(2, 3), None)
    assert str(error.value) == "target='label' needs labels"


def test_the_model_device_is_its_first_parameters_and_the_cpu_without_parameters() -> None:
    """Every explainer creates its tensors there. The meta device stands in for an
    accelerator: any device but the CPU tells "the parameters' device" from "the CPU"."""
    assert model_device(nn.Linear(2, 2, device="meta")) == torch.device("meta")
    assert model_device(nn.Sequential(nn.Tanh(), nn.ReLU())) == torch.device("cpu")


# Per-example gradients ---------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 50])
def test_per_example_gradients_are_exact_for_any_chunk_size(chunk_size: int) -> None:
    """One row per example, in order, whether the chunks divide the batch or not."""
    torch.manual_seed(0)
    model = _MLP().double().eval()
    x = torch.randn(7, 3, generator=_generator(3), dtype=torch.float64)
    functional = LossFunctional(model, nn.MSELoss())
    params, fixed = functional.split()
    grads = functional.per_example_grads(params, fixed, x, x, chunk_size)

    def loss_of_one(i: int) -> torch.Tensor:
        return nn.functional.mse_loss(model(x[i : i + 1]), x[i : i + 1])

    _assert_close64(grads, _loop_grads(loss_of_one, list(model.encoder.parameters()), 7))


@pytest.mark.parametrize("kind", ["vmap", "lstm"])
def test_an_empty_batch_has_no_gradient_rows(kind: str) -> None:
    """Zero examples give a ``(0, P)`` matrix on either path (e.g. an empty ``train_idx``)."""
    torch.manual_seed(0)
    if kind == "vmap":
        model, x = _MLP().eval(), torch.zeros(0, 3)
        functional = LossFunctional(model, nn.MSELoss())
    else:
        model, x = RecurrentAutoencoder(SEQ, D).eval(), torch.zeros(0, SEQ, 1)
        functional = LossFunctional(model)
    params, fixed = functional.split()
    grads = functional.per_example_grads(params, fixed, x, x, chunk_size=4)
    assert grads.shape == (0, functional.n_params(params))
    assert grads.dtype == x.dtype


# Hessian-vector products -------------------------------------------------------------------


@pytest.mark.parametrize(("chunk_size", "calls"), [(None, 1), (1, 5), (2, 3), (5, 1)])
def test_hvps_are_vmapped_in_chunks_of_chunk_size(monkeypatch, chunk_size, calls) -> None:
    """``chunk_size`` bounds memory: the K=5 vectors go through the vmapped pullback in
    ceil(K / chunk_size) batches (one without it), and every row is H v exactly."""
    torch.manual_seed(0)
    model = _MLP().double().eval()
    x = torch.randn(6, 3, generator=_generator(4), dtype=torch.float64)
    functional = LossFunctional(model, nn.MSELoss())
    params, fixed = functional.split()
    p = functional.n_params(params)
    vectors = torch.randn(5, p, generator=_generator(5), dtype=torch.float64)

    def loss_of_flat(flat: torch.Tensor) -> torch.Tensor:  # the other weights stay the model's
        return nn.functional.mse_loss(functional_call(model, unflatten(flat, params), (x,)), x)

    expected = vectors @ hessian(loss_of_flat)(flatten(params))  # H is symmetric
    batches: list[torch.Size] = []
    real_unflatten = per_sample_grads.unflatten

    def spy(vector: torch.Tensor, like):
        batches.append(vector.shape)  # called once per vmapped batch of vectors
        return real_unflatten(vector, like)

    monkeypatch.setattr(per_sample_grads, "unflatten", spy)
    products = functional.hvp(params, fixed, x, x, vectors, chunk_size=chunk_size)
    assert len(batches) == calls
    _assert_close64(products, expected)


def test_no_vectors_give_no_hvps_through_lstms() -> None:
    """K = 0 vectors: a ``(0, P)`` result, not an error from stacking nothing."""
    torch.manual_seed(0)
    model = RecurrentAutoencoder(SEQ, D).eval()
    functional = LossFunctional(model)
    params, fixed = functional.split()
    x = torch.randn(3, SEQ, 1, generator=_generator(6))
    vectors = torch.zeros(0, functional.n_params(params))
    products = functional.hvp(params, fixed, x, x, vectors)
    assert products.shape == (0, functional.n_params(params))


# The LSTM path: which LSTMs run as unfused loops -------------------------------------------


def _spy_unfused(monkeypatch, model: nn.Module) -> list[tuple[str, bool]]:
    """Records ``(LSTM name, recorded?)`` each time an LSTM runs as the unfused loop."""
    names = {id(m): name for name, m in model.named_modules()}
    calls: list[tuple[str, bool]] = []
    real = recurrent._unfused

    def spy(module, record, x, state=None):
        calls.append((names[id(module)], record is not None))
        return real(module, record, x, state)

    monkeypatch.setattr(recurrent, "_unfused", spy)
    return calls


def test_per_example_gradients_unfuse_only_the_explained_lstms(monkeypatch) -> None:
    """The encoder's LSTMs run as recorded loops (their per-step deltas give the exact
    per-example gradients); the decoder's keep their fused kernel, which is faster and
    enough for first derivatives."""
    torch.manual_seed(0)
    model = RecurrentAutoencoder(SEQ, D).double().eval()
    x = torch.randn(4, SEQ, 1, generator=_generator(7), dtype=torch.float64)
    functional = LossFunctional(model)
    params, fixed = functional.split()
    calls = _spy_unfused(monkeypatch, model)
    grads = functional.per_example_grads(params, fixed, x, x, chunk_size=4)
    assert sorted(calls) == [("encoder.rnn1", True), ("encoder.rnn2", True)]

    def loss_of_one(i: int) -> torch.Tensor:
        return model.loss(x[i : i + 1])

    _assert_close64(grads, _loop_grads(loss_of_one, list(model.encoder.parameters()), 4))


def test_a_models_only_lstm_when_explained_takes_the_batched_lstm_path(monkeypatch) -> None:
    """Explained parameters that are exactly all the LSTM parameters of the model are covered
    by the LSTMs: the gradients come from one recorded loop, not from vmap."""
    torch.manual_seed(0)
    model = _OneLSTM().double().eval()
    x = torch.randn(4, SEQ, 1, generator=_generator(8), dtype=torch.float64)
    functional = LossFunctional(model, nn.MSELoss())
    assert set(functional.names) == {f"encoder.{n}" for n, _ in model.encoder.named_parameters()}
    params, fixed = functional.split()
    calls = _spy_unfused(monkeypatch, model)
    grads = functional.per_example_grads(params, fixed, x, x, chunk_size=4)
    assert calls == [("encoder", True)]

    def loss_of_one(i: int) -> torch.Tensor:
        return nn.functional.mse_loss(model(x[i : i + 1]), x[i : i + 1])

    _assert_close64(grads, _loop_grads(loss_of_one, list(model.encoder.parameters()), 4))


def test_hvps_run_every_lstm_as_the_unfused_loop(monkeypatch) -> None:
    """Second derivatives go through every LSTM, explained or not: all of them run as the
    unfused loop (cuDNN has no double backward; oneDNN's is very slow), unrecorded."""
    torch.manual_seed(0)
    model = RecurrentAutoencoder(SEQ, D).double().eval()
    x = torch.randn(3, SEQ, 1, generator=_generator(9), dtype=torch.float64)
    functional = LossFunctional(model)
    params, fixed = functional.split()
    vectors = torch.randn(2, functional.n_params(params), generator=_generator(10))
    vectors = vectors.double()
    calls = _spy_unfused(monkeypatch, model)
    products = functional.hvp(params, fixed, x, x, vectors)
    lstms = ["decoder.rnn1", "decoder.rnn2", "encoder.rnn1", "encoder.rnn2"]
    assert sorted(calls) == [(name, False) for name in lstms]

    # Reference: double backward through the fused nn.LSTM of an untouched copy.
    reference = copy.deepcopy(model)
    encoder = list(reference.encoder.parameters())
    grads = torch.autograd.grad(reference.loss(x), encoder, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    expected = torch.stack(
        [
            torch.cat(
                [h.reshape(-1) for h in torch.autograd.grad(flat @ v, encoder, retain_graph=True)]
            )
            for v in vectors
        ]
    )
    _assert_close64(products, expected)
