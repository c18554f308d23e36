"""The ``explain`` entry point's command line: one run explaining one registered encoder.

``--model_uri`` and ``--dataset`` are required, ``--profile`` (default ``quick``) picks the
settings in ``configs/explain.yaml``; every other ``--key value`` overrides one setting
(``mlflow run -P key=value``). Launch, stop signals, the store and the end of runs a dead
process left RUNNING are every command's (:mod:`lfxai.cli.launch`): the run goes to the
MLflow experiment ``<dataset>-explain`` and is named ``#<n> <model> <profile> [settings that
differ] · explain``. Bad input ends it FAILED (tag ``lfxai.error``) with one line on stderr
and exit code 2, before anything is explained.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Any

from lfxai import __version__
from lfxai.cli.launch import EXIT_BAD_INPUT, end_dead_runs, launch, parse_overrides, placed_run
from lfxai.cli.naming import Request, describe, run_name
from lfxai.config import KEEP, PROFILES
from lfxai.explain.settings import EXPLAIN, ExplainConfig, resolve
from lfxai.plugins import DATASETS
from lfxai.redact import redact
from lfxai.tracking import Tracker, experiment_name, tracking_uri

__all__ = ["EXIT_BAD_INPUT", "main"]

# Not in run names: the model leads the name already, the experiment names the data set.
NAME_EXCLUDES = ("model_uri", "dataset")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="entrypoints/explain.py",
        description="Label-free explanations of a registered encoder; other --key value "
        "pairs override settings of configs/explain.yaml.",
    )
    parser.add_argument("--model_uri", required=True, help="e.g. models:/<name>@<alias>")
    parser.add_argument("--dataset", required=True, help=f"one of {sorted(DATASETS)}")
    parser.add_argument("--profile", default="quick", help=f"one of {list(PROFILES)}")
    return parser


def differences(config: ExplainConfig, profile: ExplainConfig) -> dict[str, tuple[Any, Any]]:
    """``{setting: (this run's value, the profile's value)}`` for the settings that differ."""
    ours, theirs = dataclasses.asdict(config), dataclasses.asdict(profile)
    return {k: (v, theirs[k]) for k, v in ours.items() if v != theirs[k]}


def _name_and_describe(
    tracker: Tracker,
    request: Request,
    model_uri: str,
    given: dict[str, Any],
    changed: dict[str, tuple[Any, Any]] | None,
) -> str:
    """Names the run by its model first (what tells explain runs apart), then describes it."""
    number = tracker.run_number()
    shown = given if changed is None else {k: v for k, (v, _) in changed.items()}
    shown = {k: v for k, v in shown.items() if k not in NAME_EXCLUDES}
    name = run_name(
        EXPLAIN, f"{model_uri.removeprefix('models:/')} {request.profile}", shown, number
    )
    tracker.set_name(name)
    headline = (
        f"**explain** `{model_uri}` on **{request.declared['dataset']}**, profile "
        f"`{request.profile}`, run #{number}: label-free feature and example importance of a "
        "registered encoder (tags `lfxai.model.*`: the version explained)."
    )
    tracker.set_description(describe(request, headline, given, changed))
    return name


def _execute(
    request: Request, overrides: dict[str, str], tracker: Tracker, launched_run: str | None
) -> None:
    from lfxai.explain.pipeline import explain  # torch work: after the run exists

    end_dead_runs(tracker, launched_run)
    dataset, model_uri = request.declared["dataset"], request.declared["model_uri"]
    given = {k: v for k, v in overrides.items() if v != KEEP}
    _name_and_describe(tracker, request, model_uri, given, None)  # if the input is bad
    config, default, plugin = resolve(dataset, model_uri, request.profile, overrides)
    changed = differences(config, default)
    name = _name_and_describe(tracker, request, model_uri, given, changed)
    identity = {"dataset": dataset, "experiment": EXPLAIN, "profile": request.profile}
    tracker.log_config({**identity, "version": __version__}, config)
    start = time.perf_counter()
    summary = explain(plugin, config, request.profile, tracker)
    tracker.log_metrics({"time/total_seconds": time.perf_counter() - start})
    print(f"[lfxai] explained {model_uri} on {dataset} in run {tracker.run_id}")
    print(f"[lfxai] '{name}' in experiment '{tracker.experiment_name()}'")
    for key, value in summary.items():
        print(f"  {key}: {value:.6g}")
    print(f"[lfxai] store: {redact(tracking_uri())}")


def main(argv: list[str] | None = None) -> int:
    """Runs one explanation; returns the process exit code (2: bad input)."""
    argv = sys.argv[1:] if argv is None else argv
    args, extra = _parser().parse_known_args(argv)
    declared = {"model_uri": args.model_uri, "dataset": args.dataset, "profile": args.profile}
    request = Request(EXPLAIN, EXPLAIN, args.profile, declared, argv)
    launched_run = os.environ.get("MLFLOW_RUN_ID")
    location = experiment_name(args.dataset, EXPLAIN) if args.dataset in DATASETS else None

    def work() -> None:
        # Named for now; _execute names it by its settings. FAILED if anything raises.
        with placed_run(location, f"{args.profile} · {EXPLAIN}") as tracker:
            _execute(request, parse_overrides(extra), tracker, launched_run)

    return launch(work, launched_run, launcher=launched_run)
