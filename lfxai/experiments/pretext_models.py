"""The encoders of the ``pretext`` experiment in the Model Registry: names, logging, reuse.

A task's encoder is registered as ``lfxai-<dataset>-<task>[-ae]-d<latent size>``; a run with
``pretrained=true`` resolves, loads and checks the registered versions before any work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from lfxai import tracking
from lfxai.config import ConfigError
from lfxai.experiments.common import registered_name
from lfxai.models.autoencoder import TrainableModel
from lfxai.plugins import DatasetPlugin
from lfxai.tracking import Tracker, encoder_description

if TYPE_CHECKING:
    from lfxai.experiments.pretext import PretextConfig

TITLES = {
    "reconstruction": "Reconstruction",
    "denoising": "Denoising",
    "inpainting": "Inpainting",
    "classification": "Classification",
    "scae": "SCAE",
}


def model_name(dataset: DatasetPlugin, task: str, dim_latent: int) -> str:
    """Registered name of a task's encoder: ``lfxai-mnist-denoising-ae-d4`` (the name the
    other experiments register their autoencoders under), ``lfxai-mnist-classification-d4``,
    ``lfxai-mnist-scae-d3456``."""
    suffix = "-ae" if dataset.pretext_tasks[task][0] == dataset.model else ""
    return registered_name(dataset.name, f"{task}{suffix}-d{dim_latent}")


def resolve_pretrained(
    tracker: Tracker,
    dataset: DatasetPlugin,
    config: PretextConfig,
    dim_latent: dict[str, int],
) -> list[dict[str, str]]:
    """Per run, ``task -> models:/<name>/<version>`` of the registered encoders to reuse.

    Raises:
        ConfigError: a model is not registered, has too few versions for ``latest``, or
            lacks the version or alias asked for (each named, with what exists).
    """
    wanted = config.pretrained_version
    chosen: list[dict[str, str]] = [{} for _ in range(config.n_runs)]
    for task in config.tasks:
        name = model_name(dataset, task, dim_latent[task])
        versions = tracker.model_versions(name)
        if not versions:
            known = tracker.registered_models(registered_name(dataset.name, ""))
            raise ConfigError(
                f"pretrained=true but no registered model {name!r} (task {task}); train it "
                f"first with pretrained=false. Registered lfxai models: {known}"
            )
        if wanted == "latest":
            # The newest versions pretext trained: the autoencoders' names also hold
            # versions of consistency_features and consistency_examples.
            versions = [v for v in versions if v.tags.get("lfxai.experiment") == "pretext"]
            if len(versions) < config.n_runs:
                raise ConfigError(
                    f"pretrained_version=latest reuses the {config.n_runs} newest versions of "
                    f"{name!r} that pretext trained (one per run) but it has {len(versions)}; "
                    f"pass n_runs={len(versions)}, a version number or an alias"
                )
            picks = [str(v.version) for v in versions[: config.n_runs]]
        elif wanted.isdigit():
            numbers = [str(v.version) for v in versions]
            if wanted not in numbers:
                raise ConfigError(
                    f"registered model {name!r} has no version {wanted}; valid: {numbers}"
                )
            picks = [wanted] * config.n_runs
        else:
            version = tracker.model_version_by_alias(name, wanted)
            if version is None:
                raise ConfigError(
                    f"registered model {name!r} has no alias {wanted!r}; valid aliases: "
                    f"{tracker.model_aliases(name)} (or 'latest', or a version number)"
                )
            picks = [str(version.version)] * config.n_runs
        for run, version in enumerate(picks):
            chosen[run][task] = f"models:/{name}/{version}"
    return chosen


def load_encoder(uri: str, example: torch.Tensor, dim_latent: int) -> nn.Module:
    """A registered encoder, loaded without pickle (:func:`lfxai.tracking.load_encoder`) and
    checked on one example: inputs accepted, codes of size ``dim_latent``."""
    try:
        encoder = tracking.load_encoder(uri)
    except tracking.EncoderRefused as error:
        raise ConfigError(f"pretrained=true: {error}") from None
    try:
        with torch.no_grad():
            codes = encoder(example.cpu())
    except Exception as error:  # any failure here means the model does not fit the data
        shape = tuple(example.shape[1:])
        raise ConfigError(
            f"registered model {uri} is incompatible: it does not accept inputs of shape "
            f"{shape} ({type(error).__name__}: {error})"
        ) from None
    if codes.dim() != 2 or codes.shape[1] != dim_latent:
        raise ConfigError(
            f"registered model {uri} is incompatible: its codes have shape "
            f"{tuple(codes.shape[1:])}, this run needs ({dim_latent},)"
        )
    return encoder


def log_task_encoder(
    tracker: Tracker,
    dataset: DatasetPlugin,
    config: PretextConfig,
    task: str,
    model: TrainableModel,
    example: torch.Tensor,
    test_loss: float,
) -> str:
    """Logs a task's trained encoder; with ``register_model``, registers and describes it.

    Through :meth:`Tracker.register_encoder`, as every experiment: the version gets the
    same tags and description as the other experiments' (run, data digest, test loss) and
    the aliases ``@<profile>`` and ``@pretext-<profile>``; ``pretrained_version=<alias>``
    reuses one. An autoencoder's registered model and description are the ones the other
    experiments register it under.

    Returns:
        The model URI (``models:/<name>/<version>`` when registered).
    """
    name = model_name(dataset, task, model.latent_dim) if config.register_model else None
    shape = ", ".join(str(n) for n in example.shape[1:])
    autoencoder = dataset.pretext_tasks[task][0] == dataset.model
    what = dataset.model_label(task) if autoencoder else f"{TITLES[task]} model"
    about = encoder_description(
        name or "<name>", shape, model.latent_dim, f"the {dataset.title} {what}"
    )
    details = f"pretext task {TITLES[task]}, n_epochs={config.n_epochs}, seed={config.seed}"
    tags = {"lfxai.pretext": task, "lfxai.dim_latent": model.latent_dim}
    return tracker.register_encoder(model, example, name, test_loss, about, details, tags)
