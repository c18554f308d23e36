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

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call, grad, vjp, vmap

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
        loss_f: criterion with mean reduction called as ``loss_f(model(x), target)``.
        target: ``"input"`` (reconstruction: the target is ``x``) or ``"label"`` (the target
            is the label ``y``, e.g. cross-entropy for a classifier).
        params_module: the submodule whose parameters are differentiated; defaults to
            ``model.encoder`` (or the model itself when it has no encoder).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        target: str = "input",
        params_module: nn.Module | None = None,
    ) -> None:
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        self.model, self.loss_f, self.target = model, loss_f, target
        module = params_module if params_module is not None else getattr(model, "encoder", model)
        ids = {id(p) for p in module.parameters()}
        self.names = [name for name, p in model.named_parameters() if id(p) in ids]
        if not self.names:
            raise ValueError("the explained module has no parameters")

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
        return self.loss_f(functional_call(self.model, {**params, **fixed}, (x,)), t)

    def per_example_grads(
        self, params: Params, fixed: Params, x: torch.Tensor, t: torch.Tensor, chunk_size: int
    ) -> torch.Tensor:
        """Flattened gradient of each example's own loss, shape ``(N, P)``.

        ``vmap(grad)`` over whole chunks: small vmap chunks cost several times more here.
        """

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

        Reverse-over-reverse: one forward and backward pass builds the gradient's graph, whose
        pullback is vmapped over the K vectors (the primal passes are shared). It measured as
        fast as forward-over-reverse here and, unlike it, also runs through oneDNN LSTMs.
        """
        _, pullback = vjp(grad(lambda p: self.batch_loss(p, fixed, x, t)), params)
        return vmap(lambda v: flatten(pullback(unflatten(v, params))[0]), chunk_size=chunk_size)(
            vectors
        )

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
