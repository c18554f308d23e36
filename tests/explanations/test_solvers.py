"""The solvers inside the example explainers: Arnoldi eigenpairs and SimplEx's weights."""

from __future__ import annotations

import torch
from torch import nn

from lfxai.explanations.examples import simplex
from lfxai.explanations.examples.influence_estimators import arnoldi
from lfxai.explanations.examples.simplex import simplex_weights
from tests.numerics import U64, gamma


def _symmetric(eigenvalues: list[float], seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(
        torch.randn(
            len(eigenvalues),
            len(eigenvalues),
            generator=torch.Generator().manual_seed(seed),
            dtype=torch.float64,
        )
    )
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T


def test_a_full_krylov_space_gives_every_eigenpair(float64):
    values = [-0.5, 0.01, 0.3, 1.0, 2.5, 4.0]
    matrix = _symmetric(values)
    ritz, vectors = arnoldi(lambda v: v @ matrix, 6, n_iter=10)  # n_iter is capped at dim
    assert ritz.shape == (6,) and vectors.shape == (6, 6)
    # Backward stable with full re-orthogonalisation: errors of order dim^2 u ||A||
    # (Golub & Van Loan, Matrix Computations, 4th ed., Sections 10.1 and 8.1).
    tolerance = gamma(10 * 6 * 6, U64) * max(abs(v) for v in values)
    assert torch.allclose(torch.sort(ritz).values, torch.tensor(values), rtol=0, atol=tolerance)
    assert torch.allclose(vectors @ vectors.T, torch.eye(6), rtol=0, atol=gamma(10 * 36, U64))
    residual = vectors @ matrix - ritz[:, None] * vectors  # A v = lambda v, row by row
    assert residual.abs().max() <= tolerance


def test_an_exhausted_krylov_space_stops_early(float64):
    """Two distinct eigenvalues: the Krylov space of any start vector has dimension 2."""
    matrix = _symmetric([3.0, 3.0, 3.0, -1.0, -1.0], seed=1)
    calls = []

    def hvp(v):
        calls.append(len(v))
        return v @ matrix

    ritz, vectors = arnoldi(hvp, 5, n_iter=5)
    assert len(calls) == 2 and ritz.shape == (2,) and vectors.shape == (2, 5)
    tolerance = gamma(10 * 25, U64) * 3
    assert torch.allclose(torch.sort(ritz).values, torch.tensor([-1.0, 3.0]), atol=tolerance)
    assert (vectors @ matrix - ritz[:, None] * vectors).abs().max() <= tolerance


def test_the_start_vector_is_seeded(float64):
    matrix = _symmetric([1.0, 2.0, 3.0, 4.0])
    first = arnoldi(lambda v: v @ matrix, 4, n_iter=2, seed=3)
    again = arnoldi(lambda v: v @ matrix, 4, n_iter=2, seed=3)
    other = arnoldi(lambda v: v @ matrix, 4, n_iter=2, seed=4)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])  # 2 of 4 dimensions: depends on the start


def test_simplex_weights_start_uniform():
    """No step: softmax of zero logits, 1/N exactly for N a power of two."""
    weights = simplex_weights(torch.rand(3, 2), torch.rand(8, 2), n_epoch=0)
    assert torch.equal(weights, torch.full((3, 8), 0.125))


def test_simplex_first_step_follows_the_gradient_of_the_squared_error():
    """Adam's first step moves each logit by -lr * g / (|g| + eps), i.e. -lr * sign(g).

    The closed-form gradient inside simplex_weights must agree in sign with autograd's
    gradient of ``||softmax(Z) C - h||^2`` at ``Z = 0`` for every logit.
    """
    generator = torch.Generator().manual_seed(0)
    train, test = torch.randn(6, 3, generator=generator), torch.randn(4, 3, generator=generator)
    logits = torch.zeros(4, 6, requires_grad=True)
    ((torch.softmax(logits, 1) @ train - test) ** 2).sum().backward()
    grad = logits.grad
    assert grad.abs().min() > 1e-4  # eps / |g| < 1e-4: the step is lr * sign(g) to 1e-4
    lr = 0.5
    weights = simplex_weights(test, train, n_epoch=1, learning_rate=lr)
    expected = torch.softmax(-lr * torch.sign(grad).double(), 1)
    # 1e-4 relative from eps, then the softmax: well under 1e-3 relative.
    assert torch.allclose(weights.double(), expected, rtol=1e-3, atol=0)
    assert torch.equal(weights > 1 / 6, grad < 0)  # up where the error falls


def test_simplex_weights_are_on_the_simplex_and_reach_an_exact_corner():
    """A test code equal to a corner of the training codes is best explained by it alone."""
    train = torch.eye(3) * 4  # three affinely independent corners
    test = train[[2, 0]]
    weights = simplex_weights(test, train, n_epoch=300, learning_rate=0.1)
    assert (weights >= 0).all()
    # A sum of 3 float32 terms each at most 1 (3 roundings), and the softmax's division.
    assert (weights.sum(1) - 1).abs().max() <= gamma(4)
    # Deterministic (no randomness); after 300 steps of lr 0.1 the corner holds 0.98.
    assert weights[0, 2] > 0.95 and weights[1, 0] > 0.95


def test_simplex_solves_all_test_rows_together_within_the_memory_bound(monkeypatch):
    """Rows per optimisation: MAX_ELEMENTS // n_train, so 7 rows of 10 go in one call."""
    rows = []
    real = simplex.simplex_weights

    calls = []

    def spy(test_codes, *args):
        rows.append(len(test_codes))
        calls.append(args[1:])
        return real(test_codes, *args)

    monkeypatch.setattr(simplex, "simplex_weights", spy)
    x_train = torch.rand(10, 2)

    def explainer(steps: int) -> simplex.SimplEx:
        return simplex.SimplEx(nn.Flatten(), X_train=x_train, progress=False, simplex_steps=steps)

    weights = explainer(2).attribute(torch.rand(7, 2), None)
    assert rows == [7] and weights.shape == (7, 10)
    monkeypatch.setattr(simplex, "MAX_ELEMENTS", 30)  # 3 rows of 10 per optimisation
    rows.clear()
    assert torch.equal(explainer(0).attribute(torch.rand(7, 2), None), torch.full((7, 10), 0.1))
    assert rows == [3, 3, 1]
    monkeypatch.setattr(simplex, "MAX_ELEMENTS", 5)  # fewer than one row: still one row
    rows.clear()
    explainer(0).attribute(torch.rand(3, 2), None)
    assert rows == [1, 1, 1]
    monkeypatch.setattr(simplex, "MAX_ELEMENTS", 3)  # one training example: 3 rows
    rows.clear()
    one = simplex.SimplEx(nn.Flatten(), X_train=torch.rand(1, 2), progress=False, simplex_steps=0)
    one.attribute(torch.rand(7, 2), None)
    assert rows == [3, 3, 1]


def test_simplex_defaults_are_the_references_1000_steps_at_lr_1e_3(monkeypatch):
    calls = []
    monkeypatch.setattr(
        simplex,
        "simplex_weights",
        lambda test, train, *args: calls.append(args) or torch.zeros(len(test), len(train)),
    )
    simplex.SimplEx(nn.Flatten(), X_train=torch.rand(2, 2), progress=False).attribute(
        torch.rand(1, 2), None
    )
    assert calls == [(1000, 1e-3, False)]


def test_simplex_weights_defaults(capsys):
    """1000 Adam steps at lr 1e-3 without a progress bar (deterministic: equal floats)."""
    generator = torch.Generator().manual_seed(0)
    train, test = torch.randn(4, 2, generator=generator), torch.randn(2, 2, generator=generator)
    assert torch.equal(simplex_weights(test, train), simplex_weights(test, train, 1000, 1e-3))
    assert not torch.equal(simplex_weights(test, train), simplex_weights(test, train, 999, 1e-3))
    assert capsys.readouterr().err == ""


def test_simplex_weights_progress_bar_is_named_and_cleared(capsys):
    simplex_weights(torch.rand(1, 2), torch.rand(3, 2), n_epoch=2, progress=True)
    err = capsys.readouterr().err
    assert "\rSimplEx:   0%" in err
    # leave=False: not kept (no line end), the line blanked at the end (tqdm may draw
    # "100%" before that when a step takes over 0.1 s, so that is not checked)
    assert "\n" not in err and err.split("\r")[-2].isspace()
