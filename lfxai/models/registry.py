"""The model registry: ``key -> entry``, the one place an experiment gets a model from.

An entry's builder takes the settings every model shares (latent size, pretext perturbation,
the shape of one input, a display name) and, as keywords, its own options (a VAE's loss and
beta), and returns a :class:`TrainableModel`, whose ``loss`` is both what trains it and what
the example explainers differentiate. An entry may also hold the training its model needs
(:class:`TrainingDefaults`: the SCAE's optimiser). Data set plugins name their model by its
key here; a duplicate key raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lfxai.models.autoencoder import TrainableModel
from lfxai.models.images import AutoEncoderMnist, ClassifierMnist, DecoderMnist, EncoderMnist
from lfxai.models.pretext import make_pretext
from lfxai.models.spec import ModelRecipe, ModelSpec, TrainingDefaults
from lfxai.models.time_series import RecurrentAutoencoder

__all__ = [
    "MODELS",
    "ModelEntry",
    "ModelRecipe",
    "ModelSpec",
    "TrainingDefaults",
    "build_model",
    "register_model",
    "training_defaults",
]

ModelBuilder = Callable[..., TrainableModel]  # (spec, **options) -> model


@dataclass(frozen=True)
class ModelEntry:
    """One registered model: how to build it and, if it needs its own, how to train it."""

    build: ModelBuilder
    training: TrainingDefaults | None = None


MODELS: dict[str, ModelEntry] = {}


def register_model(
    key: str, training: TrainingDefaults | None = None
) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator adding a builder (and its model's training) to :data:`MODELS`.

    A duplicate key raises.
    """

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if key in MODELS:
            raise KeyError(f"model {key!r} is registered twice")
        MODELS[key] = ModelEntry(builder, training)
        return builder

    return decorator


def build_model(key: str, spec: ModelSpec, **options: Any) -> TrainableModel:
    """A fresh model by registry key, with its :class:`ModelRecipe` as ``model.recipe``.

    Args:
        key: the model's key; an unknown key names the valid choices.
        spec: the settings every model takes.
        **options: the builder's own keywords (e.g. ``burgess_vae``'s ``loss``, ``beta``).
    """
    if key not in MODELS:
        raise ValueError(f"unknown model {key!r}; valid choices: {sorted(MODELS)}")
    model = MODELS[key].build(spec, **options)
    model.recipe = ModelRecipe(key, spec)
    return model


def training_defaults(key: str) -> TrainingDefaults | None:
    """The training model ``key`` needs (None: the experiment's settings suit it)."""
    if key not in MODELS:
        raise ValueError(f"unknown model {key!r}; valid choices: {sorted(MODELS)}")
    return MODELS[key].training


def _check_shape(key: str, spec: ModelSpec, expected: tuple[int | None, ...]) -> None:
    ok = len(spec.input_shape) == len(expected) and all(
        e is None or e == s for e, s in zip(expected, spec.input_shape, strict=True)
    )
    if not ok:
        raise ValueError(f"model {key!r} takes inputs of shape {expected}, got {spec.input_shape}")


@register_model("mnist_ae")
def mnist_ae(spec: ModelSpec) -> TrainableModel:
    """The paper's MNIST conv autoencoder (MSE) with a pretext perturbation."""
    _check_shape("mnist_ae", spec, (1, 28, 28))
    return AutoEncoderMnist(
        EncoderMnist(spec.dim_latent),
        DecoderMnist(spec.dim_latent),
        latent_dim=spec.dim_latent,
        input_pert=make_pretext(spec.pretext),
        name=spec.name,
    )


@register_model("mnist_classifier")
def mnist_classifier(spec: ModelSpec) -> TrainableModel:
    """The MNIST encoder with a linear head over 10 classes (cross-entropy)."""
    _check_shape("mnist_classifier", spec, (1, 28, 28))
    return ClassifierMnist(EncoderMnist(spec.dim_latent), spec.dim_latent, name=spec.name)


@register_model("lstm_ae")
def lstm_ae(spec: ModelSpec) -> TrainableModel:
    """The LSTM autoencoder (L1) for ``(T, n_features)`` sequences."""
    _check_shape("lstm_ae", spec, (None, None))
    seq_len, n_features = spec.input_shape
    return RecurrentAutoencoder(
        seq_len,
        spec.dim_latent,
        n_features,
        input_pert=make_pretext(spec.pretext),
        name=spec.name,
    )


# The paper's SCAE training (SPEC section 2): RMSprop at lr 1e-5 (momentum 0.9, eps from the
# batch size and gradient clipping at norm 5 are the model's own), batch 128, 30 epochs.
SCAE_TRAINING = TrainingDefaults(
    optimizer="rmsprop", lr=1e-5, weight_decay=0.0, batch_size=128, n_epochs=30, patience=10
)


@register_model("mnist_scae", training=SCAE_TRAINING)
def mnist_scae(spec: ModelSpec) -> TrainableModel:
    """The Stacked Capsule Autoencoder (24 part and 24 object capsules, 11x11 templates).

    Its representation has a fixed size, 24 part capsules x 144 values: ``spec.dim_latent``
    and ``spec.pretext`` do not apply and are ignored.
    """
    _check_shape("mnist_scae", spec, (1, 28, 28))
    from lfxai.models.scae import StackedCapsuleAutoencoder

    return StackedCapsuleAutoencoder(image_size=spec.input_shape[-1], name=spec.name)


@register_model("simclr_resnet18")
def simclr_resnet18(spec: ModelSpec) -> TrainableModel:
    """SimCLR with a ResNet-18 for 32x32 RGB images; its encoder gives 512 features."""
    from lfxai.models.simclr import FEATURE_DIM, SimCLR  # torchvision loads on first use

    _check_shape("simclr_resnet18", spec, (3, 32, 32))
    if spec.dim_latent != FEATURE_DIM:
        raise ValueError(
            f"model 'simclr_resnet18' has {FEATURE_DIM} encoder features (ResNet-18), "
            f"got dim_latent={spec.dim_latent}"
        )
    return SimCLR(name=spec.name)


@register_model("burgess_vae")
def burgess_vae_model(
    spec: ModelSpec, *, loss: str = "beta_vae", beta: float = 1.0, dataset_size: int = 1
) -> TrainableModel:
    """The Burgess et al. VAE for ``(C, S, S)`` images, S in 32 or 64.

    Args:
        spec: latent size, input shape, name (``spec.pretext`` does not apply).
        loss: ``beta_vae`` or ``beta_tc_vae``.
        beta: the loss's beta.
        dataset_size: training examples (beta-TC-VAE's minibatch-weighted sampling).

    Neither option changes the networks, so the key alone rebuilds any of their encoders.
    """
    from lfxai.models.vae import burgess_vae

    return burgess_vae(spec.input_shape, spec.dim_latent, loss, beta, dataset_size, spec.name)
