"""Influence functions with batched inverse-Hessian-vector products.

Every estimator works on the (P, n_train) block of training gradients at once: LiSSA applies
one batched Hessian-vector product per recursion step to all n_train vectors, Arnoldi builds a
low-rank eigendecomposition shared by all pairs, and the exact estimator solves one dense
damped system with n_train right-hand sides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from tqdm.auto import tqdm

from lfxai.explanations.examples.base import GradientExplainer, collect

METHODS = ("lissa", "arnoldi", "exact", "lissa_arnoldi")
HVP_TANGENTS = 10_000  # examples x vectors per vmapped Hessian-vector product, by default
CACHED_HESSIAN_EXAMPLES = 500  # Hessian data whose graphs are kept across products


class InfluenceFunctions(GradientExplainer):
    """``grad L(x_test)^T H^{-1} grad L(x_train)``; larger means more important.

    The sign follows the reference implementation (not Koh & Liang's minus sign). Options have
    the names of the experiments' settings. ``influence_method``:

    - ``"lissa"`` (default, as the reference): ``v <- g + (1 - damping) v - H_b v / scale``
      for ``recursion_depth`` steps, ``H_b`` the Hessian of the mean loss of a batch drawn
      from ``train_loader_replacement`` (or, when absent, ``hvp_batch_size`` training examples
      drawn with replacement with a seeded generator); the estimate is ``v / scale``, whose
      fixed point is ``(H + damping * scale * I)^{-1} g``. The reference also divides by n_train, a
      constant that leaves every ranking unchanged and is omitted here.
    - ``"exact"``: ``(H + damping * I)^{-1}`` with the dense Hessian of the mean loss over the
      Hessian examples (small models only: ``P <= max_exact_params``).
    - ``"arnoldi"``: the ``arnoldi_rank`` eigenpairs of largest magnitude of H from ``arnoldi_iter``
      Arnoldi steps (full re-orthogonalisation); the influence is
      ``sum_k (g_test . u_k)(g_train . u_k) / (lambda_k + damping)``.
    - ``"lissa_arnoldi"``: the expectation of LiSSA's estimate after ``recursion_depth`` steps
      (its batches are independent, so it is the truncated series
      ``(1 / scale) sum_{j <= depth} ((1 - damping) I - H / scale)^j g``), evaluated exactly on
      Arnoldi's eigenpairs (:func:`lissa_filter`), the rest of the spectrum taken as 0. At
      Arnoldi's cost it reproduces what LiSSA computes with the reference's settings, where
      LiSSA itself is too slow (through LSTMs on a CPU): with ``scale=1000`` and 100 steps,
      every eigenvalue far below ``scale / depth`` gets the same factor ``~depth / scale``, so
      the estimate is close to a multiple of ``g``, not to ``H^{-1} g``.

    Hessian examples (exact, arnoldi): one pass over ``train_loader_replacement`` (at most
    ``hessian_size`` examples) or else the explained training examples, in batches of
    ``hvp_batch_size``. ``hvp_chunk_size`` caps the vectors per vmapped Hessian-vector
    product (default: about 10,000 examples' worth of tangents; a GPU can take more).

    Memory: every Hessian-vector product (LiSSA's steps, Arnoldi's and the exact method's)
    is ``vmap``-ed over ``hvp_chunk_size`` vectors at a time. K vectors on a batch of B
    examples hold about K * B examples' worth of activation tangents, so the default is
    ``HVP_TANGENTS // B`` vectors (50 for LiSSA's batches of 200: about 0.9 GB more on the
    MNIST autoencoder, and a quarter less CPU time per vector than 20 measured). Lower it
    when memory runs out, raise it on a large GPU for fewer, larger kernels.

    Args:
        See ``GradientExplainer``.

    References:
        Koh & Liang. Understanding Black-box Predictions via Influence Functions. ICML 2017.
        Agarwal et al. Second-Order Stochastic Optimization for Machine Learning in Linear
        Time (LiSSA). JMLR 2017. Schioppa et al. Scaling Up Influence Functions. AAAI 2022.
    """

    name = "InfluenceFunctions"

    def _attribute(
        self,
        x_train: torch.Tensor,
        y_train: torch.Tensor | None,
        x_test: torch.Tensor,
        y_test: torch.Tensor | None,
        influence_method: str = "lissa",
        train_loader_replacement: Iterable | None = None,
        recursion_depth: int = 100,
        damping: float = 1e-3,
        scale: float = 1000.0,
        hvp_batch_size: int = 200,
        seed: int = 0,
        arnoldi_rank: int = 50,
        arnoldi_iter: int = 100,
        hessian_size: int | None = None,
        max_exact_params: int = 10_000,
        hvp_chunk_size: int | None = None,
    ) -> torch.Tensor:
        """Scores ``(n_test, n_train)``; see the class docstring for the options.

        ``hvp_chunk_size`` (vectors per vmapped Hessian-vector product, default
        ``HVP_TANGENTS // batch``) applies to all three methods; see "Memory" above.
        """
        if influence_method not in METHODS:
            raise ValueError(f"influence_method must be one of {METHODS}, got {influence_method!r}")
        if hvp_chunk_size is not None and hvp_chunk_size < 1:
            raise ValueError(f"hvp_chunk_size must be positive or None, got {hvp_chunk_size}")
        params, fixed = self.functional.split()
        train_grads = self._grads(params, fixed, x_train, y_train)
        self._hvp_chunk = hvp_chunk_size
        if influence_method == "lissa":
            batches = self._lissa_batches(
                train_loader_replacement, x_train, y_train, hvp_batch_size, seed
            )
            right = self._lissa(
                params, fixed, train_grads, batches, recursion_depth, damping, scale
            )
            return self._scores(params, fixed, x_test, y_test, right)
        xh, th = self._hessian_data(train_loader_replacement, x_train, y_train, hessian_size)
        hvp = self._dataset_hessian(params, fixed, xh, th, hvp_batch_size)

        if influence_method == "exact":
            n_params = train_grads.shape[1]
            if n_params > max_exact_params:
                raise ValueError(
                    f"exact inverse of a {n_params}^2 Hessian: use influence_method='arnoldi'"
                )
            eye = torch.eye(n_params, device=self.device)
            hessian = torch.cat([hvp(eye[i : i + 256]) for i in range(0, n_params, 256)])
            damped = (hessian + hessian.T) / 2 + damping * eye
            right = torch.linalg.solve(damped, train_grads.T).T
            return self._scores(params, fixed, x_test, y_test, right)
        values, vectors = arnoldi(
            hvp, train_grads.shape[1], arnoldi_iter, self.device, seed, self.progress
        )
        keep = values.abs().argsort(descending=True)[:arnoldi_rank]
        values, vectors = values[keep], vectors[keep]
        if influence_method == "arnoldi":
            # Projections onto the top eigenvectors, scaled by the damped inverse eigenvalues.
            right = (train_grads @ vectors.T / (values + damping)) @ vectors
        else:  # lissa_arnoldi: LiSSA's factor per eigenvalue, its factor at 0 elsewhere
            factors = lissa_filter(values, recursion_depth, damping, scale)
            rest = lissa_filter(values.new_zeros(1), recursion_depth, damping, scale)
            right = rest * train_grads + (train_grads @ vectors.T * (factors - rest)) @ vectors
        return self._scores(params, fixed, x_test, y_test, right)

    def _lissa(self, params, fixed, grads, batches, depth, damp, scale) -> torch.Tensor:
        """All n_train LiSSA recursions at once; returns ``(n_train, P)`` estimates."""
        estimate = grads.clone()
        for _ in tqdm(range(depth), desc="LiSSA", leave=False, disable=not self.progress):
            x, t = next(batches)
            product = self.functional.hvp(params, fixed, x, t, estimate, self._chunk(len(x)))
            # estimate <- grads + (1 - damp) estimate - product / scale, without temporaries
            estimate = product.div_(-scale).add_(grads).add_(estimate, alpha=1 - damp)
        return estimate.div_(scale)

    def _lissa_batches(self, loader, x_train, y_train, batch_size, seed) -> Iterator:
        """Endless ``(x, target)`` batches: the loader's, cycled, or seeded resampling."""
        if loader is not None:
            while True:
                empty = True
                for batch in loader:
                    x, y = collect([batch], self.device)
                    empty = False
                    yield x, self.functional.targets(x, y)
                if empty:
                    raise ValueError("train_loader_replacement yields no batches")
        targets = self.functional.targets(x_train, y_train)
        generator = torch.Generator().manual_seed(seed)
        while True:
            idx = torch.randint(len(x_train), (batch_size,), generator=generator)
            idx = idx.to(self.device)
            yield x_train[idx], targets[idx]

    def _hessian_data(self, loader, x_train, y_train, size):
        if loader is not None:
            x, y = collect(loader, self.device)
        else:
            x, y = x_train, y_train
        x, y = x[:size], None if y is None else y[:size]
        return x, self.functional.targets(x, y)

    def _dataset_hessian(self, params, fixed, x, t, batch_size) -> Callable:
        """``vectors (K, P) -> (K, P)``: the Hessian of the mean loss over all of ``x``, batch
        by batch.

        Up to ``CACHED_HESSIAN_EXAMPLES`` examples, each batch's graph is built once and kept
        for every product (Arnoldi's iterations, the exact method's blocks): the same products,
        without rebuilding. The ECG5000 autoencoder spends about a third of a product on
        that build (4-6 of 12-19 CPU seconds for 100 sequences; its 200 Hessian beats at
        paper settings keep about 1 GB of graphs). Larger Hessian data is built batch by batch
        on each call, so that only one batch's graph is held at a time.
        """
        batches = [
            (x[i : i + batch_size], t[i : i + batch_size]) for i in range(0, len(x), batch_size)
        ]
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
                out += len(xb) / len(x) * operator(vectors, self._chunk(len(xb)))
            return out

        return product

    def _chunk(self, batch_len: int) -> int:
        """Vectors per vmapped HVP: ``hvp_chunk_size``, else K * B capped at HVP_TANGENTS."""
        return self._hvp_chunk or max(1, HVP_TANGENTS // max(1, batch_len))


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
