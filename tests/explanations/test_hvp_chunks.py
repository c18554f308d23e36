"""``hvp_chunk_size`` bounds the vmapped Hessian-vector products of every influence method."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lfxai.explanations.examples import InfluenceFunctions, influence_estimators
from lfxai.explanations.examples.per_sample_grads import LossFunctional


class _AE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 3), nn.Tanh(), nn.Linear(3, 2))
        self.decoder = nn.Linear(2, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class _LSTMAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.LSTM(1, 3, batch_first=True)
        self.decoder = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x)[0])


@pytest.mark.parametrize(
    "options",
    [
        {"recursion_depth": 3, "hvp_batch_size": 4},
        {"influence_method": "arnoldi", "arnoldi_iter": 4},
    ],
)
def test_hvp_chunk_size_reaches_every_hvp_and_keeps_the_scores(options, monkeypatch):
    torch.manual_seed(0)
    model, x = _AE(), torch.rand(8, 6, generator=torch.Generator().manual_seed(1))
    chunks: list[int | None] = []
    real_hessian = LossFunctional.hessian

    def spy(self, params, fixed, x, t):
        operator = real_hessian(self, params, fixed, x, t)

        def recorded(vectors, chunk_size=None):
            chunks.append(chunk_size)
            return operator(vectors, chunk_size)

        return recorded

    monkeypatch.setattr(LossFunctional, "hessian", spy)
    default = InfluenceFunctions(
        model, nn.MSELoss(), X_train=x, progress=False, **options
    ).attribute(x[:3])
    assert chunks and 1 not in chunks
    chunks.clear()
    chunked = InfluenceFunctions(
        model, nn.MSELoss(), X_train=x, progress=False, hvp_chunk_size=1, **options
    ).attribute(x[:3])
    assert chunks and set(chunks) == {1}
    torch.testing.assert_close(chunked, default, rtol=1e-4, atol=1e-6)


def test_hvp_chunk_size_must_be_positive():
    with pytest.raises(ValueError, match="^hvp_chunk_size must be positive or None, got 0$"):
        InfluenceFunctions(_AE(), nn.MSELoss(), X_train=torch.rand(4, 6), hvp_chunk_size=0)


@pytest.mark.parametrize("influence_method", ["arnoldi", "exact"])
def test_small_hessian_data_builds_each_batchs_graph_once(influence_method, monkeypatch):
    """Up to CACHED_HESSIAN_EXAMPLES Hessian examples, every product reuses the batches'
    graphs (4 Arnoldi steps or 2 exact blocks on 2 batches: 2 builds); above, each product
    builds them again. The scores are the same bit for bit."""
    torch.manual_seed(0)
    model, x = _AE(), torch.rand(8, 6, generator=torch.Generator().manual_seed(1))
    builds: list[int] = []
    real_hessian = LossFunctional.hessian

    def spy(self, params, fixed, xb, t):
        builds.append(len(xb))
        return real_hessian(self, params, fixed, xb, t)

    monkeypatch.setattr(LossFunctional, "hessian", spy)
    # The exact method's identity blocks are 256 columns: _AE's encoder fits in one block.
    options = {"influence_method": influence_method, "arnoldi_iter": 4, "hvp_batch_size": 4}
    explainer = InfluenceFunctions(model, nn.MSELoss(), X_train=x, progress=False, **options)
    cached = explainer.attribute(x[:3])
    products = 4 if influence_method == "arnoldi" else 1
    assert builds == [4, 4]
    builds.clear()
    monkeypatch.setattr(influence_estimators, "CACHED_HESSIAN_EXAMPLES", 7)
    rebuilt = explainer.attribute(x[:3])
    assert builds == [4, 4] * products
    assert torch.equal(cached, rebuilt)


def test_an_lstm_hessian_operator_gives_the_same_products_call_after_call():
    torch.manual_seed(0)
    model = _LSTMAE()
    functional = LossFunctional(model, nn.MSELoss())
    params, fixed = functional.split()
    x = torch.rand(4, 5, 1, generator=torch.Generator().manual_seed(2))
    vectors = torch.randn(
        2, functional.n_params(params), generator=torch.Generator().manual_seed(3)
    )
    operator = functional.hessian(params, fixed, x, x)
    one_by_one = torch.cat([operator(vectors[:1]), operator(vectors[1:])])
    assert torch.equal(one_by_one, functional.hvp(params, fixed, x, x, vectors))


def _curvature(device: str, hvp_chunk_size: int | None = None):
    """A Curvature whose chunk rule alone is used: no model, loss or data behind it."""
    options = InfluenceFunctions(_AE(), nn.MSELoss(), hvp_chunk_size=hvp_chunk_size)
    return influence_estimators.Curvature(
        None,
        {},
        {},
        torch.zeros(0),
        None,
        None,
        options.estimator.options,
        torch.device(device),
        False,
    )


def test_a_gpus_default_chunk_is_10000_examples_worth_of_vectors_the_cpus_1600():
    """The CPU's chunk is cache-sized (the fastest measured, see HVP_TANGENTS_CPU; the
    end-to-end rule is in test_influence_arnoldi.py); a GPU runs larger kernels better."""
    assert influence_estimators.HVP_TANGENTS == 10_000
    gpu, cpu = _curvature("cuda"), _curvature("cpu")
    assert [gpu.chunk(b) for b in (200, 10_000, 10_001, 0)] == [50, 1, 1, 10_000]
    assert [cpu.chunk(b) for b in (200, 1_601)] == [8, 1]


def test_an_explicit_chunk_size_beats_the_devices_default():
    assert _curvature("cpu", hvp_chunk_size=3).chunk(200) == 3
    assert _curvature("cuda", hvp_chunk_size=70).chunk(200) == 70
