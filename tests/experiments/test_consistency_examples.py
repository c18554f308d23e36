"""The class-balanced subset of consistency_examples."""

from __future__ import annotations

import pytest
import torch

from lfxai.config import ConfigError
from lfxai.experiments.consistency_examples import balanced_subset


def test_balanced_subset_has_equal_class_counts_and_no_repeats():
    labels = torch.arange(10).repeat_interleave(30)
    idx = balanced_subset(labels, 105, torch.Generator().manual_seed(0))
    assert len(idx) == len(set(idx.tolist())) == 105
    counts = torch.bincount(labels[idx], minlength=10)
    assert counts.max() - counts.min() <= 1


def test_balanced_subset_is_seeded():
    labels = torch.arange(4).repeat(50)
    a = balanced_subset(labels, 20, torch.Generator().manual_seed(1))
    b = balanced_subset(labels, 20, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_balanced_subset_too_large_is_an_error():
    labels = torch.tensor([0, 0, 0, 1])
    with pytest.raises(ConfigError, match="class 1 has only 1"):
        balanced_subset(labels, 4, torch.Generator().manual_seed(0))
