"""What a sweep is: its settings (``configs/sweep.yaml`` + ``-P key=value``), validated.

A sweep's settings come from ``configs/sweep.yaml``: a ``defaults`` section and one section
per data set, each with ``paper`` / ``quick`` / ``smoke`` profiles, composed as for the
experiments (:func:`lfxai.config.load_profile`). The same ``profile`` names the ``disvae``
profile of ``configs/<dataset>.yaml`` every trial's base settings come from; a ``-P`` that is
not a sweep setting but a ``disvae`` one (e.g. ``n_epochs``) overrides that base.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lfxai.config import (
    KEEP,
    PROFILES,
    BaseConfig,
    ConfigError,
    Resolved,
    check_choices,
    load_profile,
    resolve,
)
from lfxai.redact import has_secret, redact

if TYPE_CHECKING:
    from lfxai.sweep.backend import TrialBackend

OBJECTIVES = ("pareto", "correlation")
SAMPLERS = ("tpe", "nsga2", "random")
SWEEP_CONFIG = "sweep"  # configs/sweep.yaml
TRIAL_EXPERIMENT = "disvae"  # the experiment whose train_and_measure runs each trial
# Trial settings the sweep chooses per trial (or that a trial does not use): not overridable,
# not logged on the parent run.
SAMPLED_KEYS = ("dim_latent", "beta_list", "loss_list", "n_runs")
STORAGE_ENV = "OPTUNA_STORAGE"  # Optuna's own variable: the storage when `storage` is null


class CredentialRefused(ConfigError):
    """A storage URL carries a credential: refused, so that it is never stored or printed."""


def check_no_credentials(name: str, url: str) -> None:
    """Raises :class:`CredentialRefused` when ``url`` carries a password, token or other secret.

    ``name`` is the setting or variable; whether or not the URL parses, the message shows it
    redacted and where the password belongs instead.
    """
    if has_secret(url):
        raise CredentialRefused(
            f"{name} {redact(url)!r} carries a credential: refused, nothing was opened or "
            "stored. Pass the URL without it and give PostgreSQL's password through "
            "PGPASSWORD or ~/.pgpass (libpq reads both; a tracking server's through "
            "MLFLOW_TRACKING_PASSWORD)"
        )


@dataclass(frozen=True)
class SweepConfig:
    """Settings of one sweep invocation.

    Attributes:
        dataset: a data set whose plugin declares the ``disvae`` experiment.
        n_trials: trials this invocation runs (all its workers together; a resumed study
            gets this many more).
        timeout: seconds after which no new trial starts (None: no limit).
        study_name: the Optuna study (None: ``<dataset>-<objective>``); the same name and
            storage continue a study.
        storage: SQLAlchemy URL of the Optuna storage, without credentials (None:
            ``$OPTUNA_STORAGE``, else ``optuna.db`` beside a SQLite MLflow store, else in
            the working directory).
        beta_range: ``[low, high]`` of beta, sampled on a log scale.
        latent_range: ``[low, high]`` of the latent size (inclusive).
        losses: the VAE losses the sampler chooses from.
        objective: ``pareto`` (minimise saliency Pearson and test reconstruction loss) or
            ``correlation`` (Pearson alone, with pruning).
        sampler: ``tpe`` (multi-objective TPE for ``pareto``), ``nsga2`` or ``random``.
        prune_metric: the per-epoch test metric pruning compares (``correlation`` only;
            Pearson itself is measured after training, so a training metric stands in).
        prune_percentile: a trial is pruned when, at some epoch, its ``prune_metric`` is
            worse than this percentile of the earlier trials' at that epoch (50: median).
        n_startup_trials: trials the sampler draws at random, and trials finished before
            the pruner prunes anything.
        seed: seeds the sampler (each worker process gets its own stream from it).
        n_jobs: worker processes of this invocation (this one among them).
        heartbeat_interval: seconds between a running trial's heartbeats in the storage.
        grace_period: seconds without a heartbeat after which a RUNNING trial is stale
            (its worker died): it is failed and retried once.
        max_retry: how many times a stale trial is retried.
    """

    dataset: str
    n_trials: int
    timeout: float | None
    study_name: str | None
    storage: str | None
    beta_range: tuple[float, ...]
    latent_range: tuple[int, ...]
    losses: tuple[str, ...]
    objective: str
    sampler: str
    prune_metric: str
    prune_percentile: float
    n_startup_trials: int
    seed: int
    n_jobs: int
    heartbeat_interval: int
    grace_period: int
    max_retry: int

    def validate(self) -> None:
        """Raises :class:`ConfigError` naming the bad value (and the valid choices)."""
        if self.n_trials <= 0:
            raise ConfigError(f"n_trials must be a positive integer, got {self.n_trials}")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"timeout must be positive seconds (or none), got {self.timeout}")
        check_choices("objective", [self.objective], OBJECTIVES)
        check_choices("sampler", [self.sampler], SAMPLERS)
        _check_range("beta_range", self.beta_range, minimum=0.0, exclusive=True)
        # Saliency correlations compare units: at least two.
        _check_range("latent_range", self.latent_range, minimum=2)
        if not self.losses:
            raise ConfigError("losses must not be empty")
        for name in ("n_jobs", "heartbeat_interval", "grace_period"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.grace_period <= self.heartbeat_interval:
            raise ConfigError(
                f"grace_period ({self.grace_period} s) must exceed heartbeat_interval "
                f"({self.heartbeat_interval} s), or live trials would be taken for dead"
            )
        if not 0 < self.prune_percentile < 100:
            raise ConfigError(f"prune_percentile must lie in (0, 100), got {self.prune_percentile}")
        for name in ("max_retry", "n_startup_trials"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.study_name is not None and not self.study_name.strip():
            raise ConfigError("study_name must not be blank (none: the default name)")
        if self.storage is not None:
            check_no_credentials("storage", self.storage)

    @property
    def directions(self) -> list[str]:
        """Optuna's directions of the objective values, in the order the objective returns."""
        return ["minimize", "minimize"] if self.objective == "pareto" else ["minimize"]

    @property
    def value_names(self) -> list[str]:
        """The metrics the objective returns, in order."""
        if self.objective == "pareto":
            return ["pearson", "test_reconstruction"]
        return ["pearson"]

    def resolved_study_name(self) -> str:
        """The study's name: ``study_name``, else ``<dataset>-<objective>``."""
        return self.study_name or f"{self.dataset}-{self.objective}"


def _check_range(
    key: str, values: tuple[Any, ...], minimum: float, exclusive: bool = False
) -> None:
    if len(values) != 2:
        raise ConfigError(f"{key} must be two values 'low,high', got {list(values)}")
    low, high = values
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
        raise ConfigError(f"{key} must be finite, got {list(values)}")
    if low < minimum or (exclusive and low == minimum):
        bound = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
        raise ConfigError(f"{key} low end must be {bound}, got {low}")
    if not low < high:
        raise ConfigError(f"{key} must have low < high, got {list(values)}")


def sweep_datasets() -> list[str]:
    """The data sets a sweep can run on: those whose plugin declares ``disvae``."""
    from lfxai.plugins import DATASETS

    return sorted(n for n, plugin in DATASETS.items() if TRIAL_EXPERIMENT in plugin.experiments)


def check_choices_of(config: SweepConfig, datasets: Iterable[str], losses: Iterable[str]) -> None:
    """Raises :class:`ConfigError` unless the data set and losses are among the valid ones.

    Separate from :meth:`SweepConfig.validate` because the choices come from the plugins
    and the VAE module (tests pass their own).
    """
    check_choices("dataset", [config.dataset], datasets)
    check_choices("losses", config.losses, losses)


def split_overrides(
    overrides: dict[str, str], trial_schema: type
) -> tuple[dict[str, str], dict[str, str]]:
    """``-P`` overrides split into the sweep's settings and the trials' base settings.

    A key that is neither is a :class:`ConfigError` naming both lists of valid keys. The
    trials' seed is the sweep's ``seed``; their latent size, beta and loss are sampled
    (:data:`SAMPLED_KEYS`).
    """
    sweep_keys = set(typing.get_type_hints(SweepConfig))
    trial_keys = set(typing.get_type_hints(trial_schema)) - sweep_keys - set(SAMPLED_KEYS)
    ours, theirs = {}, {}
    for key, value in overrides.items():
        if key in sweep_keys:
            ours[key] = value
        elif key in trial_keys:
            theirs[key] = value
        else:
            raise ConfigError(
                f"unknown parameter {key!r}; valid sweep settings: {sorted(sweep_keys)}; "
                f"valid trial settings ({TRIAL_EXPERIMENT}): {sorted(trial_keys)}"
            )
    return ours, theirs


def resolve_sweep_config(
    dataset: str, profile: str, overrides: dict[str, str] | None = None
) -> Resolved:
    """The validated settings of a sweep, and what the overrides changed.

    Of ``dataset`` in ``profile`` with ``overrides``.
    """
    values = load_profile(SWEEP_CONFIG, dataset, profile)
    values["dataset"] = dataset
    overrides = {k: v for k, v in (overrides or {}).items() if v != KEEP}
    if "dataset" in overrides:
        raise ConfigError("dataset is chosen with --dataset, not as a setting override")
    return resolve(SweepConfig, values, overrides)  # type: ignore[arg-type]


def load_sweep_config(
    dataset: str, profile: str, overrides: dict[str, str] | None = None
) -> SweepConfig:
    """The validated settings of a sweep of ``dataset`` in ``profile`` with ``overrides``."""
    return typing.cast(SweepConfig, resolve_sweep_config(dataset, profile, overrides).config)


@dataclass(frozen=True)
class SweepSettings:
    """A sweep invocation's settings, resolved once.

    Attributes:
        config: the sweep's settings.
        base: the trials' base settings (the ``disvae`` profile's, overridden).
        changed: ``{setting: (value, profile's value)}`` of both that the command changed.
    """

    config: SweepConfig
    base: BaseConfig
    changed: dict[str, tuple[Any, Any]]


def resolve_sweep(
    dataset: str, profile: str, overrides: dict[str, str], backend: TrialBackend
) -> SweepSettings:
    """The validated sweep settings and the trials' base settings (no side effect)."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid choices: {list(PROFILES)}")
    datasets = sweep_datasets()
    if dataset not in datasets:
        raise ConfigError(
            f"unknown dataset {dataset!r} for a sweep; valid choices (data sets with the "
            f"{TRIAL_EXPERIMENT!r} experiment): {datasets}"
        )
    ours, theirs = split_overrides(overrides, backend.schema)
    sweep = resolve_sweep_config(dataset, profile, ours)
    config = typing.cast(SweepConfig, sweep.config)
    check_choices_of(config, datasets, backend.losses)
    values = load_profile(dataset, TRIAL_EXPERIMENT, profile)
    values["seed"] = config.seed  # one seed for the sampler and the trials
    trials = resolve(backend.schema, values, theirs)
    if hasattr(trials.config, "split"):
        from lfxai.plugins import get_dataset

        get_dataset(dataset).check_split(trials.config.split)
    return SweepSettings(config, trials.config, {**sweep.changed, **trials.changed})
