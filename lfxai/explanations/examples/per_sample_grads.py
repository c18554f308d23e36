"""Vectorised per-example gradients and batched Hessian-vector products of a model's loss.

Everything is functional (``torch.func``): the parameters that are differentiated (by default
those of ``model.encoder``) are passed explicitly, the other parameters and the buffers are
held fixed, and the model runs in eval mode, so BatchNorm uses its running statistics and a
pretext perturbation is off. Nothing is written to disk and every tensor stays on the device
of the parameters.

References:
    Horace He, Richard Zou. functorch: JAX-like composable function transforms for PyTorch (2021).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call, grad, vjp, vmap

from lfxai.explanations.examples import recurrent
from lfxai.explanations.examples.code_hvp import MIN_VECTORS, CodeSplit

Params = dict[str, torch.Tensor]
TARGETS = ("input", "label")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Puts every submodule in eval mode and restores each one's own flag afterwards."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a parameter-free model)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


class _ModelLoss(nn.Module):
    """``model.loss(x, y)`` as a module call, so ``functional_call`` can swap its weights."""

    def __init__(self, model: nn.Module, target: str) -> None:
        super().__init__()
        self.model, self.target = model, target

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model.loss(x, t if self.target == "label" else None)


def _is_cuda(device: torch.device) -> bool:
    return device.type == "cuda"


def cudnn_blocks_rnn_grads(model: nn.Module, device: torch.device | None = None) -> bool:
    """Whether differentiating ``model`` would hit cuDNN's RNN kernels.

    cuDNN's RNN backward refuses to run in eval mode (where every explainer puts the model)
    and has no double backward (influence functions' Hessian-vector products), and
    ``torch.func`` has no batching rule for it.

    Args:
        model: the module that is differentiated.
        device: where it runs (default: the device of its first parameter).
    """
    device = model_device(model) if device is None else torch.device(device)
    return _is_cuda(device) and any(isinstance(m, nn.RNNBase) for m in model.modules())


@contextmanager
def rnn_differentiable(model: nn.Module, device: torch.device | None = None) -> Iterator[None]:
    """Disables cuDNN inside the block when ``model`` has an RNN that runs on CUDA.

    PyTorch then runs the RNNs with its native kernels, built from ordinary matrix products
    that support eval-mode backward, double backward and ``vmap``. The cost: those RNNs are
    several times slower than with cuDNN (convolutions in the same model lose cuDNN too);
    models without RNNs and CPU runs are left untouched.

    Args:
        model: the module that is differentiated.
        device: where it runs (default: the device of its first parameter).
    """
    if cudnn_blocks_rnn_grads(model, device):
        with torch.backends.cudnn.flags(enabled=False):
            yield
    else:
        yield


class LossFunctional:
    """The model's training loss as a pure function of the explained parameters.

    Args:
        model: the whole model (e.g. an autoencoder), called as ``model(x)``.
        loss_f: criterion with mean reduction called as ``loss_f(model(x), target)``; None
            (the default) differentiates the model's own ``loss(x, y)``, the function it was
            trained with (see :class:`lfxai.models.autoencoder.TrainableModel`).
        target: ``"input"`` (reconstruction: the target is ``x``) or ``"label"`` (the target
            is the label ``y``, e.g. cross-entropy for a classifier); None takes the model's
            own ``target`` attribute (``"input"`` when it has none).
        params_module: the submodule whose parameters are differentiated; defaults to
            ``model.encoder`` (or the model itself when it has no encoder).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        target: str | None = None,
        params_module: nn.Module | None = None,
    ) -> None:
        target = target if target is not None else getattr(model, "target", "input")
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        if loss_f is None and not callable(getattr(model, "loss", None)):
            raise ValueError(f"{type(model).__name__} has no loss(x, y): pass loss_f")
        self.model, self.loss_f, self.target = model, loss_f, target
        self._own_loss = _ModelLoss(model, target) if loss_f is None else None
        module = params_module if params_module is not None else getattr(model, "encoder", model)
        ids = {id(p) for p in module.parameters()}
        self.names = [name for name, p in model.named_parameters() if id(p) in ids]
        if not self.names:
            raise ValueError("the explained module has no parameters")
        # LSTMs run unfused inside the explainers (see `recurrent`); when they own every
        # explained parameter, per-example gradients come from one batched backward.
        self._lstms = recurrent.lstm_modules(model)
        self._recurrent_grads = recurrent.covered_by_lstms(model, self.names)
        # Many vectors at once: the Hessian split at the explained module's output (code_hvp).
        self._code_split = CodeSplit(model, module, self.names, self.batch_loss)

    def _unfused(self, records=None):
        """The context in which the model's LSTMs (if any) run as unfused time loops.

        With ``records`` only the recorded LSTMs are swapped (first derivatives only).
        """
        if not self._lstms:
            return contextlib.nullcontext()
        return recurrent.unfused_lstms(self.model, records, only_recorded=records is not None)

    def split(self, state: Mapping[str, torch.Tensor] | None = None) -> tuple[Params, Params]:
        """``(explained params, fixed tensors)`` from a state dict (default: the model's own)."""
        if state is None:
            state = {**dict(self.model.named_parameters()), **dict(self.model.named_buffers())}
        params = {name: state[name].detach() for name in self.names}
        fixed = {k: v.detach() for k, v in state.items() if k not in params}
        return params, fixed

    def targets(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The loss target of each example: the input itself or its label."""
        if self.target == "input":
            return x
        if y is None:
            raise ValueError("target='label' needs labels")
        return y

    def batch_loss(self, params: Params, fixed: Params, x: torch.Tensor, t: torch.Tensor):
        """Mean loss of a batch ``x (B, ...)`` against targets ``t (B, ...)``: a scalar."""
        if self._own_loss is not None:  # the wrapper holds the model as its submodule `model`
            state = {f"model.{k}": v for k, v in {**params, **fixed}.items()}
            return functional_call(self._own_loss, state, (x, t))
        return self.loss_f(functional_call(self.model, {**params, **fixed}, (x,)), t)

    def per_example_grads(
        self, params: Params, fixed: Params, x: torch.Tensor, t: torch.Tensor, chunk_size: int
    ) -> torch.Tensor:
        """Flattened gradient of each example's own loss, shape ``(N, P)``.

        ``vmap(grad)`` over whole chunks: small vmap chunks cost several times more here.
        When LSTMs own every explained parameter, one batched backward per chunk instead
        (``recurrent.per_example_lstm_grads``): the batch's mean loss times N is the sum of
        the examples' own losses, each depending on its example alone (eval mode).
        """
        if self._recurrent_grads:
            return self._lstm_grads(params, fixed, x, t, chunk_size)

        def one(p: Params, xi: torch.Tensor, ti: torch.Tensor) -> torch.Tensor:
            return self.batch_loss(p, fixed, xi.unsqueeze(0), ti.unsqueeze(0))

        per_example = vmap(grad(one), in_dims=(None, 0, 0))
        rows = []
        for start in range(0, len(x), chunk_size):
            stop = start + chunk_size
            rows.append(
                flatten(per_example(params, x[start:stop], t[start:stop]), len(x[start:stop]))
            )
        return torch.cat(rows) if rows else x.new_zeros((0, self.n_params(params)))

    def _lstm_grads(self, params, fixed, x, t, chunk_size: int) -> torch.Tensor:
        rows = []
        for start in range(0, len(x), chunk_size):
            xc, tc = x[start : start + chunk_size], t[start : start + chunk_size]

            def summed(records, xc=xc, tc=tc):
                live = {k: v.detach().requires_grad_() for k, v in params.items()}
                with self._unfused(records):
                    return self.batch_loss(live, fixed, xc, tc) * len(xc)

            grads = recurrent.per_example_lstm_grads(summed, self.names, self._lstms)
            rows.append(flatten(grads, len(xc)))
        return torch.cat(rows) if rows else x.new_zeros((0, self.n_params(params)))

    def hvp(
        self,
        params: Params,
        fixed: Params,
        x: torch.Tensor,
        t: torch.Tensor,
        vectors: torch.Tensor,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        """Hessian of the batch's mean loss times each row of ``vectors (K, P)``: ``(K, P)``.

        One product with :meth:`hessian`'s operator (see there).
        """
        return self.hessian(params, fixed, x, t)(vectors, chunk_size)

    def hessian(
        self, params: Params, fixed: Params, x: torch.Tensor, t: torch.Tensor
    ) -> Callable[[torch.Tensor, int | None], torch.Tensor]:
        """The Hessian of the batch's mean loss as an operator ``(vectors (K, P), chunk_size)
        -> (K, P)`` whose graph is built once and reused by every call.

        Reverse-over-reverse: one forward and backward pass builds the gradient's graph, whose
        pullback is vmapped over the K vectors (the primal passes are shared). It measured as
        fast as forward-over-reverse here and, unlike it, also runs through oneDNN LSTMs.
        When the first call has ``code_hvp.MIN_VECTORS`` vectors or more, the Hessian is split
        at the explained module's output if the model allows it (:mod:`code_hvp`, the same
        products up to rounding): only the encoder's part is then vmapped. Through LSTMs,
        plain autograd with one backward per vector (:meth:`_lstm_hessian`).
        """
        if self._lstms:
            return self._lstm_hessian(params, fixed, x, t)
        built: list = []  # (pullback, split), made by the first call

        def loss(p: Params) -> torch.Tensor:
            return self.batch_loss(p, fixed, x, t)

        def product(vectors: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
            if not built:
                split = None
                if len(vectors) >= MIN_VECTORS:
                    split = self._code_split.prepare(params, fixed, x, t)
                _, pullback = vjp(grad(loss if split is None else split.linear), params)
                built.append((pullback, split))
            pullback, split = built[0]
            products = vmap(
                lambda v: flatten(pullback(unflatten(v, params))[0]), chunk_size=chunk_size
            )(vectors)
            return products if split is None else products + split.gauss_newton(vectors)

        return product

    def _lstm_hessian(self, params, fixed, x, t) -> Callable[..., torch.Tensor]:
        """HVPs through unfused LSTMs with plain autograd, one backward per vector.

        Fused LSTM kernels have no (fast) double backward, and vmap over the unfused loop
        pays its per-operation cost on every one of the ~10^4 operations of 140 steps (14 s
        for one product on 8 sequences); the double-backward graph is built here, once, and
        each vector costs one backward through it (the graph is kept while the operator is).
        """
        live = {k: v.detach().requires_grad_() for k, v in params.items()}
        with self._unfused():
            loss = self.batch_loss(live, fixed, x, t)
        inputs = list(live.values())

        def named(tensors) -> Params:
            return dict(zip(live, tensors, strict=True))

        first = flatten(named(torch.autograd.grad(loss, inputs, create_graph=True)))

        def product(vectors: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
            rows = [
                flatten(named(torch.autograd.grad(first, inputs, v, retain_graph=True)))
                for v in vectors
            ]
            return torch.stack(rows) if rows else vectors.new_zeros(vectors.shape)

        return product

    @staticmethod
    def n_params(params: Params) -> int:
        """Total number of explained parameters P."""
        return sum(p.numel() for p in params.values())


def flatten(tensors: Params, batch: int | None = None) -> torch.Tensor:
    """Concatenates a dict of tensors into ``(P,)``, or ``(batch, P)`` when batched."""
    if batch is None:
        return torch.cat([v.reshape(-1) for v in tensors.values()])
    return torch.cat([v.reshape(batch, -1) for v in tensors.values()], dim=1)


def unflatten(vector: torch.Tensor, like: Params) -> Params:
    """Splits ``vector (P,)`` into views shaped like the tensors of ``like``."""
    out, start = {}, 0
    for name, ref in like.items():
        out[name] = vector[start : start + ref.numel()].view(ref.shape)
        start += ref.numel()
    return out
