"""The experiments' command line, run by the thin ``entrypoints/<dataset>.py`` scripts.

``--name`` picks the experiment, ``--profile`` the settings profile; every other
``--key value`` pair overrides one setting of the experiment's schema (that is how
``mlflow run -P key=value`` arrives: the MLproject declares only ``name`` and ``profile``, so
MLflow appends the others as ``--key value``). The value ``profile`` keeps the profile's
setting. Bad input ends the run FAILED with a message naming the bad value and the valid
choices, before any data is touched.

Where the run goes: the experiment ``<dataset>-<experiment>`` unless the user chose one
(see :func:`lfxai.tracking.run_location`); :mod:`lfxai.cli.naming` names and describes it,
and the description ends with the verdicts on the paper's claims.

``--resume_run_id`` first checks, changing nothing, that the run is of this dataset,
experiment, profile and settings and not alive (:func:`lfxai.tracking.check_resumable`); a
FINISHED run is left alone (exit 0). Only experiments registered as resumable (``roar_test``)
resume; for the others the option is refused before anything is touched (they would train,
register and log everything twice). The run that ``mlflow run`` made for a resume ends with
the resumed run's outcome, tagged ``lfxai.resumed_into``.

Every invocation first ends KILLED the runs a dead process (SIGKILL, lost machine) left
RUNNING in its experiment and in ``Default`` (:func:`lfxai.tracking.end_stale_runs`) and says
so. Stop signals and exit codes: :mod:`lfxai.cli.launch`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial

from lfxai import __version__
from lfxai.cli.launch import end_dead_runs, is_true, launch, parse_overrides, placed_run
from lfxai.cli.naming import Request, describe, run_name
from lfxai.config import (
    KEEP,
    PROFILES,
    ConfigError,
    Resolved,
    load_profile,
    resolve,
    setting_differences,
)
from lfxai.experiments.registry import EXPERIMENTS, get_experiment, names
from lfxai.metrics.verdicts import VERDICT_VALUE
from lfxai.plugins import get_dataset
from lfxai.redact import redact
from lfxai.tracking import (
    ERROR_TAG,
    RESUMED_INTO_TAG,
    ResumeRefused,
    Stopped,
    Tracker,
    check_resumable,
    error_text,
    experiment_name,
    terminate_run,
    tracked_run,
    tracking_uri,
)
from lfxai.tracking.store import ui_command


def _parser(dataset: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"entrypoints/{dataset}.py",
        description=f"Run one {dataset} experiment; other --key value pairs override settings.",
    )
    parser.add_argument("--name", required=True, help=f"one of {names(dataset)}")
    parser.add_argument("--profile", default="quick", help=f"one of {list(PROFILES)}")
    parser.add_argument(
        "--resume_run_id", default="none", help="continue this (interrupted) run instead"
    )
    parser.add_argument(
        "--verbose", default="", help="true: MLflow's INFO chatter too (default: LFXAI_VERBOSE)"
    )
    return parser


def settings(request: Request, overrides: dict[str, str]) -> Resolved:
    """The experiment's settings for this command, resolved once (no side effect).

    Shared by a run and by the check before a resume, so both resolve settings alike.
    """
    dataset = request.entry_point
    experiment = get_experiment(dataset, request.experiment)
    if request.profile not in PROFILES:
        raise ConfigError(f"unknown profile {request.profile!r}; valid choices: {list(PROFILES)}")
    values = load_profile(dataset, request.experiment, request.profile)
    resolved = resolve(experiment.schema, values, overrides)
    get_dataset(dataset).check_config(resolved.config)
    return resolved


def _name_and_describe(
    tracker: Tracker, request: Request, given: dict[str, str], resolved: Resolved | None
) -> str:
    """Names and describes the run once: by what differs, or by what was given (bad input)."""
    number = tracker.run_number()
    shown = given if resolved is None else {k: v for k, (v, _) in resolved.changed.items()}
    name = run_name(request.experiment, request.profile, shown, number)
    tracker.set_name(name)
    headline = (
        f"**{request.experiment}** on **{request.entry_point}**, profile `{request.profile}`, "
        f"run #{number}."
    )
    changed = None if resolved is None else resolved.changed
    tracker.set_description(describe(request, headline, given, changed))
    return name


def _execute(
    request: Request,
    overrides: dict[str, str],
    tracker: Tracker,
    launched_run: str | None,
    resolved: Resolved | None = None,
) -> None:
    """Runs the experiment in ``tracker``'s run (``resolved``: its settings, if known)."""
    end_dead_runs(tracker, launched_run)
    try:
        resolved = resolved or settings(request, overrides)
    except ConfigError:
        given = {k: v for k, v in overrides.items() if v != KEEP}
        _name_and_describe(tracker, request, given, None)
        raise
    name = _name_and_describe(tracker, request, resolved.given, resolved)
    dataset = request.entry_point
    identity = {
        "dataset": dataset,
        "experiment": request.experiment,
        "profile": request.profile,
        "version": __version__,
    }
    tracker.log_config(identity, resolved.config)
    start = time.perf_counter()
    experiment = EXPERIMENTS[request.experiment]
    summary = experiment.run(get_dataset(dataset), resolved.config, tracker)
    tracker.log_metrics({"time/total_seconds": time.perf_counter() - start})
    what = f"{dataset}/{request.experiment} ({request.profile})"
    print_summary(tracker, f"{what} finished", name, summary)


SUMMARY_LINES = 8  # key numbers printed at the end; the run holds all of them


def print_summary(tracker: Tracker, what: str, name: str, summary: dict[str, object]) -> None:
    """The end of a run on the console: where it is, its claims' verdicts, key numbers."""
    print(f"[lfxai] {what}: run {tracker.run_id}, '{name}' in '{tracker.experiment_name()}'")
    words = {value: word for word, value in VERDICT_VALUE.items()}
    prefix = "claims/verdict/"
    verdicts = {
        key.removeprefix(prefix): words.get(value, str(value))
        for key, value in tracker.metrics().items()
        if key.startswith(prefix)
    }
    if verdicts:
        counts = ", ".join(f"{list(verdicts.values()).count(w)} {w}" for w in VERDICT_VALUE)
        print(f"[lfxai] claims: {counts} (claims.md in the run's artifacts says why)")
        for claim, word in sorted(verdicts.items()):
            print(f"  {word:<12} {claim}")
    items = list(summary.items())
    for key, value in items[:SUMMARY_LINES]:
        print(f"  {key}: {value:.6g}" if isinstance(value, float) else f"  {key}: {value}")
    if len(items) > SUMMARY_LINES:
        print(f"  ... and {len(items) - SUMMARY_LINES} more in the run's metrics")
    print(f"[lfxai] store: {redact(tracking_uri())}; to look: {ui_command(tracking_uri())}")


def main(dataset: str, argv: list[str] | None = None) -> int:
    """Runs one experiment of ``dataset``; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    args, extra = _parser(dataset).parse_known_args(argv)
    declared = {"name": args.name, "profile": args.profile}
    request = Request(dataset, args.name, args.profile, declared, argv)
    launched_run = os.environ.get("MLFLOW_RUN_ID")
    resume = None if args.resume_run_id.lower() in ("", "none") else args.resume_run_id
    # A resumed run stays where it is; an unknown experiment gets no MLflow experiment.
    known = args.name in names(dataset)
    location = experiment_name(dataset, args.name) if known and not resume else None

    def work() -> None:
        if resume:
            _resume(request, extra, resume, launched_run)
            return
        # Named for now; _execute names it by its settings. FAILED if anything raises.
        with placed_run(location, f"{args.profile} · {args.name}") as tracker:
            _execute(request, parse_overrides(extra), tracker, launched_run)

    verbose = is_true(args.verbose) if args.verbose else None
    return launch(work, launched_run, launcher=None if resume else launched_run, verbose=verbose)


def _resume(request: Request, extra: list[str], resume: str, launched_run: str | None) -> None:
    """Continues run ``resume`` after checking, changing nothing, that it may be resumed.

    ``launched_run`` (the run ``mlflow run`` made) gets no work: it is tagged with the run it
    resumed into and ends with that run's outcome (FAILED with the reason when refused).
    """
    launcher = launched_run if launched_run and launched_run != resume else None
    # Nothing may adopt the launcher's run from the environment (a nested run did, once).
    os.environ.pop("MLFLOW_RUN_ID", None)
    outcome, tags = "FAILED", {RESUMED_INTO_TAG: resume}
    try:
        overrides = parse_overrides(extra)
        _check_resumable_experiment(request.entry_point, request.experiment, resume)
        resolved = settings(request, overrides)
        identity = {
            "dataset": request.entry_point,
            "experiment": request.experiment,
            "profile": request.profile,
        }
        differ = partial(setting_differences, resolved.config)
        status = check_resumable(resume, identity, differ)
        if status == "FINISHED":
            print(f"[lfxai] run {resume} is already FINISHED: nothing to resume")
            outcome = "FINISHED"
            return
        print(f"[lfxai] resuming run {resume} ({status})")
        if launcher:
            Tracker(launcher).set_tags(tags)
        with tracked_run(f"{request.profile} · {request.experiment}", run_id=resume) as tracker:
            _execute(request, overrides, tracker, launcher, resolved)
        outcome = "FINISHED"
    except (Stopped, KeyboardInterrupt):
        outcome = "KILLED"
        raise
    except Exception as error:
        tags[ERROR_TAG] = error_text(error)
        raise
    finally:
        if launcher:
            terminate_run(launcher, outcome, tags)


def _check_resumable_experiment(dataset: str, name: str, resume: str) -> None:
    """Refuses ``resume_run_id`` for an experiment that cannot resume without duplicates."""
    experiment = get_experiment(dataset, name)
    if not experiment.resumable:
        resumable = [n for n in names(dataset) if n in EXPERIMENTS and EXPERIMENTS[n].resumable]
        raise ResumeRefused(
            f"resume_run_id {resume}: {name} cannot resume (it would train, register and log "
            f"its results a second time): nothing was changed; start a new run instead "
            f"(resumable experiments of {dataset}: {resumable})"
        )
