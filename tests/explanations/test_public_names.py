"""The original library's public names, which its users' code imports, still work."""

from __future__ import annotations

import torch
from torch import nn


def test_nearest_neighbours_is_the_original_name_of_dknn() -> None:
    from lfxai.explanations.examples import DKNN, EXAMPLE_METHODS, NearestNeighbours

    assert NearestNeighbours is DKNN and EXAMPLE_METHODS["DKNN"] is NearestNeighbours
    encoder = nn.Linear(3, 2)
    x_train, x_test = torch.rand(5, 3), torch.rand(2, 3)
    scores = NearestNeighbours(encoder, nn.MSELoss(), X_train=x_train).attribute(x_test, None)
    with torch.no_grad():
        distances = torch.cdist(encoder(x_test), encoder(x_train)) ** 2
    torch.testing.assert_close(scores, 1 / distances, rtol=1e-5, atol=0)


def test_the_original_modules_export_the_original_names() -> None:
    from lfxai.explanations import examples, features

    for name in ("InfluenceFunctions", "TracIn", "SimplEx", "NearestNeighbours"):
        assert name in examples.__all__ and hasattr(examples, name)
    for name in ("attribute_auxiliary", "attribute_individual_dim"):
        assert callable(getattr(features, name))
