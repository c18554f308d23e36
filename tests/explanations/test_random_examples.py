"""The Random example importance baseline: seeded uniform scores of every pair."""

from __future__ import annotations

import torch

from lfxai.explanations.examples.random import RandomExamples


def test_scores_every_pair_uniformly_and_reproducibly(tiny_encoder) -> None:
    train, test = torch.rand(30, 1, 8, 8), torch.rand(7, 1, 8, 8)
    explainer = RandomExamples(tiny_encoder)
    scores = explainer.attribute_loader("cpu", [train], [test[:3], test[3:]], seed=5)
    assert scores.shape == (7, 30) and ((scores >= 0) & (scores < 1)).all()
    again = RandomExamples(tiny_encoder).attribute_loader("cpu", [train], [test], seed=5)
    assert torch.equal(scores, again)
    other = explainer.attribute_loader("cpu", [train], [test], seed=6)
    assert not torch.equal(scores, other)
    # options of the other methods (one set drives every explainer) are ignored
    explainer.attribute_loader("cpu", [train], [test], seed=5, simplex_steps=3)
