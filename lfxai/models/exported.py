"""An encoder that lfxai did not build: a ``torch.export`` graph, used as a plain module.

A user registers their own encoder in MLflow's pickle-free ``pt2`` format
(``mlflow.pytorch.log_model(encoder, ..., serialization_format="pt2")``); MLflow loads it
back as the graph module of a ``torch.export`` program. That module computes the same codes
and passes gradients to its inputs, but refuses ``train()`` / ``eval()`` (its operators were
fixed in the mode it was exported in), which every explainer calls. :class:`ExportedEncoder`
holds it so that those calls only set a flag.
"""

from __future__ import annotations

import torch
from torch import nn


class ExportedEncoder(nn.Module):
    """A ``torch.export`` graph module as an encoder ``(N, ...) -> (N, d)``.

    ``train(mode)`` and ``eval()`` change this wrapper's flag only: the graph keeps the mode
    it was exported in (a user exports an encoder in eval mode, as MLflow's ``pt2`` format
    asks). Parameters, buffers and ``to(device)`` are the graph's.

    Args:
        graph: the module of ``torch.export.load(...)`` (what ``mlflow.pytorch.load_model``
            returns for a ``pt2`` model).
    """

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """The exported graph's output for ``inputs``."""
        return self.graph(inputs)

    def train(self, mode: bool = True) -> ExportedEncoder:
        """Records the mode only: the exported graph has no train / eval switch."""
        self.training = mode  # not passed on: the exported graph has no train / eval switch
        return self
