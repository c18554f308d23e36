"""The inverse-Hessian estimators: one registered class per ``influence_method``.

Each estimator's scores on a tiny tanh autoencoder are checked against a float64 reference
computed inline from the dense Hessian (autograd, one example at a time). The Hessian data is
one full batch, so LiSSA is deterministic (its expectation, the truncated series) and the
Arnoldi estimators at full rank are matrix functions of H, independent of how the eigenvectors
of close eigenvalues are rotated.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import hessian

from lfxai.explanations.examples import InfluenceFunctions
from lfxai.explanations.examples.influence_estimators import (
    ESTIMATORS,
    InfluenceOptions,
    InverseHessianEstimator,
    register_estimator,
)
from tests.numerics import gamma

N_TRAIN, N_TEST, N_HESSIAN = 6, 4, 9
DAMPING, SCALE, DEPTH = 0.5, 4.0, 30


class _AE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(4, 2), nn.Tanh())
        self.decoder = nn.Linear(2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def _data(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 4, generator=torch.Generator().manual_seed(seed))


def _references(x_train, x_test, x_hessian) -> dict[str, torch.Tensor]:
    """Float64 scores of each estimator: ``G_test M G_train^T`` with the dense Hessian.

    The loss is written out from ``_AE``'s weights (the encoder's, flattened as
    ``named_parameters`` orders them, are the variables), in float64.
    """
    model = _AE()
    w2, b2 = (p.detach().double() for p in model.decoder.parameters())
    flat = torch.cat([p.detach().double().reshape(-1) for p in model.encoder.parameters()])

    def loss(vector: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        w1, b1 = vector[:8].reshape(2, 4), vector[8:]
        x = x.double()
        return ((torch.tanh(x @ w1.T + b1) @ w2.T + b2 - x) ** 2).mean()

    def grads(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.func.grad(loss)(flat, x[i : i + 1]) for i in range(len(x))])

    g_train, g_test = grads(x_train), grads(x_test)
    h = hessian(loss)(flat, x_hessian)
    h = (h + h.T) / 2
    eye = torch.eye(len(h), dtype=torch.float64)
    inverse = torch.linalg.inv(h + DAMPING * eye)
    # LiSSA with one full batch: v <- g + (1 - d) v - v H / s, estimate v / s.
    step = (1 - DAMPING) * eye - h / SCALE
    series = sum(torch.linalg.matrix_power(step, j) for j in range(DEPTH + 1)) / SCALE
    return {
        "exact": g_test @ inverse @ g_train.T,
        "arnoldi": g_test @ inverse @ g_train.T,  # full rank: the same damped inverse
        "lissa": g_test @ series @ g_train.T,
        "lissa_arnoldi": g_test @ series @ g_train.T,  # full rank: LiSSA's expectation
        "magnitude": g_test.abs() @ (inverse.abs() + series.abs()) @ g_train.abs().T,
        "condition": torch.linalg.cond(h + DAMPING * eye),
    }


def test_the_registry_lists_the_four_estimators_in_order() -> None:
    assert list(ESTIMATORS) == ["lissa", "arnoldi", "exact", "lissa_arnoldi"]
    for name, cls in ESTIMATORS.items():
        assert cls.name == name and issubclass(cls, InverseHessianEstimator)


def test_a_duplicate_estimator_name_is_refused() -> None:
    class Again(InverseHessianEstimator):
        name = "lissa"

        def right_hand_side(self, curvature, train_grads):
            return train_grads

    with pytest.raises(KeyError, match="^\"duplicate influence_method 'lissa'\"$"):
        register_estimator(Again)
    assert ESTIMATORS["lissa"] is not Again


def test_influence_functions_holds_the_named_estimator_with_its_options() -> None:
    explainer = InfluenceFunctions(
        _AE(), nn.MSELoss(), influence_method="arnoldi", damping=0.2, seed=3
    )
    assert type(explainer.estimator) is ESTIMATORS["arnoldi"]
    assert explainer.estimator.options == InfluenceOptions(
        recursion_depth=100,
        damping=0.2,
        scale=1000.0,
        hvp_batch_size=200,
        seed=3,
        arnoldi_rank=50,
        arnoldi_iter=100,
        hessian_size=None,
        max_exact_params=10_000,
        hvp_chunk_size=None,
    )


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_each_estimator_gives_its_float64_reference_scores(name: str) -> None:
    """Float32 gradients and Hessian products over P = 10 parameters, a damped solve or 30
    recursion steps: a few hundred roundings per score, amplified by at most the condition
    number of the damped Hessian (Higham 2002, Section 7.1): ``condition * gamma(1000)`` on
    the magnitude (the same products with absolute values)."""
    model = _AE()
    x_train, x_test, x_hessian = _data(N_TRAIN, 1), _data(N_TEST, 2), _data(N_HESSIAN, 3)
    n_params = sum(p.numel() for p in model.encoder.parameters())
    explainer = InfluenceFunctions(
        model,
        nn.MSELoss(),
        X_train=x_train,
        progress=False,
        influence_method=name,
        train_loader_replacement=[(x_hessian,)],
        hvp_batch_size=N_HESSIAN,
        recursion_depth=DEPTH,
        damping=DAMPING,
        scale=SCALE,
        arnoldi_iter=n_params,
        arnoldi_rank=n_params,
    )
    scores = explainer.attribute(x_test)
    reference = _references(x_train, x_test, x_hessian)
    bound = reference["condition"].item() * gamma(1000) * reference["magnitude"]
    assert scores.shape == (N_TEST, N_TRAIN)
    assert ((scores.double() - reference[name]).abs() <= bound).all(), (scores, reference[name])
