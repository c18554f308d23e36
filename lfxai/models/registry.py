"""The model registry: ``name -> builder``, the one place an experiment gets a model from.

A builder takes the settings every model shares (latent size, pretext perturbation, the
shape of one input, a display name) and returns a :class:`TrainableModel`, whose ``loss`` is
both what trains it and what the example explainers differentiate. Data set plugins name
their model by its key here; a duplicate key raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lfxai.models.autoencoder import TrainableModel
from lfxai.models.images import AutoEncoderMnist, ClassifierMnist, DecoderMnist, EncoderMnist
from lfxai.models.pretext import make_pretext
from lfxai.models.time_series import RecurrentAutoencoder


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

    :func:`build_model` sets it on every model as ``model.recipe``; a logged encoder carries
    it, so that loading rebuilds the module from our own code (see ``lfxai.models.stored``).
    """

    key: str
    spec: ModelSpec


ModelBuilder = Callable[[ModelSpec], TrainableModel]
MODELS: dict[str, ModelBuilder] = {}


def register_model(key: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator adding a builder to :data:`MODELS` (a duplicate key raises)."""

    def decorator(builder: ModelBuilder) -> ModelBuilder:
        if key in MODELS:
            raise KeyError(f"model {key!r} is registered twice")
        MODELS[key] = builder
        return builder

    return decorator


def build_model(key: str, spec: ModelSpec) -> TrainableModel:
    """A fresh model by registry key, with its :class:`ModelRecipe` as ``model.recipe``; an
    unknown key names the valid choices."""
    if key not in MODELS:
        raise ValueError(f"unknown model {key!r}; valid choices: {sorted(MODELS)}")
    model = MODELS[key](spec)
    model.recipe = ModelRecipe(key, spec)
    return model


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


@register_model("mnist_scae")
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
def burgess_vae_model(spec: ModelSpec) -> TrainableModel:
    """The Burgess et al. VAE for ``(C, S, S)`` images, S in 32 or 64, with the beta-VAE
    objective and beta 1.

    The ``disvae`` experiment builds its VAEs with their own loss and beta through
    :func:`lfxai.models.vae.burgess_vae`; neither changes the networks, so this key rebuilds
    any of their encoders. ``spec.pretext`` does not apply and is ignored.
    """
    from lfxai.models.vae import burgess_vae

    return burgess_vae(spec.input_shape, spec.dim_latent, "beta_vae", 1.0, 1, spec.name)
