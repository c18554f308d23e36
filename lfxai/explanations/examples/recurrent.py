"""Per-example gradients and Hessian-vector products through LSTMs, fast on any device.

PyTorch's fused LSTM kernels (oneDNN on the CPU, cuDNN on CUDA) have no vmap batching rule, so
``vmap(grad)`` falls back to a loop over examples (about 160 ms per example for the ECG5000
encoder, d=64, 140 steps, on 2 CPU cores), their double backward is slow on the CPU (16 s for
one Hessian-vector product over 200 sequences) and cuDNN has none at all. Here every LSTM of
the model runs as an unfused time loop of ordinary tensor operations (its ``forward`` is
swapped for the loop within a context), which

- differentiates twice on any device, so influence functions work through LSTMs (and cuDNN
  is never asked for a backward in eval mode);
- exposes each step's gate pre-activations ``z_t``: one batched backward of the summed loss
  gives ``delta_t = dL_n / dz_t`` for every example n at once, and the per-example weight
  gradients are then exact contractions over time, e.g. ``dL_n/dW_hh = sum_t delta_t h_{t-1}^T``
  (the "hooks" way of per-sample gradients, as Opacus does for linear layers).

The unfused loop computes what ``nn.LSTM`` computes (gates i, f, g, o; a test checks the
outputs and the gradients against the fused kernel and against ``vmap(grad)``).

References:
    Hochreiter & Schmidhuber. Long Short-Term Memory. Neural Computation 1997.
    Goodfellow. Efficient Per-Example Gradient Computations. arXiv 1510.01799 (2015).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn


def supported(module: nn.Module) -> bool:
    """Whether the unfused loop reproduces ``module``: a one-layer, one-way LSTM with biases."""
    return (
        type(module) is nn.LSTM
        and module.num_layers == 1
        and not module.bidirectional
        and module.proj_size == 0
        and module.bias
    )


@dataclass
class _Record:
    """What one LSTM call saw: its inputs, previous hidden states and gate pre-activations."""

    inputs: torch.Tensor  # (N, T, F)
    previous: torch.Tensor  # (N, T, H): h_{t-1}, zeros (or the given state) at t = 0
    gates: list[torch.Tensor] = field(default_factory=list)  # T tensors (N, 4H)


class _StackUnbind(torch.autograd.Function):
    """``torch.stack(tensors, dim)`` whose backward is ``unbind``: the same values.

    ``torch.stack`` differentiates into one ``select`` per slice; differentiating those
    selects again (the double backward of a Hessian-vector product) builds a zero tensor of
    the whole stacked output per slice and adds them up, T times per LSTM. The derivative of
    ``unbind`` is one ``stack``. One Hessian-vector product through the ECG5000 autoencoder
    (d=64, 50 sequences of 140 steps) allocated 1.45 instead of 2.61 GiB (420 full-size zero
    fills fewer; torch.profiler), and the products are bitwise the same.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(dim: int, *tensors: torch.Tensor) -> torch.Tensor:
        return torch.stack(tensors, dim)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.dim = inputs[0]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return (None, *grad.unbind(ctx.dim))


def _unfused(
    module: nn.LSTM,
    record: list[_Record] | None,
    x: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor] | None = None,
):
    """``module(x, state)`` as a time loop; appends a :class:`_Record` when ``record`` is a list."""
    if x.dim() != 3:
        raise ValueError("the unfused LSTM needs batched inputs (N, T, F) or (T, N, F)")
    if not module.batch_first:
        x = x.transpose(0, 1)
    n, hidden = x.shape[0], module.hidden_size
    h = x.new_zeros(n, hidden) if state is None else state[0][0]
    c = x.new_zeros(n, hidden) if state is None else state[1][0]
    # All input projections in one matmul; only the recurrent part is sequential. `unbind`,
    # not `projected[:, t]`: the backward of each slice would fill a zero tensor of the
    # whole (N, T, 4H) projection, T times (it made the backward 10x slower than forward).
    projected = x @ module.weight_ih_l0.T + (module.bias_ih_l0 + module.bias_hh_l0)
    outputs, gates = [], []
    for step in projected.unbind(dim=1):
        z = step + h @ module.weight_hh_l0.T
        gates.append(z)
        i, f, g, o = z.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    out = _StackUnbind.apply(1, *outputs)
    if record is not None:
        first = x.new_zeros(n, 1, hidden) if state is None else state[0][0].unsqueeze(1)
        previous = torch.cat([first, out[:, :-1]], dim=1)
        record.append(_Record(x.detach(), previous.detach(), gates))
    if not module.batch_first:
        out = out.transpose(0, 1)
    return out, (h.unsqueeze(0), c.unsqueeze(0))


@contextmanager
def unfused_lstms(
    model: nn.Module,
    records: dict[str, list[_Record]] | None = None,
    only_recorded: bool = False,
) -> Iterator[None]:
    """Within the context, the LSTMs of ``model`` run as the unfused loop.

    Args:
        model: any module; its LSTMs are found by ``named_modules``.
        records: if given, ``records[name]`` collects a :class:`_Record` per call of the LSTM
            named ``name`` (only the names present as keys are recorded).
        only_recorded: swap only the recorded LSTMs; the others keep their fused kernel
            (enough for first derivatives, and faster).
    """
    swapped = []
    for name, module in lstm_modules(model).items():
        if only_recorded and (records is None or name not in records):
            continue  # stays fused: fast when it needs no per-step gradients
        if not supported(module):
            raise ValueError(f"LSTM {name!r} is not one-layer, one-way with biases")
        log = None if records is None else records.get(name)
        # An instance attribute shadows the class's forward; deleting it restores the fused one.
        module.forward = functools.partial(_unfused, module, log)
        swapped.append(module)
    try:
        yield
    finally:
        for module in swapped:
            del module.forward


def lstm_modules(model: nn.Module) -> dict[str, nn.LSTM]:
    """The LSTMs of ``model`` by qualified name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.LSTM)}


def covered_by_lstms(model: nn.Module, names: list[str]) -> bool:
    """Whether every parameter name in ``names`` belongs to a supported LSTM of ``model``."""
    lstms = lstm_modules(model)
    if not lstms or not all(supported(m) for m in lstms.values()):
        return False
    owned = {f"{prefix}.{p}" for prefix, m in lstms.items() for p, _ in m.named_parameters()}
    return set(names) <= owned


def per_example_lstm_grads(
    summed_loss, names: list[str], lstms: dict[str, nn.LSTM]
) -> dict[str, torch.Tensor]:
    """Per-example gradients ``{param name: (N, *shape)}`` of the explained LSTM parameters.

    Args:
        summed_loss: callable ``records -> scalar``: runs the model under
            :func:`unfused_lstms` with ``records`` and returns the SUM over examples of their
            losses (each example's loss depends on that example alone: eval mode).
        names: the explained parameter names, all owned by ``lstms``.
        lstms: the LSTM modules owning them, by qualified name.
    """
    owners = sorted({name.rsplit(".", 1)[0] for name in names})
    records: dict[str, list[_Record]] = {owner: [] for owner in owners}
    loss = summed_loss(records)
    flat = [z for owner in owners for rec in records[owner] for z in rec.gates]
    deltas = iter(torch.autograd.grad(loss, flat))
    out: dict[str, torch.Tensor] = {}
    for owner in owners:
        grads: dict[str, torch.Tensor] = {}
        for rec in records[owner]:  # an LSTM called several times adds up its calls
            delta = torch.stack([next(deltas) for _ in rec.gates], dim=1)  # (N, T, 4H)
            bias = delta.sum(dim=1)
            parts = {
                "weight_ih_l0": torch.einsum("ntg,nti->ngi", delta, rec.inputs),
                "weight_hh_l0": torch.einsum("ntg,nth->ngh", delta, rec.previous),
                "bias_ih_l0": bias,
                "bias_hh_l0": bias,
            }
            for key, value in parts.items():
                grads[key] = grads[key] + value if key in grads else value
        for key, value in grads.items():
            out[f"{owner}.{key}"] = value
    return {name: out[name] for name in names}
