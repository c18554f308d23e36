"""Command-line runner shared by the thin ``entrypoints/<dataset>.py`` scripts.

``--name`` picks the experiment, ``--profile`` the settings profile; every other
``--key value`` pair overrides one setting of the experiment's schema (that is how
``mlflow run -P key=value`` arrives: the MLproject declares only ``name`` and ``profile``, so
MLflow appends the others as ``--key value``). The value ``profile`` keeps the profile's
setting. Bad input ends the run FAILED with a message naming the bad value and the valid
choices, before any data is touched.

Where the run goes: the experiment ``<dataset>-<experiment>`` unless the user chose one
(see :func:`lfxai.tracking.run_location`). Its name says what differs from other runs there
(``#4 smoke seed=3 · consistency_features``); its description gives the command line, the
settings that differ from the profile and, at the end, the verdicts on the paper's claims.

Lifecycle: SIGTERM and SIGINT end the run and its open nested runs KILLED (tag
``lfxai.stopped``) and exit 128 + the signal; under ``mlflow run`` the process also stops
when ``mlflow run`` dies (Linux). ``--resume_run_id`` first checks, changing nothing, that the
run is of this dataset, experiment, profile and settings and not alive
(:func:`lfxai.tracking.check_resumable`); a FINISHED run is left alone (exit 0). Only
experiments registered as resumable (``roar_test``) resume; for the others the option is
refused before anything is touched (they would train, register and log everything twice).
The run that ``mlflow run`` made for a resume ends with the resumed run's outcome, tagged
``lfxai.resumed_into``.

Every invocation first ends KILLED the runs a dead process (SIGKILL, lost machine) left
RUNNING in its experiment and in ``Default`` (:func:`lfxai.tracking.end_stale_runs`) and says
so. Errors and store URIs are printed redacted (:func:`lfxai.redact.redact`).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import os
import shlex
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from lfxai import __version__
from lfxai.config import (
    KEEP,
    PROFILES,
    BaseConfig,
    ConfigError,
    build_config,
    load_profile,
    setting_differences,
)
from lfxai.experiments.registry import EXPERIMENTS, Experiment, get_experiment, names
from lfxai.plugins import get_dataset
from lfxai.redact import redact
from lfxai.tracking import (
    ERROR_TAG,
    RESUMED_INTO_TAG,
    STOPPED_TAG,
    ResumeRefused,
    Stopped,
    Tracker,
    check_resumable,
    end_stale_runs,
    error_text,
    experiment_name,
    init_store,
    run_location,
    system_metrics,
    terminate_run,
    tracked_run,
    tracking_uri,
)

EXIT_BAD_INPUT = 2
NAME_EXCLUDES = ("data_dir",)  # where the data lives changes no result: not in run names
MAX_NAME_VALUE = 24  # longer values are cut in run names (the description has them whole)


def _overrides(extra: list[str]) -> dict[str, str]:
    """``['--k', 'v', '--k2=v2']`` -> ``{'k': 'v', 'k2': 'v2'}``."""
    out: dict[str, str] = {}
    i = 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--"):
            raise ConfigError(f"unexpected argument {token!r}; expected --key value pairs")
        key, sep, value = token[2:].partition("=")
        if not sep:
            if i + 1 >= len(extra) or extra[i + 1].startswith("--"):
                raise ConfigError(f"parameter --{key} has no value")
            value = extra[i + 1]
            i += 1
        out[key] = value
        i += 1
    return out


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
    return parser


def _settings(
    dataset: str, args: argparse.Namespace, overrides: dict[str, str]
) -> tuple[Experiment, dict[str, Any], BaseConfig]:
    """The experiment, its profile's raw values and the validated settings (no side effect).

    Shared by a run and by the check before a resume, so both resolve settings alike.
    """
    experiment = get_experiment(dataset, args.name)
    if args.profile not in PROFILES:
        raise ConfigError(f"unknown profile {args.profile!r}; valid choices: {list(PROFILES)}")
    profile_values = load_profile(dataset, args.name, args.profile)
    config = build_config(experiment.schema, profile_values, overrides)
    get_dataset(dataset).check_config(config)
    return experiment, profile_values, config


def end_dead_runs(tracker: Tracker, launched_run: str | None) -> None:
    """Ends KILLED (and names) the runs dead processes left RUNNING where this run goes."""
    for line in end_stale_runs(tracker, launched_run):
        print(f"[lfxai] ended KILLED: run {line}")


def _execute(
    dataset: str,
    args: argparse.Namespace,
    overrides: dict[str, str],
    tracker: Tracker,
    launched_run: str | None,
) -> None:
    end_dead_runs(tracker, launched_run)
    number = tracker.run_number()
    given = {k: v for k, v in overrides.items() if v != KEEP}
    tracker.set_tags({"mlflow.runName": run_name(args.name, args.profile, given, number)})
    tracker.set_description(describe(dataset, args, given, None, number))  # if input is bad
    experiment, profile_values, config = _settings(dataset, args, overrides)
    plugin = get_dataset(dataset)
    changed = differences(config, build_config(experiment.schema, profile_values))
    final_name = run_name(args.name, args.profile, {k: v for k, (v, _) in changed.items()}, number)
    tracker.set_tags({"mlflow.runName": final_name})
    tracker.set_description(describe(dataset, args, given, changed, number))
    identity = {
        "dataset": dataset,
        "experiment": args.name,
        "profile": args.profile,
        "version": __version__,
    }
    tracker.log_config(identity, config)
    start = time.perf_counter()
    summary = experiment.run(plugin, config, tracker)
    tracker.log_metrics({"time/total_seconds": time.perf_counter() - start})
    print(f"[lfxai] {dataset}/{args.name} ({args.profile}) finished in run {tracker.run_id}")
    print(f"[lfxai] '{final_name}' in experiment '{tracker.experiment_name()}'")
    for key, value in summary.items():
        print(f"  {key}: {value:.6g}" if isinstance(value, float) else f"  {key}: {value}")
    print(f"[lfxai] store: {redact(tracking_uri())}")


def main(dataset: str, argv: list[str] | None = None) -> int:
    """Runs one experiment of ``dataset``; returns the process exit code."""
    parser = _parser(dataset)
    argv = sys.argv[1:] if argv is None else argv
    args, extra = parser.parse_known_args(argv)
    args.argv = argv  # quoted in the run's description
    launched_run = os.environ.get("MLFLOW_RUN_ID")
    resume = None if args.resume_run_id.lower() in ("", "none") else args.resume_run_id
    provisional_name = f"{args.profile} · {args.name}"  # until _execute knows the settings
    # A resumed run stays where it is; an unknown experiment gets no MLflow experiment.
    known = args.name in names(dataset)
    location = experiment_name(dataset, args.name) if known and not resume else None
    try:
        with _stop_signals(follow_parent=launched_run is not None), system_metrics():
            init_store()  # a new SQLite store: created once, under a lock
            if resume:
                _resume(dataset, args, extra, provisional_name, resume, launched_run)
            else:
                with (
                    run_location(location) as replaced,
                    tracked_run(provisional_name) as tracker,  # FAILED if this raises
                ):
                    if replaced:
                        tracker.take_over(replaced)
                    _execute(dataset, args, _overrides(extra), tracker, launched_run)
    except ConfigError as error:
        print(f"error: {redact(str(error))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Stopped as stop:
        if launched_run and not resume:  # stopped before the run was adopted
            terminate_run(launched_run, "KILLED", {STOPPED_TAG: stop.reason})
        print(f"[lfxai] {stop}: the runs were ended KILLED", file=sys.stderr)
        return stop.exit_code
    except Exception:
        print(redact(traceback.format_exc()), end="", file=sys.stderr)
        return 1
    return 0


# -- resume ------------------------------------------------------------------------------
def _resolved(
    dataset: str, args: argparse.Namespace, overrides: dict[str, str]
) -> tuple[dict[str, str], BaseConfig]:
    """The identity and validated settings this command would run with (no side effect)."""
    _, _, config = _settings(dataset, args, overrides)
    identity = {"dataset": dataset, "experiment": args.name, "profile": args.profile}
    return identity, config


def _resume(
    dataset: str,
    args: argparse.Namespace,
    extra: list[str],
    run_name: str,
    resume: str,
    launched_run: str | None,
) -> None:
    """Continues run ``resume`` after checking, changing nothing, that it may be resumed.

    ``launched_run`` (the run ``mlflow run`` made) gets no work: it is tagged with the run it
    resumed into and ends with that run's outcome (FAILED with the reason when refused).
    """
    launcher = launched_run if launched_run and launched_run != resume else None
    # Nothing may adopt the launcher's run from the environment (a nested run did, once).
    os.environ.pop("MLFLOW_RUN_ID", None)
    outcome, tags = "FAILED", {RESUMED_INTO_TAG: resume}
    try:
        overrides = _overrides(extra)
        _check_resumable_experiment(dataset, args.name, resume)
        identity, config = _resolved(dataset, args, overrides)
        status = check_resumable(resume, identity, partial(setting_differences, config))
        if status == "FINISHED":
            print(f"[lfxai] run {resume} is already FINISHED: nothing to resume")
            outcome = "FINISHED"
            return
        print(f"[lfxai] resuming run {resume} ({status})")
        if launcher:
            Tracker(launcher).set_tags(tags)
        with tracked_run(run_name, run_id=resume) as tracker:
            _execute(dataset, args, overrides, tracker, launcher)
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


# -- stop signals ------------------------------------------------------------------------
@contextmanager
def _stop_signals(follow_parent: bool) -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`Stopped` in the main thread while the block runs.

    Only the first signal raises: later ones are ignored so that the runs can be ended
    KILLED. ``follow_parent`` (under ``mlflow run``, which does not forward SIGTERM to its
    child): this process gets SIGTERM when its parent dies.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    received: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        if not received:
            received.append(signum)
            raise Stopped(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    following = follow_parent and _parent_death_signal(signal.SIGTERM)
    try:
        yield
    finally:
        if following:
            _parent_death_signal(0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _parent_death_signal(signum: int) -> bool:
    """Asks Linux to send ``signum`` (0: nothing) to this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return False
    pr_set_pdeathsig = 1  # from <linux/prctl.h>
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(pr_set_pdeathsig, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


# -- what the UI shows ---------------------------------------------------------------------
def differences(config: BaseConfig, profile: BaseConfig) -> dict[str, tuple[Any, Any]]:
    """``{setting: (this run's value, the profile's value)}`` for the settings that differ."""
    ours, theirs = dataclasses.asdict(config), dataclasses.asdict(profile)
    return {k: (v, theirs[k]) for k, v in ours.items() if v != theirs[k]}


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def run_name(experiment: str, profile: str, settings: dict[str, Any], number: int) -> str:
    """``#<number> <profile> [k=v ...] · <experiment>``, e.g. ``#2 quick n_epochs=3 · roar_test``.

    What tells runs apart comes first: the UI cuts long names short (runs table, chart
    legends, Compare headers, the registry's source run).

    Args:
        settings: what differs from the profile (``data_dir`` is left out).
        number: the run's number in its experiment.
    """
    parts = [f"#{number}", profile]
    for key, value in settings.items():
        if key in NAME_EXCLUDES:
            continue
        text = _show(value)
        if len(text) > MAX_NAME_VALUE:
            text = text[: MAX_NAME_VALUE - 1] + "…"
        parts.append(f"{key}={text}")
    return " ".join([*parts, "·", experiment])


def describe(
    dataset: str,
    args: argparse.Namespace,
    given: dict[str, str],
    changed: dict[str, tuple[Any, Any]] | None,
    number: int,
) -> str:
    """The run's description (Markdown): what ran, how to rerun it, what differs.

    Args:
        given: the overrides as passed.
        changed: ``{setting: (value, profile's value)}``; None while not yet resolved.
    """
    rerun = ["mlflow", "run", ".", "-e", dataset, "-P", f"name={args.name}"]
    rerun += ["-P", f"profile={args.profile}"]
    for key, value in given.items():
        rerun += ["-P", f"{key}={value}"]
    lines = [
        f"**{args.name}** on **{dataset}**, profile `{args.profile}`, run #{number}.",
        "",
        f"Command line: `{shlex.join(['python', '-m', f'entrypoints.{dataset}', *args.argv])}`",
        "",
        f"Rerun with: `{shlex.join(rerun)}` (add `--env-manager local` without conda)",
        "",
    ]
    if changed is None:
        lines.append("The settings were not resolved (bad input: see the tag `lfxai.error`).")
    elif changed:
        lines += [f"Settings that differ from the `{args.profile}` profile:", ""]
        lines += ["| setting | this run | profile |", "|---|---|---|"]
        lines += [f"| {k} | {_show(v)} | {_show(p)} |" for k, (v, p) in changed.items()]
    else:
        lines.append(f"All settings are the `{args.profile}` profile's.")
    return "\n".join(lines)
