"""The unfused LSTM: same outputs as the fused kernel, exact per-example gradients and HVPs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lfxai.explanations.examples import recurrent
from lfxai.explanations.examples.per_sample_grads import LossFunctional
from lfxai.models.time_series import RecurrentAutoencoder

SEQ, D = 9, 3


@pytest.fixture()
def model() -> RecurrentAutoencoder:
    torch.manual_seed(0)
    return RecurrentAutoencoder(SEQ, D).eval()


@pytest.mark.parametrize("batch_first", [True, False])
def test_unfused_loop_computes_what_the_fused_lstm_computes(batch_first) -> None:
    torch.manual_seed(1)
    lstm = nn.LSTM(2, 4, batch_first=batch_first)
    x = torch.randn(5, 7, 2) if batch_first else torch.randn(7, 5, 2)
    state = (torch.randn(1, 5, 4), torch.randn(1, 5, 4))
    for args in ((x,), (x, state)):
        fused = lstm(*args)
        with recurrent.unfused_lstms(lstm):
            unfused = lstm(*args)
        # Same float32 operations in another order: a few ulps of values of order 1.
        torch.testing.assert_close(unfused[0], fused[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(unfused[1], fused[1], rtol=0, atol=1e-6)
    assert "forward" not in vars(lstm)  # the fused kernel is back


def _per_example_loop(model, x) -> torch.Tensor:
    rows = []
    for i in range(len(x)):
        grads = torch.autograd.grad(model.loss(x[i : i + 1]), list(model.encoder.parameters()))
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


def test_per_example_gradients_match_a_loop_of_backward_passes(model) -> None:
    x = torch.randn(6, SEQ, 1)
    functional = LossFunctional(model)
    assert functional._recurrent_grads  # the encoder is two LSTMs: the batched path
    params, fixed = functional.split()
    fast = functional.per_example_grads(params, fixed, x, x, chunk_size=4)
    expected = _per_example_loop(model, x)
    # Sums over 9 time steps in another order: float32 rounding of the largest entries.
    torch.testing.assert_close(fast, expected, rtol=1e-4, atol=1e-6 * expected.abs().max())
    # At other weights (a TracIn checkpoint), passed functionally: the model is untouched.
    moved = {k: v + 0.1 for k, v in params.items()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = functional.per_example_grads(moved, fixed, x, x, chunk_size=6)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in moved:
                p.copy_(moved[name])
    expected = _per_example_loop(model, x)
    torch.testing.assert_close(fast, expected, rtol=1e-4, atol=1e-6 * expected.abs().max())
    model.load_state_dict(before)


def test_hessian_vector_products_match_double_backward_of_the_fused_lstm(model) -> None:
    x = torch.randn(5, SEQ, 1)
    functional = LossFunctional(model)
    params, fixed = functional.split()
    vectors = torch.randn(2, functional.n_params(params))
    fast = functional.hvp(params, fixed, x, x, vectors)
    encoder = list(model.encoder.parameters())
    grads = torch.autograd.grad(model.loss(x), encoder, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    for row, v in zip(fast, vectors, strict=True):
        expected = torch.cat(
            [h.reshape(-1) for h in torch.autograd.grad(flat @ v, encoder, retain_graph=True)]
        )
        torch.testing.assert_close(row, expected, rtol=1e-4, atol=1e-5 * expected.abs().max())


def test_other_parameters_keep_the_vmap_path(model) -> None:
    """An explained Linear layer is not an LSTM: per-example gradients come from vmap."""
    functional = LossFunctional(model, params_module=model.decoder)
    assert not functional._recurrent_grads
    x = torch.randn(3, SEQ, 1)
    params, fixed = functional.split()
    grads = functional.per_example_grads(params, fixed, x, x, chunk_size=3)
    rows = []
    for i in range(3):
        g = torch.autograd.grad(model.loss(x[i : i + 1]), list(model.decoder.parameters()))
        rows.append(torch.cat([t.reshape(-1) for t in g]))
    torch.testing.assert_close(grads, torch.stack(rows), rtol=1e-4, atol=1e-7)


def test_the_unfused_lstm_refuses_unbatched_inputs_with_a_clear_message() -> None:
    """``nn.LSTM`` takes an unbatched (T, F) sequence; the unfused loop says it needs a batch."""
    lstm = nn.LSTM(2, 4)
    with recurrent.unfused_lstms(lstm), pytest.raises(ValueError) as error:
        lstm(torch.randn(7, 2))
    assert str(error.value) == "the unfused LSTM needs batched inputs (N, T, F) or (T, N, F)"
    assert "forward" not in vars(lstm)  # the fused kernel is back after the error


class _ScaledLSTM(nn.LSTM):
    """An LSTM subclass with its own forward, which the unfused loop would silently skip."""

    def forward(self, x, state=None):
        return super().forward(2 * x, state)


class _Readout(nn.Module):
    """An LSTM encoder (the explained parameters) and a linear read-out of every step."""

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.encoder = lstm
        width = (lstm.proj_size or lstm.hidden_size) * (2 if lstm.bidirectional else 1)
        self.decoder = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)[0])


# Each breaks exactly one condition of `supported`; the plain one-layer LSTM is the control.
UNSUPPORTED = {
    "subclass": lambda: _ScaledLSTM(1, 3, batch_first=True),
    "two layers": lambda: nn.LSTM(1, 3, num_layers=2, batch_first=True),
    "bidirectional": lambda: nn.LSTM(1, 3, bidirectional=True, batch_first=True),
    "projection": lambda: nn.LSTM(1, 3, proj_size=2, batch_first=True),
    "no biases": lambda: nn.LSTM(1, 3, bias=False, batch_first=True),
}


@pytest.mark.parametrize("kind", list(UNSUPPORTED))
def test_lstms_the_loop_cannot_reproduce_are_refused_by_the_unfused_path(kind) -> None:
    """Any one unsupported feature: no unfused loop, no batched per-example gradients."""
    assert recurrent.supported(nn.LSTM(1, 3, batch_first=True))
    model = _Readout(UNSUPPORTED[kind]()).eval()
    assert not recurrent.supported(model.encoder)
    refusal = "LSTM 'encoder' is not one-layer, one-way with biases"
    with pytest.raises(ValueError, match=refusal), recurrent.unfused_lstms(model):
        pass
    assert "forward" not in vars(model.encoder)
    functional = LossFunctional(model, loss_f=nn.MSELoss())
    assert not recurrent.covered_by_lstms(model, functional.names)
    assert not functional._recurrent_grads


# PyTorch 2.x's vmap cannot batch its LSTM with projections (an in-place op in the native
# kernel), so that case has no per-example gradients to compare.
@pytest.mark.parametrize("kind", [kind for kind in UNSUPPORTED if kind != "projection"])
def test_lstms_the_loop_cannot_reproduce_get_exact_per_example_gradients_by_vmap(kind) -> None:
    torch.manual_seed(3)
    model = _Readout(UNSUPPORTED[kind]()).eval()
    functional = LossFunctional(model, loss_f=nn.MSELoss())
    x = torch.randn(3, 5, 1)
    params, fixed = functional.split()
    grads = functional.per_example_grads(params, fixed, x, x, chunk_size=3)
    rows = []
    for i in range(3):
        loss = nn.functional.mse_loss(model(x[i : i + 1]), x[i : i + 1])
        g = torch.autograd.grad(loss, list(model.encoder.parameters()))
        rows.append(torch.cat([t.reshape(-1) for t in g]))
    expected = torch.stack(rows)
    torch.testing.assert_close(grads, expected, rtol=1e-4, atol=1e-6 * expected.abs().max())


def _reference_grads(lstm: nn.LSTM, loss_of_one, n: int) -> dict[str, torch.Tensor]:
    """Per-example gradients in float64 by a loop of backward passes through ``nn.LSTM``."""
    lstm64 = copy.deepcopy(lstm).double()
    rows = [
        torch.autograd.grad(loss_of_one(lstm64, i), list(lstm64.parameters())) for i in range(n)
    ]
    return {
        f"lstm.{name}": torch.stack([row[k] for row in rows]).float()
        for k, (name, _) in enumerate(lstm64.named_parameters())
    }


def _assert_grads_close(fast: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert list(fast) == list(expected)
    scale = max(g.abs().max() for g in expected.values())
    for name, g in expected.items():
        # float32 sums over a few time steps against a float64 reference.
        torch.testing.assert_close(fast[name], g, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("batch_first", [True, False])
def test_per_example_gradients_start_from_the_given_initial_state(batch_first) -> None:
    """With ``(h0, c0)`` given, the first step's recurrent gradient is ``delta_0 h0^T``."""
    torch.manual_seed(4)
    n, steps = 5, 6
    model = nn.ModuleDict({"lstm": nn.LSTM(2, 4, batch_first=batch_first)})
    lstm = model["lstm"]
    x, target = torch.randn(n, steps, 2), torch.randn(n, steps, 4)
    h0, c0 = torch.randn(1, n, 4), torch.randn(1, n, 4)

    def seq(t: torch.Tensor) -> torch.Tensor:  # (N, T, .) in the LSTM's layout
        return t if batch_first else t.transpose(0, 1)

    def summed(records):
        with recurrent.unfused_lstms(model, records):
            out, (_, c) = lstm(seq(x), (h0, c0))
        return ((out - seq(target)) ** 2).sum() + (c**2).sum()

    def loss_of_one(lstm64: nn.LSTM, i: int) -> torch.Tensor:
        state = (h0[:, i : i + 1].double(), c0[:, i : i + 1].double())
        out, (_, c) = lstm64(seq(x[i : i + 1].double()), state)
        return ((out - seq(target[i : i + 1].double())) ** 2).sum() + (c**2).sum()

    names = [f"lstm.{name}" for name, _ in lstm.named_parameters()]
    fast = recurrent.per_example_lstm_grads(summed, names, {"lstm": lstm})
    _assert_grads_close(fast, _reference_grads(lstm, loss_of_one, n))


def test_an_lstm_called_twice_adds_up_the_gradients_of_both_calls() -> None:
    """A sequence fed in two pieces (the second from the first's state) gets the gradients of
    one pass over the whole sequence: each call contributes its own sum over time steps."""
    torch.manual_seed(5)
    n, steps = 4, 7
    model = nn.ModuleDict({"lstm": nn.LSTM(2, 3, batch_first=True)})
    lstm = model["lstm"]
    x, target = torch.randn(n, steps, 2), torch.randn(n, steps, 3)

    def summed(records):
        with recurrent.unfused_lstms(model, records):
            head, state = lstm(x[:, :3])
            tail, _ = lstm(x[:, 3:], state)
        assert len(records["lstm"]) == 2
        return ((torch.cat([head, tail], dim=1) - target) ** 2).sum()

    def loss_of_one(lstm64: nn.LSTM, i: int) -> torch.Tensor:
        out, _ = lstm64(x[i : i + 1].double())
        return ((out - target[i : i + 1].double()) ** 2).sum()

    names = [f"lstm.{name}" for name, _ in lstm.named_parameters()]
    fast = recurrent.per_example_lstm_grads(summed, names, {"lstm": lstm})
    _assert_grads_close(fast, _reference_grads(lstm, loss_of_one, n))


def test_the_unbind_stack_has_torch_stacks_values_and_derivatives_to_second_order() -> None:
    """Same values as ``torch.stack``; its first and second derivatives pass autograd's
    float64 finite-difference checks (the Hessian-vector products go through both)."""
    gen = torch.Generator().manual_seed(0)
    parts = [
        torch.randn(3, 2, generator=gen, dtype=torch.float64).requires_grad_() for _ in range(4)
    ]
    for dim in (0, 1, 2):
        stacked = recurrent._StackUnbind.apply(dim, *parts)
        assert torch.equal(stacked, torch.stack(parts, dim))

        def cubed(*tensors, dim=dim):  # nonlinear, so the second derivatives are not zero
            return recurrent._StackUnbind.apply(dim, *tensors) ** 3

        assert torch.autograd.gradcheck(cubed, parts)
        assert torch.autograd.gradgradcheck(cubed, parts)
