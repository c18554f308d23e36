"""The Optuna side of a sweep: storage, sampler, pruner, and resuming a study safely.

Storage: Optuna's RDB storage (SQLAlchemy: SQLite by default, PostgreSQL to share a study
between machines) with heartbeats. A worker that dies mid-trial (SIGKILL, a lost machine)
leaves its trial RUNNING; once no heartbeat came for ``grace_period`` seconds, the next
worker to start a trial fails it and queues one retry with the same parameters
(:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`, the current name of
``RetryFailedTrialCallback``), which the next ``ask`` picks up: a trial is never counted twice.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from lfxai.config import ConfigError
from lfxai.redact import redact
from lfxai.sweep.settings import STORAGE_ENV, SweepConfig, check_no_credentials
from lfxai.tracking import file_lock, sqlite_path
from lfxai.tracking.compat import claim_waiting_trial

STORAGE_FILE = "optuna.db"  # the default storage's file, beside a SQLite MLflow store
# Study user attributes that define a study: resuming with other values is refused (a
# direction or a search space that changes mid-study would mix incomparable trials).
IDENTITY_ATTRS = ("dataset", "objective", "profile", "beta_range", "latent_range", "losses")
SQLITE_TIMEOUT_S = 60  # how long a SQLite writer waits for another worker's lock
CREATE_ATTEMPTS = 3  # opening a new server database: tries (see make_storage)


class AtomicPopRDBStorage(RDBStorage):
    """Optuna's RDB storage where only one worker can start a queued (WAITING) trial.

    Optuna starts a queued trial (a retry) by reading its state, then writing RUNNING; on
    SQLite, which ignores ``SELECT ... FOR UPDATE``, two workers asking at once both read
    WAITING and both ran the trial (measured: two workers trained trial 2, the second tell
    failed "Cannot tell a COMPLETE trial"). Here the change is one conditional UPDATE
    (``... WHERE state = WAITING``, :func:`~lfxai.tracking.compat.claim_waiting_trial`),
    atomic on every database: the loser gets False and takes another trial, as Optuna
    expects.
    """

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        """Optuna's own, except that starting a queued trial is one conditional UPDATE."""
        if state != TrialState.RUNNING or values is not None:
            return super().set_trial_state_values(trial_id, state, values)
        return claim_waiting_trial(self, trial_id)


def default_storage(tracking_uri: str) -> str:
    """``sqlite:///<dir>/optuna.db`` beside a SQLite MLflow store, else in the working dir."""
    store = sqlite_path(tracking_uri)
    folder = store.resolve().parent if store is not None else Path.cwd()
    return f"sqlite:///{folder / STORAGE_FILE}"


def storage_url(config: SweepConfig, tracking_uri: str) -> str:
    """The storage a sweep uses; a URL with a credential is refused (:class:`CredentialRefused`).

    Its ``storage`` setting, else ``$OPTUNA_STORAGE`` (Optuna's own variable: the URL stays off the
    command line that `mlflow run` logs), else :func:`default_storage`.
    """
    if config.storage:
        return config.storage
    from_env = os.environ.get(STORAGE_ENV, "").strip()
    if from_env:
        check_no_credentials(STORAGE_ENV, from_env)
        return from_env
    return default_storage(tracking_uri)


def make_storage(url: str, config: SweepConfig) -> RDBStorage:
    """An RDB storage with heartbeats and one retry of a stale trial.

    SQLite: the file is created under a file lock (two workers creating the tables at once
    break them) and writers wait for each other instead of failing on a locked database.
    """
    engine: dict[str, Any] = {}
    path = sqlite_path(url)
    if url.startswith("sqlite"):
        engine["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
    else:
        engine["pool_pre_ping"] = True  # a server restart must not kill a long sweep
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = RetryHeartbeatStaleTrialCallback(max_retry=config.max_retry)

    def build() -> RDBStorage:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return AtomicPopRDBStorage(
                    url,
                    engine_kwargs=engine,
                    heartbeat_interval=config.heartbeat_interval,
                    grace_period=config.grace_period,
                    heartbeat_stale_trial_callback=callback,
                )
        except ImportError as error:
            raise ConfigError(
                f"storage {redact(url)!r}: its database driver is not installed ({error}); "
                "PostgreSQL needs `psycopg` (a dependency of lfxai): use a "
                "postgresql+psycopg:// URL"
            ) from None
        except Exception as error:  # bad URL, unreachable server
            raise ConfigError(redact(f"storage {url!r} cannot be opened: {error}")) from None

    if path is None:
        # Workers starting together on a new database race to create its tables (PostgreSQL
        # then refuses one of them a duplicate type or row): the loser tries again.
        for attempt in range(CREATE_ATTEMPTS - 1):
            try:
                return build()
            except ConfigError:
                time.sleep(1.0 + attempt)
        return build()
    with file_lock(path):
        return build()


def study_identity(
    config: SweepConfig, profile: str, trial_settings: dict[str, str] | None = None
) -> dict[str, Any]:
    """What a study is: stored as its user attributes, checked when resumed.

    The sweep's search space and objective, and the trials' base settings (``trial_settings``, e.g.
    epochs and data sizes: trials trained otherwise are not comparable).
    """
    values = dataclasses.asdict(config)
    identity = {k: values[k] for k in IDENTITY_ATTRS if k in values}
    identity["profile"] = profile
    if trial_settings is not None:
        identity["trial_settings"] = dict(sorted(trial_settings.items()))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in identity.items()}


def make_sampler(config: SweepConfig, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler of the setting ``sampler`` (multi-objective where the objective is)."""
    startup = config.n_startup_trials
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.sampler == "nsga2":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Small populations: a sweep has tens of trials, not NSGA-II's default 50 per
            # generation.
            return optuna.samplers.NSGAIISampler(population_size=max(4, startup), seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # constant_liar: running trials count as (bad) results, so parallel workers spread
        # out instead of all sampling next to the same best trial.
        return optuna.samplers.TPESampler(
            n_startup_trials=startup, seed=seed, multivariate=True, group=True, constant_liar=True
        )


def make_pruner(config: SweepConfig) -> optuna.pruners.BasePruner:
    """Percentile pruning for ``correlation``; none for ``pareto``.

    Optuna prunes on one value only.
    """
    if config.objective != "correlation":
        return optuna.pruners.NopPruner()
    return optuna.pruners.PercentilePruner(
        config.prune_percentile, n_startup_trials=max(1, config.n_startup_trials)
    )


def open_study(
    config: SweepConfig,
    profile: str,
    storage: RDBStorage,
    trial_settings: dict[str, str] | None = None,
) -> optuna.Study:
    """Creates the study, or loads it to continue it after checking it is the same sweep.

    The sampler of the worker that creates the study is seeded with ``config.seed`` (a
    one-worker sweep is reproducible); a worker that finds the study (a resume, or another
    worker) mixes in the number of trials so far and its process id, so that workers
    started together with the same command do not draw the same parameters.

    Raises:
        ConfigError: the stored study has other directions, data set, profile, search
            space or trial settings (each difference named).
    """
    name = config.resolved_study_name()
    identity = study_identity(config, profile, trial_settings)
    pruner = make_pruner(config)
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            directions=config.directions,
            sampler=make_sampler(config, config.seed),
            pruner=pruner,
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
        seed = config.seed + 7919 * len(study.get_trials(deepcopy=False)) + os.getpid()
        study.sampler = make_sampler(config, seed % 2**32)
        directions = [d.name.lower() for d in study.directions]
        if directions != config.directions:
            raise ConfigError(
                f"study {name!r} in {redact(storage.url)} has directions {directions}, "
                f"objective {config.objective!r} needs {config.directions}: use another "
                "study_name"
            ) from None
    stored = study.user_attrs
    if not stored:  # a new study (or one interrupted before its attributes were set)
        for key, value in identity.items():
            study.set_user_attr(key, value)
        return study
    differ = []
    for key, value in identity.items():
        theirs = stored.get(key)
        if key == "trial_settings" and isinstance(theirs, dict):  # name each setting
            differ += [
                f"trial setting {k}: the study has {theirs.get(k)!r}, this command {value.get(k)!r}"
                for k in sorted(set(theirs) | set(value))
                if theirs.get(k) != value.get(k)
            ]
        elif theirs != value:
            differ.append(f"{key}: the study has {theirs!r}, this command {value!r}")
    if differ:
        raise ConfigError(
            f"study {name!r} in {redact(storage.url)} is another sweep, not continued "
            "(use another study_name, or this study's settings): " + "; ".join(differ)
        )
    return study


def running_trial(trial: optuna.trial.Trial) -> optuna.trial.FrozenTrial:
    """The stored state of a running trial (its system attributes among them)."""
    running = trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return next(t for t in running if t.number == trial.number)


def retried_from(trial: optuna.trial.FrozenTrial) -> int | None:
    """The number of the failed trial this one retries (None: not a retry).

    Optuna's retry history lists the chain of trials this one retries; its last entry is the
    trial right before this one (the first is the original).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        history = RetryHeartbeatStaleTrialCallback.retry_history(trial)
    return int(history[-1]) if history else None


def fail_and_requeue(study: optuna.Study, trial: optuna.trial.Trial, max_retry: int) -> None:
    """Fails an interrupted trial now and queues its retry.

    What the heartbeat would do after ``grace_period``, so that a resume continues it right
    away. A trial that is no longer running was failed as stale by another worker, which
    queued its retry: it is left as it is.
    """
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    state = next((t for t in running if t.number == trial.number), None)
    if state is None:
        return
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, state)
