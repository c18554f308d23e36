"""Command-line runner shared by the thin ``entrypoints/<dataset>.py`` scripts.

``--name`` picks the experiment, ``--profile`` the settings profile; every other
``--key value`` pair overrides one setting of the experiment's schema (that is how
``mlflow run -P key=value`` arrives, declared in the MLproject or not). The value
``profile`` (the MLproject default) keeps the profile's setting. Bad input ends the run
FAILED with a message naming the bad value and the valid choices, before any data is touched.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

from lfxai import __version__
from lfxai.config import PROFILES, ConfigError, build_config, load_profile
from lfxai.experiments.registry import get_experiment, names
from lfxai.plugins import get_dataset
from lfxai.tracking import Tracker, tracked_run, tracking_uri

EXIT_BAD_INPUT = 2


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


def _execute(
    dataset: str, args: argparse.Namespace, overrides: dict[str, str], tracker: Tracker
) -> None:
    experiment = get_experiment(dataset, args.name)
    plugin = get_dataset(dataset)
    if args.profile not in PROFILES:
        raise ConfigError(f"unknown profile {args.profile!r}; valid choices: {list(PROFILES)}")
    config = build_config(
        experiment.schema, load_profile(dataset, args.name, args.profile), overrides
    )
    if hasattr(config, "split"):
        plugin.check_split(config.split)
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
    for key, value in summary.items():
        print(f"  {key}: {value:.6g}" if isinstance(value, float) else f"  {key}: {value}")
    print(f"[lfxai] store: {tracking_uri()}")


def main(dataset: str, argv: list[str] | None = None) -> int:
    """Runs one experiment of ``dataset``; returns the process exit code."""
    parser = _parser(dataset)
    args, extra = parser.parse_known_args(argv)
    launched_run = os.environ.get("MLFLOW_RUN_ID")
    resume = None if args.resume_run_id.lower() in ("", "none") else args.resume_run_id
    run_name = f"{dataset}-{args.name}-{args.profile}"
    try:
        if resume and launched_run and launched_run != resume:
            # `mlflow run` made a fresh run; the work continues in the resumed one.
            Tracker(launched_run).set_tags({"lfxai.resumed_into": resume})
        with tracked_run(run_name, run_id=resume) as tracker:  # FAILED if this raises
            _execute(dataset, args, _overrides(extra), tracker)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception:
        traceback.print_exc()
        return 1
    return 0
