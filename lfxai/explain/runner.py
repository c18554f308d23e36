"""The ``explain`` entry point's command line: one run explaining one registered encoder.

``--model_uri`` and ``--dataset`` are required, ``--profile`` (default ``quick``) picks the
settings in ``configs/explain.yaml``; every other ``--key value`` overrides one setting
(``mlflow run -P key=value``). Run placement, stop signals, the store and the end of runs a
dead process left RUNNING are the experiments' (:mod:`lfxai.experiments.runner`): the run
goes to the MLflow experiment ``<dataset>-explain`` and is named ``#<n> <model> <profile>
[settings that differ] · explain``. Bad input ends it FAILED (tag ``lfxai.error``) with one
line on stderr and exit code 2, before anything is explained.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import traceback
from typing import Any

from lfxai import __version__
from lfxai.config import KEEP, PROFILES, ConfigError
from lfxai.experiments.runner import (  # the experiments' pieces, shared on purpose
    EXIT_BAD_INPUT,
    MAX_NAME_VALUE,
    _overrides,
    _show,
    _stop_signals,
    differences,
    end_dead_runs,
)
from lfxai.explain.settings import EXPLAIN, resolve
from lfxai.plugins import DATASETS
from lfxai.redact import redact
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

# Not in run names: the model leads the name already; where the data lives changes no result.
NAME_EXCLUDES = ("data_dir", "model_uri", "dataset")


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


def _cut(text: str) -> str:
    return text if len(text) <= MAX_NAME_VALUE else text[: MAX_NAME_VALUE - 1] + "…"


def run_name(model_uri: str, profile: str, changed: dict[str, Any], number: int) -> str:
    """``#<number> <model> <profile> [k=v ...] · explain``: the model first (what tells
    explain runs apart), as the URI names it without ``models:/``."""
    parts = [f"#{number}", model_uri.removeprefix("models:/"), profile]
    parts += [f"{k}={_cut(_show(v))}" for k, v in changed.items() if k not in NAME_EXCLUDES]
    return " ".join([*parts, "·", EXPLAIN])


def describe(
    args: argparse.Namespace,
    given: dict[str, str],
    changed: dict[str, tuple[Any, Any]] | None,
    number: int,
) -> str:
    """The run's description (Markdown): what it explains, how to rerun it, what differs."""
    rerun = ["mlflow", "run", ".", "-e", EXPLAIN, "-P", f"model_uri={args.model_uri}"]
    rerun += ["-P", f"dataset={args.dataset}", "-P", f"profile={args.profile}"]
    rerun += [arg for key, value in given.items() for arg in ("-P", f"{key}={value}")]
    lines = [
        f"**explain** `{args.model_uri}` on **{args.dataset}**, profile `{args.profile}`, "
        f"run #{number}: label-free feature and example importance of a registered encoder "
        "(tags `lfxai.model.*`: the version explained).",
        "",
        f"Command line: `{shlex.join(['python', '-m', 'entrypoints.explain', *args.argv])}`",
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


def _execute(
    args: argparse.Namespace, overrides: dict[str, str], tracker: Tracker, launched: str | None
) -> None:
    from lfxai.explain.pipeline import explain  # torch work: after the run exists

    end_dead_runs(tracker, launched)
    number = tracker.run_number()
    given = {k: v for k, v in overrides.items() if v != KEEP}
    tracker.set_tags({"mlflow.runName": run_name(args.model_uri, args.profile, given, number)})
    tracker.set_description(describe(args, given, None, number))  # if the input is bad
    config, default, plugin = resolve(args.dataset, args.model_uri, args.profile, overrides)
    changed = differences(config, default)
    name = run_name(args.model_uri, args.profile, {k: v for k, (v, _) in changed.items()}, number)
    tracker.set_tags({"mlflow.runName": name})
    tracker.set_description(describe(args, given, changed, number))
    identity = {"dataset": args.dataset, "experiment": EXPLAIN, "profile": args.profile}
    tracker.log_config({**identity, "version": __version__}, config)
    start = time.perf_counter()
    summary = explain(plugin, config, args.profile, tracker)
    tracker.log_metrics({"time/total_seconds": time.perf_counter() - start})
    print(f"[lfxai] explained {args.model_uri} on {args.dataset} in run {tracker.run_id}")
    print(f"[lfxai] '{name}' in experiment '{tracker.experiment_name()}'")
    for key, value in summary.items():
        print(f"  {key}: {value:.6g}")
    print(f"[lfxai] store: {redact(tracking_uri())}")


def main(argv: list[str] | None = None) -> int:
    """Runs one explanation; returns the process exit code (2: bad input)."""
    argv = sys.argv[1:] if argv is None else argv
    args, extra = _parser().parse_known_args(argv)
    args.argv = argv  # quoted in the run's description
    launched = os.environ.get("MLFLOW_RUN_ID")
    location = experiment_name(args.dataset, EXPLAIN) if args.dataset in DATASETS else None
    try:
        with _stop_signals(follow_parent=launched is not None), system_metrics():
            init_store()  # a new SQLite store: created once, under a lock
            with (
                run_location(location) as replaced,
                tracked_run(f"{args.profile} · {EXPLAIN}") as tracker,  # FAILED if this raises
            ):
                if replaced:
                    tracker.take_over(replaced)
                _execute(args, _overrides(extra), tracker, launched)
    except ConfigError as error:
        print(f"error: {redact(str(error))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Stopped as stop:
        if launched:  # stopped before the run was adopted
            terminate_run(launched, "KILLED", {"lfxai.stopped": stop.reason})
        print(f"[lfxai] {stop}: the runs were ended KILLED", file=sys.stderr)
        return stop.exit_code
    except Exception:
        print(redact(traceback.format_exc()), end="", file=sys.stderr)
        return 1
    return 0
