"""``hvp_chunk_size`` bounds the vmapped Hessian-vector products of every influence method."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lfxai.explanations.examples import InfluenceFunctions
from lfxai.explanations.examples.per_sample_grads import LossFunctional


class _AE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 3), nn.Tanh(), nn.Linear(3, 2))
        self.decoder = nn.Linear(2, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


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
    real_hvp = LossFunctional.hvp

    def spy(self, params, fixed, x, t, vectors, chunk_size=None):
        chunks.append(chunk_size)
        return real_hvp(self, params, fixed, x, t, vectors, chunk_size)

    monkeypatch.setattr(LossFunctional, "hvp", spy)
    explainer = InfluenceFunctions(model, nn.MSELoss(), X_train=x, progress=False)
    default = explainer.attribute(x[:3], **options)
    assert chunks and 1 not in chunks
    chunks.clear()
    chunked = explainer.attribute(x[:3], hvp_chunk_size=1, **options)
    assert chunks and set(chunks) == {1}
    torch.testing.assert_close(chunked, default, rtol=1e-4, atol=1e-6)


def test_hvp_chunk_size_must_be_positive():
    explainer = InfluenceFunctions(_AE(), nn.MSELoss(), X_train=torch.rand(4, 6), progress=False)
    with pytest.raises(ValueError, match="hvp_chunk_size"):
        explainer.attribute(torch.rand(2, 6), hvp_chunk_size=0)
