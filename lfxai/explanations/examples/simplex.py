"""SimplEx: each test code as a convex combination of training codes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from lfxai.explanations.examples.base import ExampleBasedExplainer, LossFn

# Rows of weights optimised together; (rows x n_train) floats times four buffers (weights,
# gradient, two Adam moments) bounds the memory of one optimisation.
MAX_ELEMENTS = 1 << 25


class SimplEx(ExampleBasedExplainer):
    """Weights ``w`` on the simplex minimising ``||f(x) - sum_n w_n f(x_n)||^2``.

    All test examples are solved in one batched optimisation: the objective is a sum of
    independent per-row terms and Adam is per-coordinate, so this is exactly the reference's
    per-example optimisation (softmax-parametrised weights from zero, Adam with
    ``simplex_lr``, ``simplex_steps`` steps), without its drop of the last incomplete batch of
    50 test examples. The importance of ``x_n`` for ``x`` is ``w_n``.

    Args:
        model: model with an ``encoder`` (or an encoder itself).
        loss_f: ignored (kept for the reference's signature).
        X_train: see ``ExampleBasedExplainer``.
        simplex_steps: Adam steps (the reference's 1000).
        simplex_lr: Adam learning rate (the reference's PyTorch default, 1e-3).
        **kwargs: ``Y_train``, ``target``, ``chunk_size``, ``progress``.

    References:
        Crabbé et al. Explaining Latent Representations with a Corpus of Examples.
        NeurIPS 2021.
    """

    name = "SimplEx"

    def __init__(
        self,
        model: nn.Module,
        loss_f: LossFn | None = None,
        X_train: torch.Tensor | None = None,
        *,
        simplex_steps: int = 1000,
        simplex_lr: float = 1e-3,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, loss_f, X_train, **kwargs)
        self.simplex_steps, self.simplex_lr = simplex_steps, simplex_lr

    def _attribute(
        self,
        x_train: torch.Tensor,
        y_train: torch.Tensor | None,
        x_test: torch.Tensor,
        y_test: torch.Tensor | None,
    ) -> torch.Tensor:
        """Weights ``(n_test, n_train)``, non-negative, each row summing to 1."""
        steps, lr = self.simplex_steps, self.simplex_lr
        train_codes = self.representations(x_train)
        test_codes = self.representations(x_test)
        rows = max(1, MAX_ELEMENTS // max(1, len(train_codes)))
        return torch.cat(
            [
                simplex_weights(test_codes[i : i + rows], train_codes, steps, lr, self.progress)
                for i in range(0, len(test_codes), rows)
            ]
        )


def simplex_weights(
    test_codes: torch.Tensor,
    train_codes: torch.Tensor,
    n_epoch: int = 1000,
    learning_rate: float = 1e-3,
    progress: bool = False,
) -> torch.Tensor:
    """Solves all rows' simplex-constrained least squares together.

    Args:
        test_codes: ``(M, d)`` codes to approximate.
        train_codes: ``(N, d)`` corpus codes.
        n_epoch: Adam steps.
        learning_rate: Adam learning rate.
        progress: show a tqdm bar.

    Returns:
        ``softmax(Z)`` of shape ``(M, N)`` after ``n_epoch`` Adam steps on
        ``sum_i ||softmax(Z_i) @ train_codes - test_codes_i||^2`` from ``Z = 0``.
    """
    test_codes, train_codes = test_codes.detach(), train_codes.detach()
    logits = torch.zeros(len(test_codes), len(train_codes), device=test_codes.device)
    logits.grad = torch.zeros_like(logits)
    # The fused Adam kernel (CPU and CUDA) measured twice as fast as the default here.
    optimizer = torch.optim.Adam([logits], lr=learning_rate, fused=True)
    for _ in tqdm(range(n_epoch), desc="SimplEx", leave=False, disable=not progress):
        # Closed-form gradient, two passes over (M, N) besides the softmax: with W = softmax(Z),
        # R = W C - h, dE/dW = 2 R C^T and dE/dZ = W * (dE/dW - s) where the row sums
        # s = rowsum(W * dE/dW) = 2 R . (W C) cost only O(M d).
        weights = torch.softmax(logits, dim=1)
        approx = weights @ train_codes
        residual = 2 * (approx - test_codes)
        shift = (residual * approx).sum(dim=1, keepdim=True)
        torch.mul(weights, torch.addmm(-shift, residual, train_codes.T), out=logits.grad)
        optimizer.step()
    return torch.softmax(logits, dim=1)
