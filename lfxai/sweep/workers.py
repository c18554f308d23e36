"""What a sweep runs: the trial backend, the resolved settings and the worker threads."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import optuna

from lfxai.config import PROFILES, ConfigError, load_profile
from lfxai.config import resolve as resolve_config
from lfxai.plugins import get_dataset
from lfxai.sweep.objective import StopFlag, SweepObjective, TrainFn, TrialFactory
from lfxai.sweep.settings import (
    TRIAL_EXPERIMENT,
    SweepConfig,
    check_choices_of,
    resolve_sweep_config,
    split_overrides,
    sweep_datasets,
)
from lfxai.tracking import Stopped, Tracker


@dataclass(frozen=True)
class TrialBackend:
    """What a trial runs: the ``disvae`` experiment's schema, losses and functions.

    Attributes:
        schema: the trials' settings dataclass (``DisvaeConfig``).
        losses: the valid losses (``VAE_LOSSES``).
        train: ``train_and_measure``.
        load_splits: ``load_vae_splits(plugin, config, tracker) -> Splits``.
        make_trial: ``(loss, beta, dim_latent) -> VaeTrial``.
    """

    schema: type
    losses: tuple[str, ...]
    train: TrainFn
    load_splits: Callable[[Any, Any, Tracker], Any]
    make_trial: TrialFactory


def disvae_backend() -> TrialBackend:
    """The real backend (imported late: the sweep's settings validate without torch work)."""
    from lfxai.experiments.disvae import (
        DisvaeConfig,
        VaeTrial,
        load_vae_splits,
        train_and_measure,
    )
    from lfxai.models.vae import VAE_LOSSES

    return TrialBackend(
        schema=DisvaeConfig,
        losses=tuple(VAE_LOSSES),
        train=train_and_measure,
        load_splits=load_vae_splits,
        make_trial=lambda loss, beta, dim_latent: VaeTrial(loss, beta, dim_latent),
    )


@dataclass(frozen=True)
class SweepSettings:
    """A sweep invocation's settings, resolved once.

    Attributes:
        config: the sweep's settings.
        base: the trials' base settings (the ``disvae`` profile's, overridden).
        changed: ``{setting: (value, profile's value)}`` of both that the command changed.
    """

    config: SweepConfig
    base: Any
    changed: dict[str, tuple[Any, Any]]


def resolve(
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
    trials = resolve_config(backend.schema, values, theirs)
    if hasattr(trials.config, "split"):
        get_dataset(dataset).check_split(trials.config.split)
    return SweepSettings(config, trials.config, {**sweep.changed, **trials.changed})


def run_workers(
    studies: list[optuna.Study], objective: SweepObjective, config: SweepConfig, stop: StopFlag
) -> None:
    """Runs ``config.n_trials`` trials in ``config.n_jobs`` threads, thread ``i`` on
    ``studies[i]`` (no new trial after ``config.timeout`` seconds).

    One thread: the trials run in this (the main) thread, so a stop signal interrupts the
    trial at once. Several: the main thread waits; on a stop signal it sets ``stop``, each
    worker stops after its current epoch, then the signal is raised again here. A trial
    that raises is recorded FAIL (its error on the trial and its run) and the sweep goes on.
    """
    deadline = None if config.timeout is None else time.monotonic() + config.timeout
    lock = threading.Lock()
    started = 0

    def take() -> bool:
        nonlocal started
        with lock:
            late = deadline is not None and time.monotonic() >= deadline
            if stop.is_set() or started >= config.n_trials or late:
                return False
            started += 1
            return True

    def work(study: optuna.Study) -> None:
        while take():
            study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)

    if config.n_jobs == 1:
        work(studies[0])
        return
    errors: list[BaseException] = []
    finished = [threading.Event() for _ in range(config.n_jobs)]

    def guarded(study: optuna.Study, done: threading.Event) -> None:
        try:
            work(study)
        except BaseException as error:  # re-raised in the main thread
            errors.append(error)
        finally:
            done.set()

    def wait_for_workers() -> None:
        # Events, not Thread.join: a signal handler raising inside join() makes CPython mark
        # the joined thread stopped while it still runs (join's bpo-45274 clean-up releases
        # the thread's own state lock), so a later join() returned at once and the worker
        # went on training, its trial left RUNNING.
        for done in finished:
            while not done.wait(0.5):
                pass

    threads = [
        threading.Thread(
            target=guarded,
            args=(studies[i], finished[i]),
            name=f"lfxai-sweep-worker-{i}",
            daemon=True,
        )
        for i in range(config.n_jobs)
    ]
    try:
        # Started with the stop signals blocked: the threads inherit the mask, so SIGINT /
        # SIGTERM go to the main thread, and only once every worker has started (a signal
        # raised while starting them would escape this handler and leave workers running).
        with _stop_signals_blocked():
            for thread in threads:
                thread.start()
        wait_for_workers()
    except Stopped as stopped:
        stop.set(signal.Signals[stopped.signal_name].value)
        wait_for_workers()
        raise
    failures = [e for e in errors if not isinstance(e, Stopped)]
    if failures:
        raise failures[0]


@contextlib.contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    """Blocks SIGINT and SIGTERM in this thread (and threads started meanwhile) for the block;
    one that arrives meanwhile is delivered when the block ends (POSIX; elsewhere a no-op)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
