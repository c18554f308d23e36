"""Representation shift and similarity rates against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from lfxai.metrics.consistency import representation_shift, similarity_rates


def test_representation_shift_is_mean_squared_distance():
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    assert representation_shift(a, b) == pytest.approx(12.5)


def test_similarity_rates_of_a_known_ranking():
    # one test example of class 0; train labels ranked by importance: 0, 0, 1, 1
    importance = torch.tensor([[0.9, 0.1, 0.5, 0.2]])
    train_labels = torch.tensor([0, 1, 0, 1])
    rates = similarity_rates(importance, torch.tensor([0]), train_labels, [25, 50, 100])
    assert rates["top"] == [1.0, 1.0, 0.5]
    assert rates["bottom"] == [0.0, 0.0, 0.5]


def test_similarity_rates_average_over_test_examples():
    importance = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    rates = similarity_rates(importance, torch.tensor([0, 1]), torch.tensor([0, 1]), [50])
    assert rates["top"] == [0.5] and rates["bottom"] == [0.5]
