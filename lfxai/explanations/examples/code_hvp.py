"""Hessian-vector products of a loss that reaches the explained parameters through a small code.

The explained parameters ``theta`` live in one module (the encoder) whose output per example is
a code ``z_i`` of ``D`` numbers (4 for the MNIST autoencoder), and the rest of the model turns
the codes into the loss: ``L(theta) = h(z(theta))``. The chain rule splits the Hessian exactly:

    H v = J^T Q J v + d/dtheta [ c . z(theta) ] v,     c = dh/dz,  Q = d^2 h / dz^2,

with ``J = dz/dtheta`` ``(B * D, P)``. When every example's loss depends on its own code alone
(eval mode), ``Q`` is block-diagonal (one ``D x D`` block per example) and comes from ``D``
Hessian-vector products of ``h``. The first term is then three matrix products with the
per-example Jacobian; the second is the Hessian of the linear function ``c . z`` through the
encoder alone, so the decoder's second-order pass is never repeated per vector. On the MNIST
autoencoder (d=4, batches of 200) that halves the cost per vector; it pays from about 50
vectors on (each call first builds ``J`` and ``Q``), so influence functions use it for LiSSA's
recursions over every explained example and the generic product for Arnoldi's single vectors.

:func:`code_hvp` returns None whenever the structure it relies on is absent, and the caller
falls back to the generic product: the module is not called exactly once, its output is not
one ``(B, ...)`` tensor of at most ``MAX_CODE`` numbers per example, the loss also uses the
explained parameters outside the module (tied weights), or ``Q`` is not block-diagonal (a
seeded random probe of the Hessian of ``h`` disagrees with the blocks).

References:
    Schraudolph. Fast Curvature Matrix-Vector Products for Second-Order Gradient Descent.
    Neural Computation 2002 (the Gauss-Newton part of this split).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, vjp, vmap

MAX_CODE = 16  # numbers per example in the code; J holds B * D rows of P numbers
MIN_VECTORS = 64  # fewer vectors than this: the generic product is cheaper
PROBE_RTOL = 1e-3  # a probe that misses the blocks by more is structure, not rounding

Params = dict[str, torch.Tensor]
BatchLoss = Callable[[Params, Params, torch.Tensor, torch.Tensor], torch.Tensor]


@contextmanager
def _returning(module: nn.Module, code: torch.Tensor) -> Iterator[None]:
    """Within the block, calling ``module`` returns ``code`` whatever its inputs."""
    module.forward = lambda *args, **kwargs: code  # an instance attribute shadows the class's
    try:
        yield
    finally:
        del module.forward


def _recorded_call(module: nn.Module, run: Callable[[], object]) -> tuple | None:
    """The positional inputs of the one call of ``module`` inside ``run()``, or None."""
    calls: list[tuple] = []
    hook = module.register_forward_hook(
        lambda _m, args, kwargs, _out: calls.append((args, kwargs)), with_kwargs=True
    )
    try:
        with torch.no_grad():
            run()
    finally:
        hook.remove()
    if len(calls) != 1:
        return None
    args, kwargs = calls[0]
    if kwargs or not args or not all(isinstance(a, torch.Tensor) for a in args):
        return None
    return tuple(a.detach() for a in args)


class CodeSplit:
    """The split of one model's loss at the output of its explained module.

    Args:
        model: the whole model (what ``batch_loss`` runs).
        module: the submodule holding every explained parameter.
        names: qualified names (in ``model``) of the explained parameters, in order.
        batch_loss: ``(params, fixed, x, t) -> scalar``, the mean loss of a batch.
    """

    def __init__(
        self, model: nn.Module, module: nn.Module, names: list[str], batch_loss: BatchLoss
    ) -> None:
        prefix = next((name for name, m in model.named_modules() if m is module), None)
        self.module, self.batch_loss = module, batch_loss
        # None: the module is not part of the model (its parameters are): no split then.
        self.prefix = None if prefix is None else f"{prefix}." if prefix else ""
        self.names = names
        self._untied: bool | None = None  # decided on the first batch

    def prepare(
        self, params: Params, fixed: Params, x: torch.Tensor, t: torch.Tensor
    ) -> Prepared | None:
        """The split on one batch, or None when its structure is absent (see the module)."""
        if self.prefix is None:
            return None
        inputs = _recorded_call(self.module, lambda: self.batch_loss(params, fixed, x, t))
        if inputs is None or not all(len(a) == len(x) for a in inputs):
            return None
        state = {k[len(self.prefix) :]: v for k, v in fixed.items() if k.startswith(self.prefix)}

        def encode(p: Params, *args: torch.Tensor) -> torch.Tensor:
            local = {name[len(self.prefix) :]: p[name] for name in self.names}
            return functional_call(self.module, {**local, **state}, args)

        code = encode(params, *inputs).detach()
        if code.dim() < 2 or len(code) != len(x) or code[0].numel() > MAX_CODE:
            return None

        def head(z: torch.Tensor) -> torch.Tensor:
            with _returning(self.module, z):
                return self.batch_loss(params, fixed, x, t)

        if self._untied is None:
            self._untied = self._loss_ignores_params_outside(params, fixed, x, t, code)
        if not self._untied:
            return None
        blocks, c = _code_hessian(head, code)
        if blocks is None:
            return None
        return Prepared(encode, inputs, blocks, c, _jacobian(encode, params, inputs))

    def _loss_ignores_params_outside(self, params, fixed, x, t, code) -> bool:
        """Whether the loss given the code is free of the explained parameters (no tying)."""
        live = {k: v.detach().requires_grad_() for k, v in params.items()}
        with torch.enable_grad(), _returning(self.module, code):
            loss = self.batch_loss(live, fixed, x, t)
            if not loss.requires_grad:
                return True
            used = torch.autograd.grad(loss, list(live.values()), allow_unused=True)
        return all(g is None for g in used)


class Prepared:
    """One batch's split: the Gauss-Newton term by matrix products, and the linear function
    ``c . z(theta)`` whose Hessian (through the encoder alone) is the rest."""

    def __init__(self, encode, inputs, blocks, c, jacobian) -> None:
        self.encode, self.inputs = encode, inputs
        self.blocks, self.c, self.jacobian = blocks, c, jacobian

    def linear(self, params: Params) -> torch.Tensor:
        """``sum_i c_i . z_i(params)``: a scalar whose Hessian is the second term."""
        return (self.encode(params, *self.inputs) * self.c).sum()

    def gauss_newton(self, vectors: torch.Tensor) -> torch.Tensor:
        """``J^T Q J v`` for every row of ``vectors (K, P)``: ``(K, P)``."""
        coded = torch.einsum("bdp,kp->bdk", self.jacobian, vectors)
        return torch.einsum("bdp,bdk->kp", self.jacobian, torch.bmm(self.blocks, coded))


def _code_hessian(head, code: torch.Tensor):
    """Per-example blocks ``(B, D, D)`` of ``d^2 h / dz^2`` and ``c = dh/dz`` ``(B, *z)``, or
    ``(None, None)`` when a seeded random probe shows coupling between examples."""
    n, shape = len(code), code.shape[1:]
    d = code[0].numel()
    c, pullback = vjp(grad(head), code)
    basis = torch.eye(d, dtype=code.dtype, device=code.device)
    tangents = basis.unsqueeze(1).expand(d, n, d).reshape(d, n, *shape)
    columns = vmap(lambda e: pullback(e)[0])(tangents).reshape(d, n, d)
    blocks = columns.permute(1, 2, 0).contiguous()  # blocks[i][:, j] = Q_i e_j
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(n, d, generator=generator, dtype=code.dtype).to(code.device)
    exact = pullback(probe.reshape(code.shape))[0].reshape(n, d)
    blockwise = torch.bmm(blocks, probe.unsqueeze(2)).squeeze(2)
    if (exact - blockwise).norm() > PROBE_RTOL * exact.norm():
        return None, None
    return blocks, c.detach()


def _jacobian(encode, params: Params, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Each example's Jacobian of its code, flattened in the order of ``params``: ``(B, D, P)``."""

    def one(p: Params, *args: torch.Tensor) -> torch.Tensor:
        return encode(p, *(a.unsqueeze(0) for a in args)).reshape(-1)

    per_example = vmap(jacrev(one), in_dims=(None, *[0] * len(inputs)))(params, *inputs)
    n, d = len(inputs[0]), next(iter(per_example.values())).shape[1]
    return torch.cat([g.reshape(n, d, -1) for g in per_example.values()], dim=2)
