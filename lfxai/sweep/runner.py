"""The ``sweep`` entry point: one parent MLflow run per invocation, trials in worker threads.

``--dataset`` and ``--n_trials`` are required, ``--profile`` (default ``quick``) picks both
the sweep's profile in ``configs/sweep.yaml`` and the ``disvae`` profile the trials' base
settings come from; every other ``--key value`` overrides a sweep setting or a trial
setting (e.g. ``--n_epochs 3``). Run placement, stop signals and the store are the
experiments' (:mod:`lfxai.experiments.runner`): the parent run goes to the MLflow
experiment ``<dataset>-sweep``; SIGTERM / SIGINT end it and the running trials' runs KILLED
and queue those trials again, so the next invocation retries them first. After a SIGKILL,
the next invocation ends the runs left RUNNING (parent, ``Default`` pointer, trial runs) KILLED
once their heartbeat is older than the sweep's ``grace_period`` and says so; Optuna's
heartbeat retries the trial (:mod:`lfxai.sweep.study`).

The storage URL never carries a credential (refused: :func:`check_no_credentials`); it is
given with ``-P storage=...`` or, off the command line, in ``OPTUNA_STORAGE``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import optuna

from lfxai import __version__
from lfxai.config import PROFILES, ConfigError, build_config, load_profile, to_flat_dict
from lfxai.experiments.runner import (  # the experiments' pieces, shared on purpose
    EXIT_BAD_INPUT,
    _overrides,
    _stop_signals,
    end_dead_runs,
)
from lfxai.plugins import get_dataset
from lfxai.redact import redact
from lfxai.sweep.objective import (
    ERROR_ATTR,
    PARENT_ATTR,
    STUDY_TAG,
    StopFlag,
    SweepObjective,
    TrainFn,
    TrialFactory,
)
from lfxai.sweep.report import log_report
from lfxai.sweep.settings import (
    SAMPLED_KEYS,
    TRIAL_EXPERIMENT,
    CredentialRefused,
    SweepConfig,
    check_choices_of,
    load_sweep_config,
    split_overrides,
    sweep_datasets,
)
from lfxai.sweep.study import make_storage, open_study, storage_url, worker_studies
from lfxai.tracking import (
    Stopped,
    Tracker,
    experiment_name,
    init_store,
    run_location,
    system_metrics,
    terminate_run,
    tracked_run,
    tracking_uri,
)

EXPERIMENT = "sweep"  # the parent runs' lfxai.experiment tag and MLflow experiment suffix
STORAGE_TAG = "lfxai.storage"


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


def resolve(
    dataset: str, profile: str, overrides: dict[str, str], backend: TrialBackend
) -> tuple[SweepConfig, Any]:
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
    config = load_sweep_config(dataset, profile, ours)
    check_choices_of(config, datasets, backend.losses)
    values = load_profile(dataset, TRIAL_EXPERIMENT, profile)
    values["seed"] = config.seed  # one seed for the sampler and the trials
    base = build_config(backend.schema, values, theirs)
    if hasattr(base, "split"):
        get_dataset(dataset).check_split(base.split)
    return config, base


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="entrypoints/sweep.py",
        description="Optuna sweep over a VAE's beta, latent size and loss; other --key value "
        "pairs override sweep or trial settings.",
    )
    parser.add_argument("--dataset", required=True, help="a data set with the disvae experiment")
    parser.add_argument("--n_trials", required=True, help="trials this invocation runs")
    parser.add_argument("--profile", default="quick", help=f"one of {list(PROFILES)}")
    return parser


def describe(args: argparse.Namespace, config: SweepConfig, storage: str, number: int) -> str:
    """The parent run's description: what ran, where the study lives, how to continue it."""
    rerun = ["mlflow", "run", ".", "-e", "sweep"]
    for key, value in [("dataset", args.dataset), ("n_trials", args.n_trials)]:
        rerun += ["-P", f"{key}={value}"]
    rerun += ["-P", f"profile={args.profile}", "-P", f"study_name={config.resolved_study_name()}"]
    rerun += ["-P", f"storage={storage}"]
    return "\n".join(
        [
            f"**sweep** #{number} of study `{config.resolved_study_name()}` on "
            f"**{args.dataset}**, profile `{args.profile}`, objective `{config.objective}`: "
            f"{config.n_trials} trials, {config.n_jobs} worker thread(s).",
            "",
            f"Optuna storage: `{storage}`. Each trial is a nested run (tags "
            f"`{STUDY_TAG}`, `lfxai.trial_number`).",
            "",
            f"Continue the study (here or on another machine sharing the storage): "
            f"`{shlex.join(rerun)}`",
        ]
    )


def _logged_by_mlflow_run(launched_run: str) -> str:
    """Where `mlflow run` put a ``-P storage`` value before our code ran, and how to purge it."""
    store = redact(tracking_uri())
    database = "<the server's database URI>" if store.startswith("http") else store
    return (
        f"; `mlflow run` had already stored it as given, in the param `storage` of its run "
        f"{launched_run}, and printed it on its '=== Running command' line: purge that run "
        f"with `mlflow runs delete --run-id {launched_run}` then `mlflow gc "
        f"--backend-store-uri {database} --run-ids {launched_run}`, and pass the URL in "
        "OPTUNA_STORAGE, off the command line"
    )


def _execute(
    args: argparse.Namespace,
    overrides: dict[str, str],
    tracker: Tracker,
    backend: TrialBackend,
    stop: StopFlag,
    launched_run: str | None = None,
) -> dict[str, Any]:
    try:
        config, base = resolve(args.dataset, args.profile, overrides, backend)
    except CredentialRefused as error:
        if launched_run and "storage" in overrides:  # a -P value: `mlflow run` logged it
            raise CredentialRefused(f"{error}{_logged_by_mlflow_run(launched_run)}") from None
        raise
    if tracker.heartbeat is not None:  # dead after the sweep's grace period, like its trials
        tracker.heartbeat.pace(config.heartbeat_interval, config.grace_period)
    end_dead_runs(tracker, launched_run)
    number = tracker.run_number()
    name = config.resolved_study_name()
    tracker.set_tags({"mlflow.runName": f"#{number} {args.profile} study={name} · sweep"})
    identity = {
        "dataset": args.dataset,
        "experiment": EXPERIMENT,
        "profile": args.profile,
        "version": __version__,
    }
    tracker.log_config(identity, config)  # no credential: refused by resolve
    shared = {k: v for k, v in to_flat_dict(base).items() if k not in SAMPLED_KEYS}
    tracker.log_params(shared, prefix="trial.")
    tracker.log_dict(
        {k: v for k, v in dataclasses.asdict(base).items() if k not in SAMPLED_KEYS},
        "trial_config.yaml",
    )
    url = storage_url(config, tracking_uri())
    storage = make_storage(url, config)
    # Where the data lives and which device trains change no result: not part of the study.
    comparable = {k: v for k, v in shared.items() if k not in ("data_dir", "device")}
    study = open_study(config, args.profile, storage, comparable)
    tracker.set_tags({STUDY_TAG: name, STORAGE_TAG: redact(url)})
    tracker.set_description(describe(args, config, redact(url), number))
    plugin = get_dataset(args.dataset)
    splits = backend.load_splits(plugin, base, tracker)
    objective = SweepObjective(
        config, plugin, base, tracker, splits, backend.train, backend.make_trial, stop
    )
    start = time.perf_counter()
    run_workers(worker_studies(study, config, config.n_jobs), objective, config, stop)
    seconds = time.perf_counter() - start
    title = f"{plugin.title} sweep `{name}` ({config.objective})"
    summary = log_report(tracker, study, config, title)
    ours = [t for t in study.get_trials() if t.user_attrs.get(PARENT_ATTR) == tracker.run_id]
    finished = [t for t in ours if t.state.is_finished()]
    tracker.log_metrics(
        {
            "time/total_seconds": seconds,
            "trials/this_invocation": float(len(finished)),
            "trials/per_hour": 3600.0 * len(finished) / seconds if seconds > 0 else 0.0,
        }
    )
    failed = [t for t in finished if t.state == optuna.trial.TrialState.FAIL]
    if finished and len(failed) == len(finished):
        error = failed[0].user_attrs.get(ERROR_ATTR, "see the trials' runs")
        raise RuntimeError(
            f"every trial of this invocation failed; trial {failed[0].number}: {error}"
        )
    print(f"[lfxai] sweep {name}: {len(finished)} trials in {seconds:.0f} s, run {tracker.run_id}")
    print(f"[lfxai] study states: {summary['trials']}; best runs: {summary['best_run_ids']}")
    for claim in summary["claims"]:
        print(f"  claim {claim.key}: {claim.verdict} {claim.reason}")
    print(f"[lfxai] store: {redact(tracking_uri())}; optuna storage: {redact(url)}")
    return summary


def main(argv: list[str] | None = None, backend: TrialBackend | None = None) -> int:
    """Runs one sweep invocation; returns the process exit code.

    Args:
        argv: the command line (default ``sys.argv[1:]``).
        backend: what a trial runs (default: the ``disvae`` experiment's; tests pass fakes).
    """
    args, extra = _parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    launched_run = os.environ.get("MLFLOW_RUN_ID")
    stop = StopFlag()
    known = args.dataset in sweep_datasets()
    location = experiment_name(args.dataset, EXPERIMENT) if known else None
    try:
        with _stop_signals(follow_parent=launched_run is not None), system_metrics():
            init_store()
            overrides = {**_overrides(extra), "n_trials": args.n_trials}
            with (
                run_location(location) as replaced,
                tracked_run(f"{args.profile} · sweep") as tracker,  # FAILED if this raises
            ):
                if replaced:
                    tracker.take_over(replaced)
                trials = backend or disvae_backend()
                _execute(args, overrides, tracker, trials, stop, launched_run)
    except ConfigError as error:
        print(f"error: {redact(str(error))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Stopped as stopped:
        if launched_run:  # ended already when adopted; a no-op then
            terminate_run(launched_run, "KILLED", {})
        print(f"[lfxai] {stopped}: the runs were ended KILLED", file=sys.stderr)
        return stopped.exit_code
    except Exception:
        print(redact(traceback.format_exc()), end="", file=sys.stderr)
        return 1
    return 0
