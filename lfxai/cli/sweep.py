"""The ``sweep`` entry point: one parent MLflow run per invocation, one nested run per trial.

``--dataset`` and ``--n_trials`` are required, ``--profile`` (default ``quick``) picks both
the sweep's profile in ``configs/sweep.yaml`` and the ``disvae`` profile the trials' base
settings come from; every other ``--key value`` overrides a sweep setting or a trial
setting (e.g. ``--n_epochs 3``). Run placement, stop signals and the store are every
command's (:mod:`lfxai.cli.launch`): the parent run goes to the MLflow experiment
``<dataset>-sweep``; SIGTERM / SIGINT end it and the running trials' runs KILLED and queue
those trials again, so the next invocation retries them first. After a SIGKILL, the next
invocation ends the runs left RUNNING (parent, ``Default`` pointer, trial runs) KILLED once
their heartbeat is older than the sweep's ``grace_period`` and says so; Optuna's heartbeat
retries the trial (:mod:`lfxai.sweep.study`).

The storage URL never carries a credential (refused: :func:`check_no_credentials`); it is
given with ``-P storage=...`` or, off the command line, in ``OPTUNA_STORAGE``.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import sys
import time
from typing import Any

import optuna

from lfxai import __version__
from lfxai.cli.launch import end_dead_runs, launch, parse_overrides, placed_run, stop_signals
from lfxai.cli.naming import Request, describe, run_name
from lfxai.config import PROFILES, to_flat_dict
from lfxai.plugins import get_dataset
from lfxai.redact import redact
from lfxai.sweep.backend import DisvaeBackend, TrialBackend
from lfxai.sweep.objective import ERROR_ATTR, PARENT_ATTR, STUDY_TAG, SweepObjective
from lfxai.sweep.optimize import SweepJob, optimize, run_share, trial_shares
from lfxai.sweep.report import log_report
from lfxai.sweep.settings import (
    SAMPLED_KEYS,
    CredentialRefused,
    SweepConfig,
    resolve_sweep,
    sweep_datasets,
)
from lfxai.sweep.study import make_storage, open_study, storage_url
from lfxai.tracking import Stopped, Tracker, absolute_uri, experiment_name, tracking_uri

EXPERIMENT = "sweep"  # the parent runs' lfxai.experiment tag and MLflow experiment suffix
STORAGE_TAG = "lfxai.storage"


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


def _describe(
    request: Request,
    config: SweepConfig,
    given: dict[str, str],
    changed: dict[str, tuple[Any, Any]],
    storage: str,
    number: int,
    store: str,
) -> str:
    """The parent run's description: what ran, where the study lives, how to continue it.

    The continue command repeats every setting given (``given``: the ``-P`` values as
    typed, data_dir and trial settings included), the study and its storage, and the MLflow
    store (``store``, redacted by the caller): on another machine, runs in another store would
    split the study's runs from the report's run ids.
    """
    name = config.resolved_study_name()
    headline = (
        f"**sweep** #{number} of study `{name}` on **{config.dataset}**, profile "
        f"`{request.profile}`, objective `{config.objective}`: {config.n_trials} trials, "
        f"{config.n_jobs} worker(s)."
    )
    storage_note = (
        f"Optuna storage: `{storage}`. Each trial is a nested run (tags `{STUDY_TAG}`, "
        "`lfxai.trial_number`)."
    )
    continued = {**given, "study_name": name, "storage": storage}
    label = "Continue the study (here or on another machine sharing the storage)"
    environment = {"MLFLOW_TRACKING_URI": store}
    return describe(request, headline, continued, changed, label, [storage_note], environment)


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
    request: Request,
    overrides: dict[str, str],
    tracker: Tracker,
    backend: TrialBackend,
    launched_run: str | None = None,
) -> dict[str, Any]:
    dataset = request.declared["dataset"]
    try:
        settings = resolve_sweep(dataset, request.profile, overrides, backend)
    except CredentialRefused as error:
        if launched_run and "storage" in overrides:  # a -P value: `mlflow run` logged it
            raise CredentialRefused(f"{error}{_logged_by_mlflow_run(launched_run)}") from None
        raise
    config, base = settings.config, settings.base
    if tracker.heartbeat is not None:  # dead after the sweep's grace period, like its trials
        tracker.heartbeat.pace(config.heartbeat_interval, config.grace_period)
    end_dead_runs(tracker, launched_run)
    number = tracker.run_number()
    name = config.resolved_study_name()
    tracker.set_name(run_name(EXPERIMENT, request.profile, {"study": name}, number))
    identity = {
        "dataset": dataset,
        "experiment": EXPERIMENT,
        "profile": request.profile,
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
    study = open_study(config, request.profile, storage, comparable)
    tracker.set_tags({STUDY_TAG: name, STORAGE_TAG: redact(url)})
    given = {k: v for k, v in overrides.items() if k not in ("n_trials", "storage")}
    changed = {k: v for k, v in settings.changed.items() if k != "n_trials"}  # declared
    store = redact(absolute_uri(tracking_uri()))
    tracker.set_description(_describe(request, config, given, changed, redact(url), number, store))
    plugin = get_dataset(dataset)
    splits = backend.load_splits(plugin, base, tracker)
    objective = SweepObjective(config, plugin, base, tracker, splits, backend)
    job = SweepJob(config, request.profile, base, backend, tracker.run_id, url, comparable)
    start = time.perf_counter()
    _run_workers(job, study, objective)
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
    argv = sys.argv[1:] if argv is None else argv
    args, extra = _parser().parse_known_args(argv)
    declared = {"dataset": args.dataset, "n_trials": args.n_trials, "profile": args.profile}
    request = Request(EXPERIMENT, EXPERIMENT, args.profile, declared, argv)
    launched_run = os.environ.get("MLFLOW_RUN_ID")
    known = args.dataset in sweep_datasets()
    location = experiment_name(args.dataset, EXPERIMENT) if known else None

    def work() -> None:
        overrides = {**parse_overrides(extra), "n_trials": args.n_trials}
        with placed_run(location, f"{args.profile} · sweep") as tracker:
            _execute(request, overrides, tracker, backend or DisvaeBackend(), launched_run)

    return launch(work, launched_run, launcher=launched_run)


def _run_workers(job: SweepJob, study: optuna.Study, objective: SweepObjective) -> None:
    """Runs this invocation's trials: a share here, the others' in worker processes.

    On a stop signal the workers get it too (each ends its trial's run KILLED and queues the
    trial again) and this process waits for them before it ends its own runs.

    Raises:
        RuntimeError: a worker process failed outside its trials (its output says why).
    """
    here, *theirs = trial_shares(job.config.n_trials, job.config.n_jobs)
    # Spawned, not forked: torch is not fork-safe once its thread pools run.
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(job, share), name=f"lfxai-sweep-worker-{i}")
        for i, share in enumerate(theirs, start=1)
        if share > 0
    ]
    try:
        for worker in workers:
            worker.start()
        optimize(study, objective, here)
        for worker in workers:
            worker.join()
    except Stopped as stop:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, stop.signum)
        for worker in workers:
            if worker.pid is not None:
                worker.join()
        raise
    failed = [w for w in workers if w.exitcode != 0]
    if failed:
        raise RuntimeError(
            f"sweep worker {failed[0].name} exited with {failed[0].exitcode} (its output above "
            "says why); its finished trials are in the study"
        )


def _worker(job: SweepJob, n_trials: int) -> None:
    """A worker process: its share of the trials, stopped like its parent (and with it)."""
    with stop_signals(follow_parent=True):
        try:
            run_share(job, n_trials)
        except Stopped as stop:
            sys.exit(stop.exit_code)
