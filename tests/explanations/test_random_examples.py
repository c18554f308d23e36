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


def test_the_default_seed_is_zero_and_the_common_arguments_are_kept(tiny_encoder) -> None:
    train, test = torch.rand(4, 1, 8, 8), torch.rand(3, 1, 8, 8)
    scores = RandomExamples(tiny_encoder).attribute_loader("cpu", [train], [test])
    expected = torch.rand(3, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(scores, expected, rtol=0, atol=0)

    def loss(a, b):
        return (a - b).pow(2).mean()

    explainer = RandomExamples(tiny_encoder, loss, train, Y_train=torch.arange(4))
    assert explainer.loss_f is loss and explainer.X_train is train
    assert explainer.Y_train.tolist() == [0, 1, 2, 3]
