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


def representation_shifts(original: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance ``(N,)`` between the codes ``(N, d)`` of each example."""
    return torch.sum((original - perturbed) ** 2, dim=-1)


def representation_shift(original: torch.Tensor, perturbed: torch.Tensor) -> float:
    """Mean squared L2 distance between two sets of codes ``(N, d)``."""
    return representation_shifts(original, perturbed).mean().item()


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
    per_example = similarity_per_example(importance, test_labels, train_labels, percentages)
    return {kind: rates.mean(dim=1).tolist() for kind, rates in per_example.items()}


def similarity_per_example(
    importance: torch.Tensor,
    test_labels: torch.Tensor,
    train_labels: torch.Tensor,
    percentages: list[float],
) -> dict[str, torch.Tensor]:
    """Per test example, the fraction of its top-k% (bottom-k%) train examples with its label.

    Args: as :func:`similarity_rates`.

    Returns:
        ``{"top": (n_pct, n_test), "bottom": (n_pct, n_test)}``.
    """
    order = torch.argsort(importance, dim=1, descending=True)
    same = (train_labels[order] == test_labels[:, None]).float()  # (n_test, n_train), ranked
    n_train = importance.shape[1]
    top, bottom = [], []
    for pct in percentages:
        k = max(1, int(round(pct / 100 * n_train)))
        top.append(same[:, :k].mean(dim=1))
        bottom.append(same[:, -k:].mean(dim=1))
    return {"top": torch.stack(top), "bottom": torch.stack(bottom)}
