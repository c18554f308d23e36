"""Random example importance: the baseline an example importance method must beat."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lfxai.explanations.examples.base import ExampleBasedExplainer, LossFn


class RandomExamples(ExampleBasedExplainer):
    """Uniform random scores for every (test, train) pair, from a private seeded generator.

    Its similarity rates are, in expectation, the share of training examples of the test
    example's class at every k: the level a method that ranks by the representation should
    clear. Not one of the paper's methods, so not in ``EXAMPLE_METHODS``: the ``explain``
    entry point adds it beside them.

    Args:
        model: ignored except for its device (kept for the explainers' common signature).
        loss_f, X_train: see ``ExampleBasedExplainer``.
        seed: the generator's seed: the same scores for the same seed.
        **kwargs: ``Y_train``, ``target``, ``chunk_size``, ``progress``.
    """

    name = "Random"

    def __init__(
        self,
        model: nn.Module,
        loss_f: LossFn | None = None,
        X_train: torch.Tensor | None = None,
        *,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, loss_f, X_train, **kwargs)
        self.seed = seed

    def _attribute(
        self,
        x_train: torch.Tensor,
        y_train: torch.Tensor | None,
        x_test: torch.Tensor,
        y_test: torch.Tensor | None,
    ) -> torch.Tensor:
        """Scores ``(n_test, n_train)`` uniform in [0, 1), the same for the same ``seed``."""
        generator = torch.Generator().manual_seed(self.seed)
        scores = torch.rand(len(x_test), len(x_train), generator=generator)
        return scores.to(self.device)
