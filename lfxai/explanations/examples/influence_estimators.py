"""Inverse-Hessian estimators of influence functions: one registered class per method.

Every estimator turns the ``(n_train, P)`` block of training gradients ``G`` into the
right-hand side ``R`` of the scores ``grad L(x_test) @ R.T`` (``R ~ G H^{-1}``), working on all
n_train vectors at once: LiSSA applies one batched Hessian-vector product per recursion step
to all of them, Arnoldi builds a low-rank eigendecomposition shared by all pairs, and the exact
estimator solves one dense damped system with n_train right-hand sides.
``ESTIMATORS`` maps each ``influence_method`` name to its class.

References:
    Koh & Liang. Understanding Black-box Predictions via Influence Functions. ICML 2017.
    Agarwal et al. Second-Order Stochastic Optimization for Machine Learning in Linear
    Time (LiSSA). JMLR 2017. Schioppa et al. Scaling Up Influence Functions. AAAI 2022.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
from tqdm.auto import tqdm

from lfxai.explanations.examples.base import collect
from lfxai.explanations.examples.per_sample_grads import LossFunctional, Params

# Examples x vectors per vmapped Hessian-vector product, by default. On the CPU the optimum is
# about 1,600 whatever the batch (its tangents stay in cache): LiSSA steps on the MNIST
# autoencoder, 1,000 vectors, took 6.0 s at 8 vectors x 200 examples against 9.6-9.9 s at 50
# x 200 (3.1 vs 5.4 s at batches of 100, 12.0 vs 18.8 s at 400; benchmarks/hvp_chunks.py).
# A GPU runs larger kernels better.
HVP_TANGENTS = 10_000
HVP_TANGENTS_CPU = 1_600
CACHED_HESSIAN_EXAMPLES = 500  # Hessian data whose graphs are kept across products


@dataclass(frozen=True)
class InfluenceOptions:
    """The estimators' numerical settings (their defaults are ``InfluenceFunctions``').

    Attributes:
        recursion_depth: LiSSA's steps (also the depth ``lissa_arnoldi`` evaluates).
        damping: added to the Hessian (LiSSA: ``damping * scale``, see the estimators).
        scale: LiSSA's scale.
        hvp_batch_size: examples per Hessian-vector product batch.
        seed: seed of LiSSA's resampling and of Arnoldi's start vector.
        arnoldi_rank: eigenpairs kept.
        arnoldi_iter: Arnoldi steps (one Hessian-vector product each).
        hessian_size: at most this many Hessian examples (exact, arnoldi); None: all.
        max_exact_params: the exact estimator's largest number of parameters.
        hvp_chunk_size: vectors per vmapped Hessian-vector product (None: ``HVP_TANGENTS //
            batch``, ``HVP_TANGENTS_CPU // batch`` on the CPU).
    """

    recursion_depth: int
    damping: float
    scale: float
    hvp_batch_size: int
    seed: int
    arnoldi_rank: int
    arnoldi_iter: int
    hessian_size: int | None
    max_exact_params: int
    hvp_chunk_size: int | None


@dataclass(frozen=True, eq=False)
class Curvature:
    """The Hessian an estimator inverts: the training loss at ``params``, on Hessian data.

    Attributes:
        functional: the model's loss, differentiable in ``params``.
        params: the explained parameters; ``fixed``: every other tensor of the model.
        x_train: the explained training examples ``(n_train, ...)``, the Hessian data when
            ``loader`` is None; ``y_train`` their labels (or None).
        loader: ``train_loader_replacement``: batches of Hessian data (or None).
        options: the estimators' settings.
        device: the model's device.
        progress: show tqdm bars.
    """

    functional: LossFunctional
    params: Params
    fixed: Params
    x_train: torch.Tensor
    y_train: torch.Tensor | None
    loader: Iterable | None
    options: InfluenceOptions
    device: torch.device
    progress: bool

    def chunk(self, batch_len: int) -> int:
        """Vectors per vmapped HVP: ``hvp_chunk_size``, else K * B capped at the device's
        ``HVP_TANGENTS`` (``HVP_TANGENTS_CPU`` on the CPU)."""
        tangents = HVP_TANGENTS_CPU if self.device.type == "cpu" else HVP_TANGENTS
        return self.options.hvp_chunk_size or max(1, tangents // max(1, batch_len))

    def lissa_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless ``(x, target)`` batches: the loader's, cycled, or seeded resampling."""
        if self.loader is not None:
            while True:
                empty = True
                for batch in self.loader:
                    x, y = collect([batch], self.device)
                    empty = False
                    yield x, self.functional.targets(x, y)
                if empty:
                    raise ValueError("train_loader_replacement yields no batches")
        targets = self.functional.targets(self.x_train, self.y_train)
        generator = torch.Generator().manual_seed(self.options.seed)
        size = (self.options.hvp_batch_size,)
        while True:
            idx = torch.randint(len(self.x_train), size, generator=generator)
            idx = idx.to(self.device)
            yield self.x_train[idx], targets[idx]

    def dataset_hessian(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """``vectors (K, P) -> (K, P)``: the Hessian of the mean loss over the Hessian data.

        The Hessian data: one pass over ``loader`` (at most ``hessian_size`` examples) or else
        the explained training examples, in batches of ``hvp_batch_size``. Up to
        ``CACHED_HESSIAN_EXAMPLES`` examples, each batch's graph is built once and kept for
        every product (Arnoldi's iterations, the exact method's blocks): the same products,
        without rebuilding. The ECG5000 autoencoder spends about a third of a product on that
        build (4-6 of 12-19 CPU seconds for 100 sequences; its 200 Hessian beats at paper
        settings keep about 1 GB of graphs). Larger Hessian data is built batch by batch on
        each call, so that only one batch's graph is held at a time.
        """
        if self.loader is not None:
            x, y = collect(self.loader, self.device)
        else:
            x, y = self.x_train, self.y_train
        size, batch_size = self.options.hessian_size, self.options.hvp_batch_size
        x, y = x[:size], None if y is None else y[:size]
        t = self.functional.targets(x, y)
        batches = [
            (x[i : i + batch_size], t[i : i + batch_size]) for i in range(0, len(x), batch_size)
        ]
        params, fixed = self.params, self.fixed
        operators = None
        if len(x) <= CACHED_HESSIAN_EXAMPLES:
            operators = [self.functional.hessian(params, fixed, xb, tb) for xb, tb in batches]

        def product(vectors: torch.Tensor) -> torch.Tensor:
            out = torch.zeros_like(vectors)
            for k, (xb, tb) in enumerate(batches):
                if operators is None:
                    operator = self.functional.hessian(params, fixed, xb, tb)
                else:
                    operator = operators[k]
                out += len(xb) / len(x) * operator(vectors, self.chunk(len(xb)))
            return out

        return product


class InverseHessianEstimator(ABC):
    """One way of computing ``R ~ G H^{-1}`` from the training gradients ``G``.

    Args:
        options: the numerical settings (each estimator reads the ones it uses).
    """

    name: ClassVar[str]

    def __init__(self, options: InfluenceOptions) -> None:
        self.options = options

    @abstractmethod
    def right_hand_side(self, curvature: Curvature, train_grads: torch.Tensor) -> torch.Tensor:
        """``(n_train, P)`` vectors whose dot products with test gradients are the scores.

        Args:
            curvature: the Hessian to invert.
            train_grads: ``(n_train, P)`` per-example training gradients.
        """


ESTIMATORS: dict[str, type[InverseHessianEstimator]] = {}


def register_estimator(cls: type[InverseHessianEstimator]) -> type[InverseHessianEstimator]:
    """Class decorator: adds ``cls`` to :data:`ESTIMATORS` under ``cls.name``."""
    if cls.name in ESTIMATORS:
        raise KeyError(f"duplicate influence_method {cls.name!r}")
    ESTIMATORS[cls.name] = cls
    return cls


def estimator(name: str, options: InfluenceOptions) -> InverseHessianEstimator:
    """The registered estimator ``name`` with ``options``; an unknown name is an error."""
    if name not in ESTIMATORS:
        raise ValueError(f"influence_method must be one of {tuple(ESTIMATORS)}, got {name!r}")
    return ESTIMATORS[name](options)


@register_estimator
class Lissa(InverseHessianEstimator):
    """``v <- g + (1 - damping) v - H_b v / scale`` for ``recursion_depth`` steps; ``v / scale``.

    ``H_b`` is the Hessian of the mean loss of a batch drawn from ``train_loader_replacement``
    (or, when absent, ``hvp_batch_size`` training examples drawn with replacement with a
    seeded generator). The fixed point is ``(H + damping * scale * I)^{-1} g``. The reference
    also divides by n_train, a constant that leaves every ranking unchanged and is omitted.
    """

    name = "lissa"

    def right_hand_side(self, curvature: Curvature, train_grads: torch.Tensor) -> torch.Tensor:
        """All n_train LiSSA recursions at once; returns ``(n_train, P)`` estimates."""
        batches = curvature.lissa_batches()
        damping, scale = self.options.damping, self.options.scale
        functional, params, fixed = curvature.functional, curvature.params, curvature.fixed
        estimate = train_grads.clone()
        steps = range(self.options.recursion_depth)
        for _ in tqdm(steps, desc="LiSSA", leave=False, disable=not curvature.progress):
            x, t = next(batches)
            product = functional.hvp(params, fixed, x, t, estimate, curvature.chunk(len(x)))
            # estimate <- grads + (1 - damping) estimate - product / scale, without temporaries
            estimate = product.div_(-scale).add_(train_grads).add_(estimate, alpha=1 - damping)
        return estimate.div_(scale)


@register_estimator
class Arnoldi(InverseHessianEstimator):
    """The ``arnoldi_rank`` eigenpairs of largest magnitude of H from ``arnoldi_iter`` steps.

    The influence is ``sum_k (g_test . u_k)(g_train . u_k) / (lambda_k + damping)``.
    """

    name = "arnoldi"

    def right_hand_side(self, curvature: Curvature, train_grads: torch.Tensor) -> torch.Tensor:
        """Projections onto the top eigenvectors, scaled by the damped inverse eigenvalues."""
        values, vectors = self.eigenpairs(curvature, train_grads.shape[1])
        return self.combine(values, vectors, train_grads)

    def eigenpairs(self, curvature: Curvature, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The kept eigenvalues ``(m,)`` and orthonormal eigenvectors ``(m, P)`` of H."""
        hvp = curvature.dataset_hessian()
        values, vectors = arnoldi(
            hvp,
            dim,
            self.options.arnoldi_iter,
            curvature.device,
            self.options.seed,
            curvature.progress,
        )
        keep = values.abs().argsort(descending=True)[: self.options.arnoldi_rank]
        return values[keep], vectors[keep]

    def combine(self, values, vectors, train_grads: torch.Tensor) -> torch.Tensor:
        """``R`` from the eigenpairs: each eigenvalue's factor ``1 / (lambda + damping)``."""
        return (train_grads @ vectors.T / (values + self.options.damping)) @ vectors


@register_estimator
class Exact(InverseHessianEstimator):
    """``(H + damping * I)^{-1}`` with the dense Hessian of the mean loss over the Hessian
    examples (small models only: ``P <= max_exact_params``)."""

    name = "exact"

    def right_hand_side(self, curvature: Curvature, train_grads: torch.Tensor) -> torch.Tensor:
        """One dense damped solve with n_train right-hand sides."""
        hvp = curvature.dataset_hessian()
        n_params = train_grads.shape[1]
        if n_params > self.options.max_exact_params:
            raise ValueError(
                f"exact inverse of a {n_params}^2 Hessian: use influence_method='arnoldi'"
            )
        eye = torch.eye(n_params, device=curvature.device)
        hessian = torch.cat([hvp(eye[i : i + 256]) for i in range(0, n_params, 256)])
        damped = (hessian + hessian.T) / 2 + self.options.damping * eye
        return torch.linalg.solve(damped, train_grads.T).T


@register_estimator
class LissaArnoldi(Arnoldi):
    """The expectation of LiSSA's estimate after ``recursion_depth`` steps, on Arnoldi's pairs.

    LiSSA's batches are independent, so its expectation is the truncated series
    ``(1 / scale) sum_{j <= depth} ((1 - damping) I - H / scale)^j g``, evaluated exactly on
    Arnoldi's eigenpairs (:func:`lissa_filter`), the rest of the spectrum taken as 0. At
    Arnoldi's cost it reproduces what LiSSA computes with the reference's settings, where
    LiSSA itself is too slow (through LSTMs on a CPU): with ``scale=1000`` and 100 steps,
    every eigenvalue far below ``scale / depth`` gets the same factor ``~depth / scale``, so
    the estimate is close to a multiple of ``g``, not to ``H^{-1} g``.
    """

    name = "lissa_arnoldi"

    def combine(self, values, vectors, train_grads: torch.Tensor) -> torch.Tensor:
        """LiSSA's factor per eigenvalue, its factor at 0 elsewhere."""
        depth, damping, scale = (
            self.options.recursion_depth,
            self.options.damping,
            self.options.scale,
        )
        factors = lissa_filter(values, depth, damping, scale)
        rest = lissa_filter(values.new_zeros(1), depth, damping, scale)
        return rest * train_grads + (train_grads @ vectors.T * (factors - rest)) @ vectors


def lissa_filter(
    eigenvalues: torch.Tensor, depth: int, damping: float, scale: float
) -> torch.Tensor:
    """What ``depth`` LiSSA steps multiply an eigenvector of H with eigenvalue ``lambda`` by.

    The estimate starts at ``g`` and each step adds a power: ``(1 / scale) sum_{j <= depth}
    q^j`` with ``q = 1 - damping - lambda / scale``. In float64: the closed form
    ``(1 - q^n) / (1 - q)`` (``n = depth + 1`` terms), and its second-order expansion in
    ``1 - q`` where ``|1 - q| < 1e-8`` (the closed form would cancel there; the expansion's
    error, about ``n^3 (1 - q)^2``, is below float32 rounding).

    Args:
        eigenvalues: ``(m,)`` eigenvalues of H.
        depth: LiSSA's recursion depth.
        damping: LiSSA's damping.
        scale: LiSSA's scale.

    Returns:
        ``(m,)`` factors, in the eigenvalues' dtype.
    """
    terms = depth + 1
    rate = damping + eigenvalues.double() / scale  # 1 - q
    closed = (1 - (1 - rate) ** terms) / torch.where(rate == 0, 1.0, rate)
    near = terms - rate * terms * (terms - 1) / 2
    return (torch.where(rate.abs() < 1e-8, near, closed) / scale).to(eigenvalues.dtype)


def arnoldi(
    hvp: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    n_iter: int,
    device: torch.device | str = "cpu",
    seed: int = 0,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenpairs of a symmetric operator from an Arnoldi (Lanczos) iteration.

    Args:
        hvp: maps ``(K, dim)`` vectors to their products with the operator.
        dim: dimension P of the operator.
        n_iter: Krylov subspace size (at most ``dim``).
        device: where the vectors live.
        seed: seed of the random start vector.
        progress: show a tqdm bar.

    Returns:
        Ritz values ``(m,)`` and orthonormal Ritz vectors ``(m, dim)``, ``m <= n_iter``.

    References:
        Schioppa et al. Scaling Up Influence Functions. AAAI 2022.
    """
    n_iter = min(n_iter, dim)
    start = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
    basis = torch.zeros(n_iter + 1, dim, device=device)
    basis[0] = (start / start.norm()).to(basis)
    hessenberg = torch.zeros(n_iter + 1, n_iter, dtype=torch.float64)
    size = n_iter
    for j in tqdm(range(n_iter), desc="Arnoldi", leave=False, disable=not progress):
        w = hvp(basis[j : j + 1])[0]
        scale = w.norm()
        for _ in range(2):  # "twice is enough": re-orthogonalise against the whole basis
            h = basis[: j + 1] @ w
            w = w - h @ basis[: j + 1]
            hessenberg[: j + 1, j] += h.double().cpu()
        beta = w.norm()
        hessenberg[j + 1, j] = beta.double().cpu()
        if beta <= 1e-6 * scale:  # invariant subspace found: the Krylov space is exhausted
            size = j + 1
            break
        basis[j + 1] = w / beta
    small = hessenberg[:size, :size]
    values, vectors = torch.linalg.eigh((small + small.T) / 2)
    ritz = vectors.T.to(basis) @ basis[:size]
    return values.to(basis), ritz
