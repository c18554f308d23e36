"""Influence functions' own rules: method dispatch, LiSSA's batches and fixed point, messages.

The model is a linear regression ``w . x + b`` with a label target and ``MSELoss``: its
per-example gradients ``2 r (x, 1)`` (residual ``r``) and its batch Hessians
``2 / B sum (x, 1)(x, 1)^T`` have closed forms, computed here in float64 from the same
float32 data and weights, so every estimator has an exact reference.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from lfxai.explanations.examples import InfluenceFunctions, code_hvp, influence_estimators
from lfxai.explanations.examples.per_sample_grads import LossFunctional
from tests.numerics import U64, gamma

N_IN, N_TRAIN, N_TEST = 3, 8, 4
P = N_IN + 1  # the weights, then the bias (the order of named_parameters)


def _regression(n_in: int = N_IN) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(n_in, 1)


def _data(n: int, n_in: int = N_IN, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs on three scales (well separated Hessian eigenvalues) and labels ``(n, 1)``."""
    gen = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0.5, -0.5, n_in)
    return torch.randn(n, n_in, generator=gen) * scales, 2 * torch.randn(n, 1, generator=gen)


def _explainer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs) -> InfluenceFunctions:
    kwargs.setdefault("progress", False)
    return InfluenceFunctions(model, nn.MSELoss(), X_train=x, Y_train=y, target="label", **kwargs)


def _ones(x: torch.Tensor) -> torch.Tensor:
    """``(x, 1)`` in float64: the input of the weights and of the bias."""
    return torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], 1)


def _grads(model: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example gradients ``2 r (x, 1)`` of ``(w . x + b - y)^2``: ``(N, P)`` float64."""
    w = torch.cat([model.weight.detach().double()[0], model.bias.detach().double()])
    return 2 * (_ones(x) @ w - y.double()[:, 0])[:, None] * _ones(x)


def _grads_magnitude(model: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``2 (|w| . |x| + |b| + |y|) |(x, 1)|``: what bounds the rounding of ``_grads``."""
    w = torch.cat([model.weight.detach().double()[0], model.bias.detach().double()])
    return 2 * (_ones(x).abs() @ w.abs() + y.double()[:, 0].abs())[:, None] * _ones(x).abs()


def _hessian(x: torch.Tensor) -> torch.Tensor:
    """Hessian of the mean loss over ``x``: ``2 / B sum (x, 1)(x, 1)^T`` in float64."""
    return 2 * _ones(x).T @ _ones(x) / len(x)


def _assert_within(actual: torch.Tensor, expected: torch.Tensor, bound: torch.Tensor) -> None:
    error = (actual.double() - expected).abs()
    assert bool((error <= bound).all()), (error.max().item(), bound.min().item())


def _solve_bound(model, x_train, y_train, x_test, y_test, damped: torch.Tensor, n: int):
    """Rounding bound of ``g_test damped^-1 g_train^T`` computed in float32.

    Float32 gradients (``n_in + 4`` roundings each), the damped Hessian (sums over the
    Hessian examples) and its solve: relative errors of ``gamma(n)`` amplified at most by the
    condition number (Higham 2002, Section 7.1), on the magnitude ``|g| |damped^-1| |g|^T``.
    """
    eigenvalues = torch.linalg.eigvalsh(damped)
    condition = (eigenvalues.abs().max() / eigenvalues.abs().min()).item()
    magnitude = (
        _grads_magnitude(model, x_test, y_test)
        @ torch.linalg.inv(damped).abs()
        @ _grads_magnitude(model, x_train, y_train).T
    )
    return condition * gamma(n) * magnitude


# Method dispatch and its messages ----------------------------------------------------------


def _lissa_reference(
    model: nn.Linear,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    hessian_batches: list[torch.Tensor],
    damping: float,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LiSSA's scores in float64, step k using ``hessian_batches[k]``, and their magnitude.

    ``v <- g_train + (1 - damping) v - H_k v / scale``, then ``g_test . v / scale``. The same
    recursion on absolute values bounds every step's rounding and its propagation through the
    later steps (Higham 2002, Section 3.1): a tolerance is ``gamma(n) * magnitude``.
    """
    g_train, g_train_abs = _grads(model, *train), _grads_magnitude(model, *train)
    v, v_abs = g_train.clone(), g_train_abs.clone()
    for batch in hessian_batches:
        hessian = _hessian(batch)
        v = g_train + (1 - damping) * v - v @ hessian / scale
        v_abs = g_train_abs + (1 - damping) * v_abs + v_abs @ hessian.abs() / scale
    expected = _grads(model, *test) @ v.T / scale
    magnitude = _grads_magnitude(model, *test) @ v_abs.T / scale
    return expected, magnitude


def test_an_unknown_method_is_refused_with_the_four_names() -> None:
    x, y = _data(N_TRAIN)
    with pytest.raises(ValueError) as error:
        _explainer(_regression(), x, y, influence_method="newton")
    expected = (
        "influence_method must be one of ('lissa', 'arnoldi', 'exact', 'lissa_arnoldi'), "
        "got 'newton'"
    )
    assert str(error.value) == expected


def test_exact_solves_the_damped_system_up_to_exactly_max_exact_params() -> None:
    """``exact``: ``g_test (H + damping I)^-1 g_train^T``; P == max_exact_params is allowed."""
    model, (x, y), (x_test, y_test) = _regression(), _data(N_TRAIN), _data(N_TEST, seed=2)
    damping = 0.3
    scores = _explainer(
        model,
        x,
        y,
        influence_method="exact",
        damping=damping,
        max_exact_params=P,
        hvp_batch_size=3,  # batches of 3, 3 and 2: the mean over all eight examples
    ).attribute(x_test, Y_test=y_test)
    damped = _hessian(x) + damping * torch.eye(P, dtype=torch.float64)
    expected = _grads(model, x_test, y_test) @ torch.linalg.solve(damped, _grads(model, x, y).T)
    _assert_within(scores, expected, _solve_bound(model, x, y, x_test, y_test, damped, 8 * P))


def test_exact_refuses_more_parameters_than_max_exact_params_and_names_arnoldi() -> None:
    x, y = _data(N_TRAIN)
    exact = _explainer(_regression(), x, y, influence_method="exact", max_exact_params=P - 1)
    with pytest.raises(ValueError) as error:
        exact.attribute(x[:2], Y_test=y[:2])
    assert str(error.value) == "exact inverse of a 4^2 Hessian: use influence_method='arnoldi'"
    # The limit is the exact method's alone: Arnoldi never builds the dense Hessian.
    arnoldi = _explainer(
        _regression(), x, y, influence_method="arnoldi", max_exact_params=P - 1
    ).attribute(x[:2], Y_test=y[:2])
    assert arnoldi.shape == (2, N_TRAIN)


def test_exact_refuses_10001_parameters_by_default_before_any_hessian_product(
    monkeypatch,
) -> None:
    def no_hvp(*args, **kwargs):
        raise AssertionError("the dense Hessian must not be built")

    monkeypatch.setattr(LossFunctional, "hvp", no_hvp)
    x, y = _data(2, n_in=10_000)
    explainer = _explainer(_regression(10_000), x, y, influence_method="exact")
    with pytest.raises(ValueError, match=re.escape("exact inverse of a 10001^2 Hessian")):
        explainer.attribute(x, Y_test=y)


def test_exact_assembles_a_hessian_of_more_than_256_columns_block_by_block() -> None:
    """The dense Hessian comes in blocks of 256 unit vectors: P = 300 needs two, no overlap."""
    n_in = 299
    model, (x, y), (x_test, y_test) = _regression(n_in), _data(6, n_in), _data(2, n_in, seed=2)
    x, x_test = x / n_in**0.5, x_test / n_in**0.5  # keeps H + I well conditioned
    scores = _explainer(model, x, y, influence_method="exact", damping=1.0).attribute(
        x_test, Y_test=y_test
    )
    damped = _hessian(x) + torch.eye(n_in + 1, dtype=torch.float64)
    expected = _grads(model, x_test, y_test) @ torch.linalg.solve(damped, _grads(model, x, y).T)
    _assert_within(
        scores, expected, _solve_bound(model, x, y, x_test, y_test, damped, 4 * (n_in + 1 + 6))
    )


def test_exact_hessian_comes_from_the_replacement_loader_cut_at_hessian_size() -> None:
    model, (x, y), (x_test, y_test) = _regression(), _data(N_TRAIN), _data(N_TEST, seed=2)
    x_h, y_h = _data(10, seed=3)
    damping = 0.3
    loader = [(x_h[:6], y_h[:6]), (x_h[6:], y_h[6:])]  # two batches, gathered in one pass
    cases = [
        ({"train_loader_replacement": loader}, x_h),
        ({"train_loader_replacement": loader, "hessian_size": 7}, x_h[:7]),
        ({"hessian_size": 5}, x[:5]),  # without a loader: the first explained examples
    ]
    for options, hessian_x in cases:
        explainer = _explainer(model, x, y, influence_method="exact", damping=damping, **options)
        scores = explainer.attribute(x_test, Y_test=y_test)
        damped = _hessian(hessian_x) + damping * torch.eye(P, dtype=torch.float64)
        g_train = _grads(model, x, y)
        expected = _grads(model, x_test, y_test) @ torch.linalg.solve(damped, g_train.T)
        bound = _solve_bound(model, x, y, x_test, y_test, damped, 8 * (P + 10))
        _assert_within(scores, expected, bound)


def test_arnoldi_keeps_the_arnoldi_rank_eigenpairs_of_largest_magnitude() -> None:
    """Rank 1: ``(g_test . u)(g_train . u) / (lambda + damping)`` with H's top eigenpair."""
    model, (x, y), (x_test, y_test) = _regression(), _data(N_TRAIN), _data(N_TEST, seed=2)
    damping = 0.3
    scores = _explainer(
        model, x, y, influence_method="arnoldi", damping=damping, arnoldi_rank=1
    ).attribute(x_test, Y_test=y_test)
    eigenvalues, eigenvectors = torch.linalg.eigh(_hessian(x))
    top, u = eigenvalues[-1], eigenvectors[:, -1]  # all positive: the largest is the last
    g_test, g_train = _grads(model, x_test, y_test), _grads(model, x, y)
    expected = torch.outer(g_test @ u, g_train @ u) / (top + damping)
    # The Ritz vector's float32 error is of order gamma(P^2) ||H|| / gap (Golub & Van Loan,
    # Section 8.1) on top of the gradients' rounding; on the magnitude |g| |u| |u| |g|^T.
    gap = (eigenvalues[-1] - eigenvalues[-2]).item()
    magnitude = torch.outer(
        _grads_magnitude(model, x_test, y_test) @ u.abs(),
        _grads_magnitude(model, x, y) @ u.abs(),
    ) / (top + damping)
    _assert_within(scores, expected, gamma(10 * P * P) * (1 + top.item() / gap) * magnitude)


# LiSSA -------------------------------------------------------------------------------------


def test_lissa_with_a_full_batch_loader_converges_to_the_damped_inverse() -> None:
    """Fixed point of ``v <- g + (1 - d) v - H v / s``, estimate ``v / s``: ``(H + d s I)^-1 g``."""
    model, (x, y), (x_test, y_test) = _regression(), _data(N_TRAIN), _data(N_TEST, seed=2)
    hessian = _hessian(x)
    damping, scale, depth = 0.25, 2 * torch.linalg.eigvalsh(hessian).max().item(), 100
    # The recursion's matrix (1 - d) I - H / s has eigenvalues in [0.25, 0.75): it contracts.
    contraction = 1 - damping - torch.linalg.eigvalsh(hessian).min().item() / scale
    assert contraction < 0.75
    scores = _explainer(
        model,
        x,
        y,
        train_loader_replacement=[(x, y)],
        recursion_depth=depth,
        damping=damping,
        scale=scale,
    ).attribute(x_test, Y_test=y_test)
    damped = hessian + damping * scale * torch.eye(P, dtype=torch.float64)
    expected = _grads(model, x_test, y_test) @ torch.linalg.solve(damped, _grads(model, x, y).T)
    # Rounding of each step (P + N_TRAIN + 8 roundings) summed over the contracting steps,
    # 1 / (1 - contraction) at most, plus the truncation contraction^depth (< 1e-12).
    magnitude = (
        _grads_magnitude(model, x_test, y_test)
        @ torch.linalg.inv(damped).abs()
        @ _grads_magnitude(model, x, y).T
    )
    bound = (gamma(4 * (P + N_TRAIN + 8)) / (1 - contraction) + 1e-12) * magnitude
    _assert_within(scores, expected, bound)


def test_lissa_arnoldi_is_lissas_truncated_series_on_the_kept_eigenpairs(float64) -> None:
    """Full rank: LiSSA's recursion with the full-batch Hessian at every step (its
    expectation), far from converged. Rank 1: LiSSA's factor on the top eigenvector, its
    factor at eigenvalue 0 on the rest."""
    model, (x, y), (x_test, y_test) = _regression(), _data(N_TRAIN), _data(N_TEST, seed=2)
    eigenvalues, eigenvectors = torch.linalg.eigh(_hessian(x))
    # q in (0.49, 0.99]: contracting, yet 30 steps leave the smallest eigenvalues' series
    # far from their limit 1 / (damping * scale + lambda).
    damping, scale, depth = 0.01, 2 * eigenvalues[-1].item(), 30
    options = dict(
        influence_method="lissa_arnoldi",
        train_loader_replacement=[(x, y)],
        recursion_depth=depth,
        damping=damping,
        scale=scale,
        arnoldi_iter=P,
    )
    full = _explainer(model, x, y, arnoldi_rank=P, **options).attribute(x_test, Y_test=y_test)
    expected, magnitude = _lissa_reference(
        model, (x, y), (x_test, y_test), [x] * depth, damping, scale
    )
    gap = (eigenvalues[1:] - eigenvalues[:-1]).min().item()
    # Float64 Ritz pairs (error ~ u ||H|| / gap, Golub & Van Loan 8.1) and sums of `depth`
    # powers: a generous count of roundings, amplified by the spectrum's conditioning.
    bound = gamma(10 * P * P * depth, U64) * (1 + eigenvalues[-1].item() / gap) * magnitude
    _assert_within(full, expected, bound)

    def factor(value: float) -> float:
        return sum((1 - damping - value / scale) ** j for j in range(depth + 1)) / scale

    top, u = eigenvalues[-1].item(), eigenvectors[:, -1]
    g_test, g_train = _grads(model, x_test, y_test), _grads(model, x, y)
    rank1 = factor(0.0) * g_test @ g_train.T
    rank1 += (factor(top) - factor(0.0)) * torch.outer(g_test @ u, g_train @ u)
    one = _explainer(model, x, y, arnoldi_rank=1, **options).attribute(x_test, Y_test=y_test)
    _assert_within(one, rank1, bound)


def test_lissa_filter_is_the_geometric_sum_near_and_far_from_a_unit_ratio() -> None:
    """Eigenvalues giving ``q = 1 - damping - lambda / scale`` of 1 exactly, within 1e-8 of
    1 (the expansion) and far from it (the closed form, including q < 0)."""
    damping, scale, depth = 1e-3, 1000.0, 100
    values = torch.tensor([-1.0, -0.999999, 0.0, 12.9, 3000.0], dtype=torch.float64)
    factors = influence_estimators.lissa_filter(values, depth, damping, scale)
    for value, got in zip(values.tolist(), factors.tolist(), strict=True):
        q = 1 - damping - value / scale
        terms = range(depth + 1)  # the estimate starts at g: depth + 1 powers
        exact = sum(q**j for j in terms) / scale
        # 101 powers up to 100: a few hundred float64 roundings, on sum |q|^j / scale.
        assert abs(got - exact) <= gamma(500, U64) * sum(abs(q) ** j for j in terms) / scale


def test_lissa_draws_hvp_batch_size_examples_with_replacement_from_the_seed() -> None:
    """Without a loader, step k's batch is the k-th ``randint(N, (B,))`` of a seeded generator."""
    model, (x, y), (x_test, y_test) = _regression(), _data(N_TRAIN), _data(N_TEST, seed=2)
    damping, scale, depth, batch, seed = 0.2, 20.0, 10, 3, 7
    scores = _explainer(
        model,
        x,
        y,
        recursion_depth=depth,
        damping=damping,
        scale=scale,
        hvp_batch_size=batch,
        seed=seed,
    ).attribute(x_test, Y_test=y_test)
    generator = torch.Generator().manual_seed(seed)
    drawn = [x[torch.randint(N_TRAIN, (batch,), generator=generator)] for _ in range(depth)]
    expected, magnitude = _lissa_reference(model, (x, y), (x_test, y_test), drawn, damping, scale)
    _assert_within(scores, expected, gamma(depth * (P + batch + N_IN + 8)) * magnitude)


def test_lissa_defaults_are_the_references_100_steps_of_200_examples_from_seed_0(
    monkeypatch,
) -> None:
    model, (x, y), (x_test, y_test) = _regression(), _data(N_TRAIN), _data(N_TEST, seed=2)
    batches: list[torch.Tensor] = []
    real_hvp = LossFunctional.hvp

    def spy(self, params, fixed, xb, tb, vectors, chunk_size=None):
        batches.append(xb.clone())
        return real_hvp(self, params, fixed, xb, tb, vectors, chunk_size)

    monkeypatch.setattr(LossFunctional, "hvp", spy)
    default = _explainer(model, x, y).attribute(x_test, Y_test=y_test)
    generator = torch.Generator().manual_seed(0)
    assert len(batches) == 100
    for drawn in batches:
        assert torch.equal(drawn, x[torch.randint(N_TRAIN, (200,), generator=generator)])
    explicit = _explainer(
        model,
        x,
        y,
        influence_method="lissa",
        recursion_depth=100,
        damping=1e-3,
        scale=1000.0,
        hvp_batch_size=200,
        seed=0,
    ).attribute(x_test, Y_test=y_test)
    assert torch.equal(default, explicit)


def test_lissa_cycles_a_loader_of_labelled_batches() -> None:
    """Labels come from the loader's batches: steps 0..4 use batches A, B, A, B, A."""
    model, (x, y), (x_test, y_test) = _regression(), _data(N_TRAIN), _data(N_TEST, seed=2)
    x_h, y_h = _data(5, seed=3)
    loader = [(x_h[:3], y_h[:3]), (x_h[3:], y_h[3:])]
    damping, scale, depth = 0.2, 20.0, 5
    scores = _explainer(
        model,
        x,
        y,
        train_loader_replacement=loader,
        recursion_depth=depth,
        damping=damping,
        scale=scale,
    ).attribute(x_test, Y_test=y_test)
    cycled = [loader[step % 2][0] for step in range(depth)]
    expected, magnitude = _lissa_reference(model, (x, y), (x_test, y_test), cycled, damping, scale)
    _assert_within(scores, expected, gamma(depth * (P + 3 + N_IN + 8)) * magnitude)


def test_lissa_over_min_vectors_train_examples_takes_the_code_split(monkeypatch) -> None:
    """From ``code_hvp.MIN_VECTORS`` explained examples on, every step's product comes from
    the Hessian split at the model's output (here all Gauss-Newton); the scores keep the
    float64 reference's rounding bound of the generic products."""
    n_train = code_hvp.MIN_VECTORS
    model, (x, y), (x_test, y_test) = _regression(), _data(n_train), _data(N_TEST, seed=2)
    damping, scale, depth, batch, seed = 0.2, 20.0, 10, 3, 7
    prepared: list[bool] = []
    real = code_hvp.CodeSplit.prepare

    def spy(self, *args):
        split = real(self, *args)
        prepared.append(split is not None)
        return split

    monkeypatch.setattr(code_hvp.CodeSplit, "prepare", spy)
    scores = _explainer(
        model,
        x,
        y,
        recursion_depth=depth,
        damping=damping,
        scale=scale,
        hvp_batch_size=batch,
        seed=seed,
    ).attribute(x_test, Y_test=y_test)
    assert prepared == [True] * depth
    generator = torch.Generator().manual_seed(seed)
    drawn = [x[torch.randint(n_train, (batch,), generator=generator)] for _ in range(depth)]
    expected, magnitude = _lissa_reference(model, (x, y), (x_test, y_test), drawn, damping, scale)
    _assert_within(scores, expected, gamma(depth * (P + batch + N_IN + 8)) * magnitude)


class _EmptyLoader:
    """Yields nothing; a second pass means the emptiness went unnoticed (no endless loop)."""

    def __init__(self) -> None:
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        assert self.passes == 1, "an empty loader was iterated again"
        return iter(())


def test_an_empty_replacement_loader_is_an_exact_error() -> None:
    x, y = _data(N_TRAIN)
    with pytest.raises(ValueError) as error:
        _explainer(_regression(), x, y, train_loader_replacement=_EmptyLoader()).attribute(
            x[:2], Y_test=y[:2]
        )
    assert str(error.value) == "train_loader_replacement yields no batches"


# Progress bars ------------------------------------------------------------------------------


def test_lissa_progress_bar_is_named_and_cleared(capsys) -> None:
    x, y = _data(N_TRAIN)
    _explainer(_regression(), x, y, progress=True, recursion_depth=2, hvp_batch_size=2).attribute(
        x[:2], Y_test=y[:2]
    )
    err = capsys.readouterr().err
    assert "\rLiSSA:   0%" in err
    # leave=False: not kept (no line end), the line blanked at the end (tqdm may draw
    # "100%" before that when a step takes over 0.1 s, so that is not checked)
    assert "\n" not in err and err.split("\r")[-2].isspace()


def test_arnoldi_progress_bar_follows_the_explainers_progress_flag(capsys) -> None:
    x, y = _data(N_TRAIN)
    options = {"influence_method": "arnoldi", "arnoldi_iter": 2}
    _explainer(_regression(), x, y, progress=True, **options).attribute(x[:2], Y_test=y[:2])
    assert "\rArnoldi:   0%" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["lissa", "arnoldi", "exact"])
def test_no_progress_bar_with_progress_false(method: str, capsys) -> None:
    x, y = _data(N_TRAIN)
    _explainer(
        _regression(),
        x,
        y,
        progress=False,
        influence_method=method,
        recursion_depth=2,
        arnoldi_iter=2,
    ).attribute(x[:2], Y_test=y[:2])
    assert capsys.readouterr().err == ""


# Arnoldi's defaults --------------------------------------------------------------------------


def test_arnoldi_defaults_keep_50_ritz_pairs_of_100_steps_on_the_models_device(
    monkeypatch,
) -> None:
    """P = 121 > 100 with distinct eigenvalues: 100 Ritz pairs, of which 50 are kept."""
    n_in = 120
    model, (x, y), (x_test, y_test) = _regression(n_in), _data(200, n_in), _data(2, n_in, seed=2)
    calls: list[tuple] = []
    real = influence_estimators.arnoldi

    def spy(*args):
        calls.append(args[2:])  # n_iter, device, seed, progress
        values, vectors = real(*args)
        calls.append(len(values))
        return values, vectors

    monkeypatch.setattr(influence_estimators, "arnoldi", spy)
    explainer = _explainer(model, x, y, influence_method="arnoldi")
    default = explainer.attribute(x_test, Y_test=y_test)
    assert calls == [(100, explainer.device, 0, False), 100]
    explicit = _explainer(
        model, x, y, influence_method="arnoldi", arnoldi_rank=50, arnoldi_iter=100, seed=0
    ).attribute(x_test, Y_test=y_test)
    assert torch.equal(default, explicit)
