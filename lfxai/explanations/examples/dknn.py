"""Deep k-nearest neighbours: inverse squared distance between latent codes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lfxai.explanations.examples.base import ExampleBasedExplainer, LossFn


class DKNN(ExampleBasedExplainer):
    """``1 / ||f(x_test) - f(x_train)||^2`` in the encoder's latent space.

    By default every pair is scored (the full matrix, so that rankings over all training
    examples, e.g. similarity rates of the least important ones, are defined). With
    ``n_neighbours=k`` only the k nearest training examples of each test example keep their
    score and the others are set to 0, as a k-nearest-neighbour explanation would. A zero
    distance gives ``inf`` (the example is its own nearest neighbour).

    Args:
        model: model with an ``encoder`` (or an encoder itself).
        loss_f: ignored (kept for the reference's signature).
        X_train: see ``ExampleBasedExplainer``.
        n_neighbours: keep only the k nearest training examples per test example (None: all).
        **kwargs: ``Y_train``, ``target``, ``chunk_size``, ``progress``.

    References:
        Papernot & McDaniel. Deep k-Nearest Neighbors: Towards Confident, Interpretable and
        Robust Deep Learning. arXiv 1803.04765 (2018).
    """

    name = "DKNN"

    def __init__(
        self,
        model: nn.Module,
        loss_f: LossFn | None = None,
        X_train: torch.Tensor | None = None,
        *,
        n_neighbours: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, loss_f, X_train, **kwargs)
        self.n_neighbours = n_neighbours

    def _attribute(
        self,
        x_train: torch.Tensor,
        y_train: torch.Tensor | None,
        x_test: torch.Tensor,
        y_test: torch.Tensor | None,
    ) -> torch.Tensor:
        """Scores ``(n_test, n_train)``; ``n_neighbours`` keeps only the k nearest per row."""
        n_neighbours = self.n_neighbours
        train_codes = self.representations(x_train)
        test_codes = self.representations(x_test)
        rows = []
        for i in range(0, len(test_codes), self.chunk_size):
            # The direct (non-matmul) distance is exact for near-duplicates, unlike the
            # ||a||^2 + ||b||^2 - 2ab expansion, and never builds an (n, m, d) tensor.
            dist = torch.cdist(
                test_codes[i : i + self.chunk_size],
                train_codes,
                compute_mode="donot_use_mm_for_euclid_dist",
            )
            rows.append(dist.square().reciprocal())
        scores = torch.cat(rows)
        if n_neighbours is not None and n_neighbours < scores.shape[1]:
            top = scores.topk(n_neighbours, dim=1).indices
            scores = torch.zeros_like(scores).scatter_(1, top, scores.gather(1, top))
        return scores
