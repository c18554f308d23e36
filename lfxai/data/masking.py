"""Masks that remove the most important features of each example, built for a whole batch.

Used by the consistency checks (perturb the top-k% features, measure the representation
shift) and by ROAR (retrain on images whose top-k% pixels are removed).
"""

from __future__ import annotations

import torch


def top_k_mask(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """Boolean mask of the ``fraction`` highest-scoring features of every example.

    One ``topk`` over the flattened features and one ``scatter``: no loop over examples or
    features. Exactly ``round(fraction * n_features)`` entries are set per example (ties are
    broken by ``topk``).

    Args:
        scores: importance ``(N, *feature_shape)``.
        fraction: share of features to select, in ``[0, 1]``.

    Returns:
        ``(N, *feature_shape)`` boolean tensor, True where a feature is selected.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    flat = scores.reshape(len(scores), -1)
    k = int(round(fraction * flat.shape[1]))
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if k > 0:
        top = torch.topk(flat, k, dim=1).indices
        mask.scatter_(1, top, True)
    return mask.view_as(scores)


def apply_mask(
    inputs: torch.Tensor, mask: torch.Tensor, replacement: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """Replaces the masked features of ``inputs`` by ``replacement`` (a value or a tensor).

    Args:
        inputs: ``(N, *feature_shape)``.
        mask: boolean, broadcastable to ``inputs`` (e.g. one mask for all colour channels).
        replacement: scalar, or a tensor broadcastable to ``inputs`` (a blurred image, the
            mean training sequence, ...).

    Returns:
        A new tensor; ``inputs`` is not modified.
    """
    if not isinstance(replacement, torch.Tensor):
        replacement = torch.tensor(replacement, dtype=inputs.dtype, device=inputs.device)
    return torch.where(mask, replacement.to(inputs.device, inputs.dtype), inputs)
