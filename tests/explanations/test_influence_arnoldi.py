"""Influence functions' Hessian: its examples, its vmapped products and the Arnoldi solver."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, hessian, jacrev

from lfxai.explanations.examples import InfluenceFunctions, influence_estimators
from lfxai.explanations.examples.influence_estimators import arnoldi
from lfxai.explanations.examples.per_sample_grads import LossFunctional
from tests.numerics import gamma

N_CLASSES = 3


class TinyClassifier(nn.Module):
    """Explained encoder ``Linear(3, 2) + Tanh`` (P = 8 parameters), a fixed linear head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(3, 2), nn.Tanh())
        self.head = nn.Linear(2, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _labelled(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(n, 3, generator=gen), torch.randint(N_CLASSES, (n,), generator=gen)


def _classifier_explainer(
    model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, **options: Any
) -> InfluenceFunctions:
    """Influence of labelled training examples on the classifier's cross-entropy, no bar."""
    return InfluenceFunctions(
        model,
        nn.CrossEntropyLoss(),
        X_train=x_train,
        Y_train=y_train,
        target="label",
        progress=False,
        **options,
    )


def _reference(
    model: nn.Module,
    hessian_examples: tuple[torch.Tensor, torch.Tensor],
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    damping: float,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Float64 ``g_test (H + damping I)^-1 g_train^T``, H the cross-entropy Hessian of the mean
    loss over ``hessian_examples`` (torch.func.hessian, not Hessian-vector products).

    Returns the scores, the magnitude ``|g_test| |(H + damping I)^-1| |g_train|^T`` of their
    products and the condition number of ``H + damping I``.
    """
    model64 = copy.deepcopy(model).double().eval()
    names = [f"encoder.{k}" for k, _ in model64.encoder.named_parameters()]
    shapes = [p.shape for p in model64.encoder.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model64.encoder.parameters()])

    def loss(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            params[name] = theta[start : start + shape.numel()].view(shape)
            start += shape.numel()
        return nn.functional.cross_entropy(functional_call(model64, params, (x.double(),)), y)

    def grads(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.stack([jacrev(loss)(flat, x[i : i + 1], y[i : i + 1]) for i in range(len(x))])

    h = hessian(loss)(flat, *hessian_examples)
    damped = h + damping * torch.eye(len(flat), dtype=torch.float64)
    inverse = torch.linalg.inv(damped)
    g_train, g_test = grads(*train), grads(*test)
    eigenvalues = torch.linalg.eigvalsh(damped).abs()
    condition = (eigenvalues.max() / eigenvalues.min()).item()
    magnitude = g_test.abs() @ inverse.abs() @ g_train.abs().T
    return g_test @ inverse @ g_train.T, magnitude, condition


def _assert_matches(scores: torch.Tensor, expected, magnitude, condition: float) -> None:
    """Float32 gradients and Hessian products of this two-layer model take a few tens of
    roundings each; the damped solve amplifies their relative error by at most the condition
    number (Higham 2002, Section 7.1), then a P-term product forms each score: all within
    ``condition * gamma(100 P) * magnitude`` (100 roundings per parameter: generous)."""
    bound = condition * gamma(100 * 8) * magnitude
    assert ((scores.double() - expected).abs() <= bound).all(), (scores, expected, bound)


# Which examples define the Hessian ---------------------------------------------------------


def test_a_classifiers_hessian_uses_the_labels_of_its_first_hessian_size_examples() -> None:
    """Without a loader the Hessian examples are the first ``hessian_size`` explained training
    examples, each with its own label (target="label"): exact and full-rank Arnoldi agree."""
    model, damping = TinyClassifier(), 0.5
    (x_train, y_train), test = _labelled(6, seed=1), _labelled(4, seed=2)
    expected, magnitude, condition = _reference(
        model, (x_train[:4], y_train[:4]), (x_train, y_train), test, damping
    )
    options = {"damping": damping, "hessian_size": 4, "hvp_batch_size": 3}
    exact = _classifier_explainer(
        model, x_train, y_train, influence_method="exact", **options
    ).attribute(test[0], None, test[1])
    _assert_matches(exact, expected, magnitude, condition)
    full = _classifier_explainer(
        model,
        x_train,
        y_train,
        influence_method="arnoldi",
        arnoldi_rank=8,
        arnoldi_iter=8,
        **options,
    ).attribute(test[0], None, test[1])
    _assert_matches(full, expected, magnitude, condition)
    # The rule is visible: all six examples give another Hessian, far outside the bound.
    other, *_ = _reference(model, (x_train, y_train), (x_train, y_train), test, damping)
    assert not ((exact.double() - other).abs() <= 10 * condition * gamma(800) * magnitude).all()


def test_hessian_examples_come_from_the_loader_across_its_batches() -> None:
    """``train_loader_replacement`` (whatever its batches) replaces the explained examples as
    the Hessian's: its first ``hessian_size`` examples, with their labels."""
    model, damping = TinyClassifier(), 0.5
    (x_train, y_train), test = _labelled(3, seed=1), _labelled(4, seed=2)
    x_pool, y_pool = _labelled(7, seed=3)
    loader = [(x_pool[:3], y_pool[:3]), (x_pool[3:5], y_pool[3:5]), (x_pool[5:], y_pool[5:])]
    expected, magnitude, condition = _reference(
        model, (x_pool[:4], y_pool[:4]), (x_train, y_train), test, damping
    )
    scores = _classifier_explainer(
        model,
        x_train,
        y_train,
        influence_method="exact",
        damping=damping,
        train_loader_replacement=loader,
        hessian_size=4,
    ).attribute(test[0], None, test[1])
    _assert_matches(scores, expected, magnitude, condition)
    own, *_ = _reference(model, (x_train, y_train), (x_train, y_train), test, damping)
    assert not ((scores.double() - own).abs() <= 10 * condition * gamma(800) * magnitude).all()


# How many vectors each vmapped Hessian-vector product takes --------------------------------


def test_default_hvp_chunk_on_the_cpu_is_1600_examples_worth_of_vectors_and_at_least_one(
    monkeypatch,
):
    """On the CPU each batch of B Hessian examples gets ``max(1, 1600 // B)`` vectors per vmap
    chunk."""
    assert influence_estimators.HVP_TANGENTS_CPU == 1_600
    seen: list[tuple[int, int | None]] = []
    real_hessian = LossFunctional.hessian

    def spy(self, params, fixed, x, t):
        operator = real_hessian(self, params, fixed, x, t)

        def recorded(vectors, chunk_size=None):
            seen.append((len(x), chunk_size))
            return operator(vectors, chunk_size)

        return recorded

    monkeypatch.setattr(LossFunctional, "hessian", spy)
    torch.manual_seed(0)
    # No encoder: all 7 parameters are explained.
    model = nn.Sequential(nn.Linear(2, 1), nn.Linear(1, 2))
    pool = torch.rand(12_000, 2, generator=torch.Generator().manual_seed(1))

    def explainer(**sizes: int) -> InfluenceFunctions:
        options = {"influence_method": "exact", "train_loader_replacement": [(pool,)]}
        return InfluenceFunctions(
            model, nn.MSELoss(), X_train=pool[:2], progress=False, **options, **sizes
        )

    explainer(hessian_size=35, hvp_batch_size=17).attribute(pool[:1])
    # 35 examples in batches of 17: 94 vectors (17 * 94 = 1598), and 1600 for the last
    # single example.
    assert seen == [(17, 94), (17, 94), (1, 1_600)]
    seen.clear()
    explainer(hvp_batch_size=800, hessian_size=1_600).attribute(pool[:1])
    assert seen == [(800, 2), (800, 2)]
    seen.clear()
    explainer(hvp_batch_size=12_000).attribute(pool[:1])
    assert seen == [(12_000, 1)]  # 1600 // 12000 = 0 vectors: one


# The Arnoldi solver ------------------------------------------------------------------------


def _operator(dim: int) -> torch.Tensor:
    """A symmetric matrix with distinct eigenvalues 1, 2, ..., dim."""
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(0)))
    return q @ torch.diag(torch.arange(1.0, dim + 1)) @ q.T


def test_arnoldi_defaults_to_seed_0_without_a_progress_bar(float64, capsys) -> None:
    matrix = _operator(5)
    default = arnoldi(lambda v: v @ matrix, 5, n_iter=2)
    seeded = arnoldi(lambda v: v @ matrix, 5, n_iter=2, seed=0)
    other = arnoldi(lambda v: v @ matrix, 5, n_iter=2, seed=1)
    assert torch.equal(default[0], seeded[0]) and torch.equal(default[1], seeded[1])
    assert not torch.equal(default[0], other[0])  # 2 of 5 dimensions: depends on the start
    assert capsys.readouterr().err == ""


def test_arnoldi_progress_bar_is_named_and_cleared(float64, capsys) -> None:
    matrix = _operator(4)
    arnoldi(lambda v: v @ matrix, 4, n_iter=3, progress=True)
    err = capsys.readouterr().err
    assert "\rArnoldi:   0%" in err
    # leave=False: not kept (no line end), the line blanked at the end (tqdm may draw
    # "100%" before that when a step takes over 0.1 s, so that is not checked)
    assert "\n" not in err and err.split("\r")[-2].isspace()


def test_arnoldi_applies_the_operator_to_one_vector_per_step(float64) -> None:
    """Each step costs one Hessian-vector product: n_iter products of a single vector."""
    matrix = _operator(6)
    calls: list[int] = []

    def hvp(v: torch.Tensor) -> torch.Tensor:
        calls.append(len(v))
        return v @ matrix

    values, vectors = arnoldi(hvp, 6, n_iter=4)
    assert calls == [1, 1, 1, 1] and values.shape == (4,) and vectors.shape == (4, 6)


def test_a_zero_operator_gives_one_zero_eigenpair_and_no_nan() -> None:
    """A zero Hessian (e.g. a loss piecewise linear in the explained parameters) sends the
    start vector to zero: the Krylov space is exhausted after one step (residual 0 <= 1e-6 *
    0), leaving the Ritz value 0 with the unit start vector, not a division by zero."""
    calls: list[int] = []

    def zero(v: torch.Tensor) -> torch.Tensor:
        calls.append(len(v))
        return torch.zeros_like(v)

    values, vectors = arnoldi(zero, 5, n_iter=4)
    assert calls == [1]
    assert torch.equal(values, torch.zeros(1))
    assert vectors.shape == (1, 5) and torch.isfinite(vectors).all()
    # The normalised start vector: two float32 norms of 5 entries and a division.
    assert abs(vectors.norm().item() - 1) <= gamma(14)
