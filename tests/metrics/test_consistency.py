"""Representation shift and similarity rates against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lfxai.metrics.consistency import (
    encode,
    representation_shift,
    representation_shifts,
    similarity_per_example,
    similarity_rates,
)


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


def test_representation_shift_sums_over_the_code_and_averages_over_examples():
    a = torch.zeros(2, 3)
    b = torch.tensor([[1.0, 2.0, 2.0], [0.0, 0.0, 3.0]])  # squared distances 9 and 9
    assert representation_shift(a, b) == 9.0
    assert representation_shift(b, a) == 9.0
    c = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 3.0]])  # 1 and 9: mean 5
    assert representation_shift(a, c) == 5.0


def test_encode_in_batches_equals_one_pass_in_eval_mode():
    """Integer weights and inputs: every sum is exact, so batching cannot change a bit."""
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        encoder[1].weight.copy_(torch.tensor([[1.0, -2.0, 3.0, 0.0], [0.0, 1.0, 1.0, -1.0]]))
        encoder[1].bias.copy_(torch.tensor([1.0, -1.0]))
    x = torch.arange(28.0).view(7, 1, 2, 2) % 5
    encoder.train()  # BatchNorm with batch statistics: encode must switch to eval
    codes = encode(encoder, x, torch.device("cpu"), batch_size=3)
    assert not encoder.training
    with torch.no_grad():
        expected = encoder(x)  # eval mode: BatchNorm's running statistics
    assert codes.shape == (7, 2) and torch.equal(codes, expected)


def test_top_k_is_at_least_one_example_and_rounds_to_nearest():
    """k = max(1, round(pct / 100 * n_train)): 4% of 10 is 0.4 -> 1; 25% is 2.5 -> 2."""
    importance = torch.tensor([[9.0, 8, 7, 6, 5, 4, 3, 2, 1, 0]])
    train_labels = torch.tensor([0, 1, 0, 0, 1, 1, 1, 0, 1, 0])
    rates = similarity_rates(importance, torch.tensor([0]), train_labels, [4, 25, 35, 100])
    assert rates["top"] == [1.0, 0.5, 0.75, 0.5]  # first 1, 2, 4 and 10 labels
    assert rates["bottom"] == [1.0, 0.5, 0.5, 0.5]  # last 1, 2, 4 and 10 labels


def test_per_example_values_are_what_the_means_average():
    a = torch.zeros(2, 3)
    c = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    assert representation_shifts(a, c).tolist() == [1.0, 9.0]  # the claims' paired sample
    # two test examples (classes 0, 1); train labels 0, 1, 0, 1 ranked per example
    importance = torch.tensor([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    rates = similarity_per_example(
        importance, torch.tensor([0, 1]), torch.tensor([0, 1, 0, 1]), [25, 50]
    )
    # example 0 ranks 0, 1, 0, 1: top-1 shares its label, bottom-1 does not; example 1 ranks
    # 1, 0, 1, 0: the same
    assert rates["top"].tolist() == [[1.0, 1.0], [0.5, 0.5]]
    assert rates["bottom"].tolist() == [[0.0, 0.0], [0.5, 0.5]]
