"""Pieces shared by the experiments: autoencoder settings, a tracked fit, logged data."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lfxai.config import BaseConfig, ConfigError, check_choices, check_positive
from lfxai.data.provision import data_digest
from lfxai.data.splits import Split
from lfxai.devices import get_device
from lfxai.models.autoencoder import TrainableModel, load_state_strict
from lfxai.models.pretext import PRETEXTS
from lfxai.plugins import DatasetPlugin, Splits
from lfxai.tracking import (
    DATA_DIGEST_TAG,
    ENCODER_URI_TAG,
    EncoderRefused,
    Tracker,
    encoder_description,
    experiment_alias,
    load_encoder,
    registered_name,
)
from lfxai.training import EpochCallback, FitResult, TrainingSettings, fit


@dataclass(frozen=True)
class AutoencoderConfig(BaseConfig):
    """Settings shared by experiments that train an autoencoder on (a prefix of) a data set.

    ``split`` names how the data set is split (one of its plugin's ``splits``).
    """

    pretext: str
    patience: int
    split: str
    n_train: int | None
    n_test: int | None
    register_model: bool

    def validate(self) -> None:
        """Raises :class:`ConfigError` naming the bad value and the valid choices."""
        super().validate()
        check_choices("pretext", [self.pretext], PRETEXTS)
        check_positive(self, "n_train", "n_test")


def load_splits(
    dataset: DatasetPlugin, config: AutoencoderConfig, tracker: Tracker | None
) -> Splits:
    """The experiment's splits, logged: sizes and device as params, splits as the run's inputs.

    The splits are logged as the run's dataset inputs by :func:`log_data_inputs`.

    The data set's files are checked first (:meth:`DatasetPlugin.provision`): the tag
    ``lfxai.data_source`` says where they came from and ``lfxai.data_repaired`` names any file
    that failed its checksum and was replaced. Without a ``tracker`` (a sweep's worker
    process, whose parent run logged the same splits) nothing is logged.
    """
    provisioned = dataset.provision(config.data_dir)
    splits = dataset.load(config.data_dir, config.split, config.seed, config.n_train, config.n_test)
    if tracker is None:
        return splits
    tracker.set_tags({"lfxai.data_source": provisioned.source})
    if provisioned.repaired:
        tracker.set_tags({"lfxai.data_repaired": "\n".join(provisioned.repaired)})
    tracker.log_params(
        {
            "n_train_used": len(splits.train),
            "n_test_used": len(splits.test),
            "device_used": get_device(config.device),
        }
    )
    log_data_inputs(tracker, dataset, config, splits)
    return splits


def split_digest(dataset: DatasetPlugin, config: AutoencoderConfig, role: str, size: int) -> str:
    """The digest of one split: the provisioned files' sha256 and how the split was drawn."""
    files = dataset.provisioned_files(config.data_dir)
    selection = f"dataset={dataset.name};split={config.split};seed={config.seed};{role}={size}"
    return data_digest(list(files.values()), selection)


def log_data_inputs(
    tracker: Tracker, dataset: DatasetPlugin, config: AutoencoderConfig, splits: Splits
) -> None:
    """Logs the train and test splits (and the explained one, when it differs) as run inputs.

    Each is named ``<dataset>-<split>-<role>`` with its source folder and a digest computed
    from the provisioned files' sha256 and the selection; the train digest is also the tag
    ``lfxai.data_digest`` (the registered model's description quotes it).
    """
    roles = {"train": splits.train, "test": splits.test}
    if splits.explain is not splits.test:
        roles["explain"] = splits.explain
    source = next(iter(dataset.provisioned_files(config.data_dir))).parent
    for role, split in roles.items():
        digest = split_digest(dataset, config, role, len(split))
        name = f"{dataset.name}-{config.split}-{role}"
        tracker.log_dataset(name, split.x, split.y, source, digest, context=role)
    tracker.set_tags({DATA_DIGEST_TAG: split_digest(dataset, config, "train", len(splits.train))})


def new_model(
    dataset: DatasetPlugin, config: AutoencoderConfig, splits: Splits, name: str
) -> TrainableModel:
    """A fresh instance of the data set's model for these settings."""
    return dataset.build_model(config.dim_latent, splits.train.x.shape[1:], config.pretext, name)


def tracked_fit(
    model: nn.Module,
    training: TrainingSettings,
    device: torch.device,
    tracker: Tracker,
    train: Split,
    test: Split,
    prefix: str = "fit",
    checkpoint_dir: Path | None = None,
    log_epoch: EpochCallback | None = None,
) -> FitResult:
    """Trains with :func:`lfxai.training.fit` and logs the fit under ``<prefix>/``.

    Per epoch (step = epoch) ``log_epoch`` logs, by default ``<prefix>/{train,test}_loss``;
    once trained, ``<prefix>/{best_test_loss,best_epoch,epochs}`` and
    ``time/<prefix>_seconds[_per_epoch]``.

    Args:
        model: the model to train (its ``loss``).
        training: the training block (:meth:`~lfxai.config.BaseConfig.training`).
        device: where to train.
        tracker: the run to log to.
        train: what the model trains on.
        test: what early stopping uses.
        prefix: the metrics' prefix.
        checkpoint_dir: where checkpoints go (when ``training.checkpoint_every > 0``).
        log_epoch: what to log after each epoch instead of the losses (disvae logs its
            loss terms), called as :func:`~lfxai.training.fit`'s ``on_epoch``.

    Returns:
        The fit.
    """
    if log_epoch is None:

        def log_epoch(epoch: int, losses: dict[str, float]) -> None:
            tracker.log_metrics({f"{prefix}/{k}": v for k, v in losses.items()}, step=epoch)

    start = time.perf_counter()
    # Splits stay on the device and are batched by slicing a seeded permutation: the same
    # batches as `train.loader(batch_size, shuffle=True, seed=seed)`, without its overhead.
    result = fit(
        model, train, test, device, training, checkpoint_dir=checkpoint_dir, on_epoch=log_epoch
    )
    seconds = time.perf_counter() - start
    epochs = len(result.train_loss)
    tracker.log_metrics(
        {
            f"{prefix}/best_test_loss": result.best_test_loss,
            f"{prefix}/best_epoch": result.best_epoch,
            f"{prefix}/epochs": epochs,
            f"time/{prefix}_seconds": seconds,
            f"time/{prefix}_seconds_per_epoch": seconds / max(epochs, 1),
        }
    )
    return result


def fit_or_reuse(
    model: TrainableModel,
    dataset: DatasetPlugin,
    config: AutoencoderConfig,
    tracker: Tracker,
    train: Split,
    test: Split,
    example: torch.Tensor,
    checkpoint_dir: Path | None = None,
) -> FitResult | None:
    """Trains ``model`` and logs its encoder, or reuses the registered one when ``pretrained``.

    Trained: with ``config``'s training block (:meth:`~lfxai.config.BaseConfig.training`),
    the encoder then logged (:func:`log_encoder`); pretrained: the registered encoder is
    loaded into ``model.encoder`` instead.

    Args:
        model: a fresh model (:func:`new_model`).
        dataset: the data set's plugin.
        config: the settings (``pretrained``, the training, ``register_model``).
        tracker: the run to log to.
        train: what the model trains on.
        test: what early stopping uses.
        example: a batch of inputs; its first two are the logged encoder's input example.
        checkpoint_dir: where checkpoints go (when the settings' ``checkpoint_every > 0``).

    Returns:
        The fit, or None when the encoder was reused.
    """
    if getattr(config, "pretrained", False):
        reuse_encoder(tracker, dataset, config, model.encoder)
        return None
    device = get_device(config.device)
    fitted = tracked_fit(
        model, config.training(), device, tracker, train, test, checkpoint_dir=checkpoint_dir
    )
    log_encoder(tracker, dataset, config, model, example, fitted.best_test_loss)
    return fitted


# Experiments whose encoders are interchangeable: the same model and training loop
# (fit_or_reuse) on the same data, so pretrained=true in one reuses the newest either
# trained (CIFAR-10's consistency_examples reuses consistency_features' SimCLR encoder).
# pretext and the sweep train otherwise: their versions are never reused here.
SHARED_TRAINING = ("consistency_features", "consistency_examples")


def reuse_encoder(
    tracker: Tracker, dataset: DatasetPlugin, config: AutoencoderConfig, encoder: nn.Module
) -> str:
    """Loads the encoder registered for these settings into ``encoder``, strictly.

    The version is the newest this experiment (or one of :data:`SHARED_TRAINING` with it)
    trained at this run's profile (``models:/<encoder_name>@<experiment>-<profile>``,
    :func:`experiment_alias`: never one pretext or a sweep registered under the same name);
    strictly: every weight, no extra one, same shapes. The run is tagged ``lfxai.pretrained`` with
    the version loaded.

    The registered version is loaded without pickle (:func:`lfxai.tracking.load_encoder`).

    Raises:
        ConfigError: no such registered encoder, a version lfxai refuses to load (pickled,
            tampered: the message says why), or its state does not fit ``encoder``.
    """
    name = encoder_name(dataset, config)
    tags = tracker.tags()
    experiment, profile = tags.get("lfxai.experiment", "?"), tags.get("lfxai.profile", "paper")
    peers = SHARED_TRAINING if experiment in SHARED_TRAINING else (experiment,)
    aliases = [experiment_alias(peer, profile) for peer in peers]
    held = [tracker.model_version_by_alias(name, alias) for alias in aliases]
    newest = max((v for v in held if v is not None), key=lambda v: int(v.version), default=None)
    if newest is None:
        wanted = " or ".join(f"{name}@{alias}" for alias in aliases)
        raise ConfigError(
            f"pretrained=true: no registered encoder {wanted}; run {' or '.join(peers)} once "
            "with pretrained=false (and register_model=true) to register one"
        )
    uri = f"models:/{name}/{newest.version}"
    try:
        loaded = load_encoder(uri)
    except EncoderRefused as error:
        raise ConfigError(f"pretrained=true: {error}") from None
    try:
        load_state_strict(encoder, loaded.state_dict(), uri)
    except ValueError as error:
        raise ConfigError(f"pretrained=true: {error}") from None
    tracker.set_tags({"lfxai.pretrained": uri, ENCODER_URI_TAG: uri})
    return uri


def scratch_dir() -> Path:
    """A private temporary folder for files that are not artifacts (e.g. TracIn checkpoints)."""
    return Path(tempfile.mkdtemp(prefix="lfxai-"))


def encoder_name(dataset: DatasetPlugin, config: AutoencoderConfig) -> str:
    """The registered model of an encoder: one per (data set, pretext, latent size).

    E.g. ``lfxai-mnist-denoising-ae-d4`` or ``lfxai-ecg5000-reconstruction-ae-d64``.
    """
    return registered_name(dataset.name, dataset.model_label(config.pretext), config.dim_latent)


def log_encoder(
    tracker: Tracker,
    dataset: DatasetPlugin,
    config: AutoencoderConfig,
    model: TrainableModel,
    example: torch.Tensor,
    test_loss: float,
) -> str:
    """Logs the trained model's encoder; with ``register_model``, registers and describes it.

    Through :meth:`Tracker.register_encoder`.

    The version gets the aliases of its profile (``@paper``, ``@quick``, ``@smoke``) and
    of its experiment and profile (``@consistency_features-paper``), moved from the previous
    holder: ``models:/lfxai-mnist-denoising-ae-d4@paper`` is the newest paper-profile
    encoder, ``...@consistency_features-paper`` the newest that experiment trained.

    Args:
        tracker: the run to log to (the active run).
        dataset: the data set's plugin (names, titles).
        config: the settings (``register_model``, the latent size, the training).
        model: the trained model.
        example: a batch of inputs; its first two are the logged input example.
        test_loss: the trained model's loss on the test split.

    Returns:
        The model URI, also the run's tag ``lfxai.encoder_uri``.
    """
    name = encoder_name(dataset, config) if config.register_model else None
    shape = ", ".join(str(n) for n in example.shape[1:])
    what = f"the {dataset.title} {dataset.model_label(config.pretext)}"
    about = encoder_description(name or "<name>", shape, config.dim_latent, what)
    details = (
        f"trained on {dataset.name} split '{config.split}', n_epochs={config.n_epochs}, "
        f"seed={config.seed}"
    )
    tags = {"lfxai.pretext": config.pretext, "lfxai.dim_latent": config.dim_latent}
    uri = tracker.register_encoder(model, example, name, test_loss, about, details, tags)
    tracker.set_tags({ENCODER_URI_TAG: uri})
    return uri


def model_title(dataset: DatasetPlugin, config: AutoencoderConfig) -> str:
    """Figure title naming the data set and model, e.g. ``MNIST denoising AE (d=4)``."""
    return f"{dataset.title} {dataset.model_label(config.pretext)} (d={config.dim_latent})"
