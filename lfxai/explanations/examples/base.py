"""Common machinery of the label-free example importance explainers.

An explainer scores every (test example, train example) pair; ``attribute_loader`` gathers
the examples of two loaders (whatever their batch sizes), so the result always has shape
``(number of test examples, number of train examples)``. Examples are re-batched internally in
chunks sized for vectorised computation, never one at a time.

As Captum's attribution methods, each explainer takes its options in its constructor (keyword
arguments named as the experiments' settings, e.g. ``SimplEx(model, simplex_steps=100)``) and
its ``attribute`` / ``attribute_loader`` take only the examples, so an option a method lacks
is Python's own TypeError.

References:
    Crabbé & van der Schaar. Label-Free Explainability for Unsupervised Models. ICML 2022.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from lfxai.explanations.examples.per_sample_grads import (
    LossFunctional,
    eval_mode,
    model_device,
    rnn_differentiable,
)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def collect(loader: Iterable, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Concatenates the inputs (and labels, when batches are ``(x, y, ...)``) of a loader.

    Returns:
        ``X (N, ...)`` and ``Y (N, ...)`` or ``None``, on ``device``.
    """
    xs, ys = [], []
    for batch in loader:
        if isinstance(batch, (tuple, list)):
            xs.append(batch[0])
            if len(batch) > 1 and isinstance(batch[1], torch.Tensor):
                ys.append(batch[1])
        else:
            xs.append(batch)
    if not xs:
        raise ValueError("empty loader")
    y = torch.cat(ys).to(device) if len(ys) == len(xs) else None
    return torch.cat(xs).to(device), y


class ExampleBasedExplainer(ABC):
    """Scores how important each training example is for each test example.

    Args:
        model: the trained model (an autoencoder exposes ``.encoder``).
        loss_f: a criterion ``loss_f(model(x), target)``; None (default) uses the model's own
            ``loss(x, y)``, the loss it was trained with. Unused by the representation-based
            explainers.
        X_train: training inputs ``(N, ...)`` indexed by ``attribute``'s ``train_idx``.
        Y_train: training labels ``(N,)``, needed only with ``target="label"``.
        target: ``"input"`` (reconstruction loss) or ``"label"`` (supervised loss); None
            takes the model's own ``target`` attribute.
        chunk_size: examples per vectorised chunk (bounds memory, not a per-example loop).
        progress: show tqdm bars for long loops.

    References:
        Crabbé & van der Schaar. Label-Free Explainability for Unsupervised Models. ICML 2022.
    """

    name: ClassVar[str]

    def __init__(
        self,
        model: nn.Module,
        loss_f: LossFn | None = None,
        X_train: torch.Tensor | None = None,
        *,
        Y_train: torch.Tensor | None = None,
        target: str | None = None,
        chunk_size: int = 1024,
        progress: bool = True,
    ) -> None:
        self.model, self.loss_f = model, loss_f
        self.X_train, self.Y_train = X_train, Y_train
        self.target, self.chunk_size, self.progress = target, chunk_size, progress

    def __str__(self) -> str:
        return self.name

    @property
    def device(self) -> torch.device:
        """Where every tensor is created: the model's device."""
        return model_device(self.model)

    def attribute(
        self,
        X_test: torch.Tensor,
        train_idx: list[int] | torch.Tensor | None = None,
        Y_test: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Importance of ``X_train[train_idx]`` for each row of ``X_test``.

        Args:
            X_test: test inputs ``(M, ...)``.
            train_idx: indices into the ``X_train`` given at construction (None: all).
            Y_test: test labels ``(M,)`` for ``target="label"``.

        Returns:
            Importance scores ``(M, len(train_idx))`` on the CPU.
        """
        if self.X_train is None:
            raise ValueError(f"{self.name}.attribute needs X_train at construction")
        idx = slice(None) if train_idx is None else torch.as_tensor(train_idx, dtype=torch.long)
        x_train = self.X_train[idx].to(self.device)
        y_train = None if self.Y_train is None else self.Y_train[idx].to(self.device)
        y_test = None if Y_test is None else Y_test.to(self.device)
        return self._run(x_train, y_train, X_test.to(self.device), y_test)

    def attribute_loader(
        self,
        device: torch.device,
        train_loader: Iterable,
        test_loader: Iterable,
    ) -> torch.Tensor:
        """Importance of every train example for every test example of two loaders.

        Args:
            device: the model's device (kept for compatibility with the reference API).
            train_loader: yields ``(x, y)`` batches (or bare ``x``) of training examples.
            test_loader: yields test batches the same way.

        Returns:
            Importance scores ``(n_test, n_train)`` on the CPU, whatever the batch sizes.
        """
        if torch.device(device).type != self.device.type:
            raise ValueError(f"model is on {self.device}, but device={device} was given")
        x_train, y_train = collect(train_loader, self.device)
        x_test, y_test = collect(test_loader, self.device)
        return self._run(x_train, y_train, x_test, y_test)

    def _run(self, x_train, y_train, x_test, y_test) -> torch.Tensor:
        with eval_mode(self.model):
            scores = self._attribute(x_train, y_train, x_test, y_test)
        return scores.detach().cpu()

    @abstractmethod
    def _attribute(
        self,
        x_train: torch.Tensor,
        y_train: torch.Tensor | None,
        x_test: torch.Tensor,
        y_test: torch.Tensor | None,
    ) -> torch.Tensor:
        """Scores ``(n_test, n_train)`` for examples already on the model's device."""

    # Shared helpers ---------------------------------------------------------------------------

    @torch.no_grad()
    def representations(self, x: torch.Tensor) -> torch.Tensor:
        """Latent codes ``(N, d)`` of inputs ``(N, ...)``, computed chunk by chunk."""
        encoder = getattr(self.model, "encoder", self.model)
        with eval_mode(self.model):
            codes = [encoder(x[i : i + self.chunk_size]) for i in range(0, len(x), self.chunk_size)]
        return torch.cat(codes).flatten(start_dim=1)


class GradientExplainer(ExampleBasedExplainer, ABC):
    """An explainer built on per-example loss gradients w.r.t. the encoder's parameters.

    Args:
        model: the trained model.
        loss_f: a criterion (e.g. ``MSELoss()``) called as ``loss_f(model(x), target)``, or
            None for the model's own ``loss(x, y)`` (one loss for training and explaining).
        save_dir: accepted for compatibility with the reference API and ignored
            (everything stays in memory).
        X_train: see ``ExampleBasedExplainer``.
        **kwargs: ``Y_train``, ``target``, ``chunk_size``, ``progress``, ``params_module``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_f: LossFn | None = None,
        save_dir: Path | str | None = None,
        X_train: torch.Tensor | None = None,
        *,
        params_module: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, loss_f, X_train, **kwargs)
        self.functional = LossFunctional(model, loss_f, self.target, params_module)

    def _run(self, x_train, y_train, x_test, y_test) -> torch.Tensor:
        # Gradients through an RNN in eval mode need PyTorch's own RNN kernels on CUDA.
        with rnn_differentiable(self.model):
            return super()._run(x_train, y_train, x_test, y_test)

    def _grads(self, params, fixed, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """Per-example loss gradients ``(N, P)`` at the given parameters."""
        t = self.functional.targets(x, y)
        return self.functional.per_example_grads(params, fixed, x, t, self.chunk_size)

    def _scores(self, params, fixed, x_test, y_test, right: torch.Tensor) -> torch.Tensor:
        """``grad L(x_test) @ right.T`` chunk by chunk: ``(n_test, n_train)``.

        Only one chunk of test gradients is alive at a time, so memory is ``right`` plus a
        chunk, however many test examples there are.
        """
        t = self.functional.targets(x_test, y_test)
        rows = []
        for i in range(0, len(x_test), self.chunk_size):
            sl = slice(i, i + self.chunk_size)
            grads = self.functional.per_example_grads(
                params, fixed, x_test[sl], t[sl], self.chunk_size
            )
            rows.append(grads @ right.T)
        return torch.cat(rows)


def register(registry: dict[str, type], name: str, cls: type) -> None:
    """Adds ``cls`` under ``name``; a duplicate name is an error."""
    if name in registry:
        raise KeyError(f"duplicate example method {name!r}")
    registry[name] = cls
