"""What a model is built from and how it trains: plain values the model modules share.

:class:`ModelSpec` holds the settings every builder takes, :class:`ModelRecipe` how a built
model can be built again (a logged encoder carries it), :class:`TrainingDefaults` the training
a model needs when the experiment's own settings do not suit it (the SCAE's optimiser).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypeVar

Settings = TypeVar("Settings")


@dataclass(frozen=True)
class ModelSpec:
    """What a builder needs: the shared settings of every model."""

    dim_latent: int
    input_shape: tuple[int, ...]  # one example, without the batch axis
    pretext: str = "reconstruction"
    name: str = "model"


@dataclass(frozen=True)
class ModelRecipe:
    """How a model was built: ``build_model(key, spec)`` builds it again (fresh weights).

    ``lfxai.models.registry.build_model`` sets it on every model as ``model.recipe``; a logged
    encoder carries it, so that loading rebuilds the module from our own code (see
    ``lfxai.models.stored``). A builder's options (a VAE's loss and beta) change how the
    model trains, never its networks' shapes, so the recipe leaves them out.
    """

    key: str
    spec: ModelSpec


@dataclass(frozen=True)
class TrainingDefaults:
    """The training a model needs whatever the experiment trains otherwise.

    Each field replaces the training setting of that name (``optimizer``, ``lr``,
    ``weight_decay``, ``batch_size``, ``n_epochs``, ``patience``); a profile smaller than
    ``paper`` scales them down through its own settings.

    References:
        Kosiorek et al., "Stacked Capsule Autoencoders", NeurIPS 2019 (the SCAE's).
    """

    optimizer: str
    lr: float
    weight_decay: float
    batch_size: int
    n_epochs: int
    patience: int

    def apply(self, settings: Settings) -> Settings:
        """``settings`` (a dataclass with those fields) with this model's values."""
        return dataclasses.replace(settings, **dataclasses.asdict(self))  # type: ignore[type-var]
