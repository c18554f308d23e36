"""The loss protocol every trained model follows, and the generic autoencoder.

A trainable model exposes ``loss(x, y) -> scalar``: the mean of its training objective over a
batch. The training loop minimises it and the example explainers differentiate the very same
function per example (a batch of one), so a model's loss is defined once, whatever it is
(MSE or L1 reconstruction, cross-entropy, an ELBO). ``target`` says whether the loss needs
labels (``"label"``) or only the inputs (``"input"``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from lfxai.models.pretext import Identity
from lfxai.models.spec import ModelRecipe


class TrainableModel(nn.Module):
    """Base of the models the training loop fits and the example explainers explain.

    Subclasses set ``criterion`` (mean reduction) and ``target`` and may override
    :meth:`loss`. ``checkpoints_files`` and ``lr`` are filled by the training loop when
    checkpoints are requested (TracIn reads them).
    """

    target: str = "input"
    # How the model was built (set by lfxai.models.registry.build_model); None: by hand.
    recipe: ModelRecipe | None = None

    def __init__(self, name: str = "model", criterion: nn.Module | None = None) -> None:
        super().__init__()
        self.name = name
        self.loss_f = criterion if criterion is not None else nn.MSELoss()
        self.checkpoints_files: list[str] = []
        self.lr: float | None = None

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Mean training loss of a batch: ``criterion(model(x), x or y)``."""
        if self.target == "label":
            if y is None:
                raise ValueError(f"{type(self).__name__}.loss needs labels y")
            return self.loss_f(self(x), y)
        return self.loss_f(self(x), x)


class AutoEncoder(TrainableModel):
    """Encoder and decoder whose inputs are perturbed by a pretext task while training.

    The perturbation (``Identity``, ``GaussianNoise``, ``RandomMask``) is applied only in
    training mode, so an evaluated model is deterministic and explanations see clean inputs;
    the loss always compares the reconstruction with the clean input.

    Args:
        encoder: maps inputs to codes ``(N, latent_dim)``.
        decoder: maps codes back to inputs.
        latent_dim: dimension of the codes.
        input_pert: pretext perturbation applied to the inputs while training.
        name: a short identifier used in file and run names.
        loss_f: reconstruction criterion with mean reduction (default MSE).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        latent_dim: int,
        input_pert: nn.Module | None = None,
        name: str = "model",
        loss_f: nn.Module | None = None,
    ) -> None:
        super().__init__(name, loss_f)
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.input_pert = input_pert if input_pert is not None else Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstructions of ``x``, perturbed by the pretext task while training."""
        if self.training:
            x = self.input_pert(x)
        return self.decoder(self.encoder(x))


def load_state_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Loads ``state`` into ``module`` strictly: every key present, none extra, same shapes.

    Raises:
        ValueError: naming ``source``, the missing and unexpected keys and the mismatched
            shapes (torch's own check stops at the first kind and never says where the state
            came from).
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{key} {tuple(state[key].shape)} (expected {tuple(value.shape)})"
        for key, value in own.items()
        if key in state and tuple(state[key].shape) != tuple(value.shape)
    ]
    problems = [
        f"{label} {items[:5]}{' ...' if len(items) > 5 else ''}"
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shapes differ:", shapes),
        )
        if items
    ]
    if problems:
        raise ValueError(
            f"the state from {source} does not fit {type(module).__name__}: " + "; ".join(problems)
        )
    module.load_state_dict(state, strict=True)
