"""The Random example importance baseline: seeded uniform scores of every pair."""

from __future__ import annotations

import pytest
import torch

from lfxai.explanations.examples.random import RandomExamples


def test_scores_every_pair_uniformly_and_reproducibly(tiny_encoder) -> None:
    train, test = torch.rand(30, 1, 8, 8), torch.rand(7, 1, 8, 8)
    explainer = RandomExamples(tiny_encoder, seed=5)
    scores = explainer.attribute_loader("cpu", [train], [test[:3], test[3:]])
    assert scores.shape == (7, 30) and ((scores >= 0) & (scores < 1)).all()
    again = RandomExamples(tiny_encoder, seed=5).attribute_loader("cpu", [train], [test])
    assert torch.equal(scores, again)
    other = RandomExamples(tiny_encoder, seed=6).attribute_loader("cpu", [train], [test])
    assert not torch.equal(scores, other)
    # another method's option is refused, not ignored
    with pytest.raises(TypeError, match="unexpected keyword argument 'simplex_steps'"):
        RandomExamples(tiny_encoder, seed=5, simplex_steps=3)
