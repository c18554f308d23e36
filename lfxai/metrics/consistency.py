"""Consistency checks of label-free explanations (paper Section 4.1)."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def encode(
    encoder: nn.Module, inputs: torch.Tensor, device: torch.device, batch_size: int = 1000
) -> torch.Tensor:
    """Codes ``(N, d)`` of ``inputs`` computed in batches on ``device``, returned on the CPU."""
    encoder.eval()
    chunks = [encoder(x.to(device)).cpu() for x in torch.split(inputs, batch_size)]
    return torch.cat(chunks)


def representation_shift(original: torch.Tensor, perturbed: torch.Tensor) -> float:
    """Mean squared L2 distance between two sets of codes ``(N, d)``."""
    return torch.sum((original - perturbed) ** 2, dim=-1).mean().item()


def similarity_rates(
    importance: torch.Tensor,
    test_labels: torch.Tensor,
    train_labels: torch.Tensor,
    percentages: list[float],
) -> dict[str, list[float]]:
    """How often the most (least) important train examples share the test example's label.

    For each test example and each ``k`` in ``percentages``, the fraction of its top-k%
    (bottom-k%) train examples by importance with its label; averaged over test examples.

    Args:
        importance: ``(n_test, n_train)`` example importance.
        test_labels: ``(n_test,)``.
        train_labels: ``(n_train,)``.
        percentages: values of k, in ``(0, 100]``.

    Returns:
        ``{"top": [...], "bottom": [...]}``, one rate per percentage.
    """
    order = torch.argsort(importance, dim=1, descending=True)
    same = (train_labels[order] == test_labels[:, None]).float()  # (n_test, n_train), ranked
    n_train = importance.shape[1]
    rates: dict[str, list[float]] = {"top": [], "bottom": []}
    for pct in percentages:
        k = max(1, int(round(pct / 100 * n_train)))
        rates["top"].append(same[:, :k].mean().item())
        rates["bottom"].append(same[:, -k:].mean().item())
    return rates
