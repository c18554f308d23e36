"""TracIn: learning-rate-weighted gradient similarity summed over training checkpoints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from lfxai.explanations.examples.base import GradientExplainer, LossFn

Checkpoint = str | Path | Mapping[str, torch.Tensor]


class TracIn(GradientExplainer):
    """``sum_c lr_c <grad L_c(x_test), grad L_c(x_train)>`` over checkpoints ``c``.

    Gradients are per-example losses w.r.t. the encoder's parameters, with each checkpoint's
    weights plugged into the model functionally (the model itself is never modified).
    Checkpoints default to ``model.checkpoints_files`` (whole-model state dicts written by
    ``lfxai.training.fit``) and the learning rate to ``model.lr``.

    Args:
        model, loss_f, save_dir, X_train: see ``GradientExplainer``.
        checkpoints: paths or in-memory state dicts; None: the model's ``checkpoints_files``.
        learning_rate: one rate for all checkpoints or one per checkpoint; None: ``model.lr``
            (1 when the model has none).
        **kwargs: ``Y_train``, ``target``, ``chunk_size``, ``progress``, ``params_module``.

    References:
        Pruthi et al. Estimating Training Data Influence by Tracing Gradient Descent.
        NeurIPS 2020.
    """

    name = "TracIn"

    def __init__(
        self,
        model: nn.Module,
        loss_f: LossFn | None = None,
        save_dir: Path | str | None = None,
        X_train: torch.Tensor | None = None,
        *,
        checkpoints: Sequence[Checkpoint] | None = None,
        learning_rate: float | Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, loss_f, save_dir, X_train, **kwargs)
        self.checkpoints, self.learning_rate = checkpoints, learning_rate

    def _attribute(
        self,
        x_train: torch.Tensor,
        y_train: torch.Tensor | None,
        x_test: torch.Tensor,
        y_test: torch.Tensor | None,
    ) -> torch.Tensor:
        """Scores ``(n_test, n_train)``, summed over the checkpoints."""
        own = getattr(self.model, "checkpoints_files", None)
        checkpoints = list(self.checkpoints or own or [])
        if not checkpoints:
            raise ValueError("TracIn needs checkpoints: train with checkpoint_every > 0")
        rates = self._rates(self.learning_rate, len(checkpoints))
        scores = torch.zeros(len(x_test), len(x_train), device=self.device)
        bar = tqdm(checkpoints, desc="TracIn checkpoints", leave=False, disable=not self.progress)
        for rate, checkpoint in zip(rates, bar, strict=True):
            params, fixed = self.functional.split(self._state(checkpoint))
            train_grads = self._grads(params, fixed, x_train, y_train)
            scores += rate * self._scores(params, fixed, x_test, y_test, train_grads)
            del train_grads  # free before the next checkpoint's gradients are built
        return scores

    def _rates(self, learning_rate, n: int) -> list[float]:
        if learning_rate is None:
            learning_rate = getattr(self.model, "lr", None) or 1.0
        if isinstance(learning_rate, (int, float)):
            return [float(learning_rate)] * n
        rates = [float(r) for r in learning_rate]
        if len(rates) != n:
            raise ValueError(f"{len(rates)} learning rates for {n} checkpoints")
        return rates

    def _state(self, checkpoint: Checkpoint) -> dict[str, torch.Tensor]:
        """A checkpoint's tensors on the model's device; missing keys keep current values."""
        if not isinstance(checkpoint, Mapping):
            checkpoint = torch.load(checkpoint, map_location=self.device, weights_only=True)
        current = {**dict(self.model.named_parameters()), **dict(self.model.named_buffers())}
        return {**current, **{k: v.to(self.device) for k, v in checkpoint.items()}}
