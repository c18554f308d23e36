"""The report's command line: ``python -m entrypoints.report --out report/``.

Options: ``--profile paper``, ``--run_ids a,b``, ``--log true``.

Builds the report of the store ``MLFLOW_TRACKING_URI`` names (default ``./mlflow.db``) and
logs it as a run of the experiment ``report``: its artifacts are the report, its tags list the
source runs. The MLflow entry point ``report`` runs the same (``mlflow run . -e report -P
profile=quick``). Bad input (an unknown profile, a run id that is not a finished top-level
run of an lfxai experiment of the profile, no store) ends with one line naming it, exit 2, and
the run FAILED.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from lfxai.cli.launch import EXIT_BAD_INPUT, launch, placed_run
from lfxai.config import PROFILES, ConfigError
from lfxai.redact import redact
from lfxai.report.build import Report, build
from lfxai.report.collect import check_profile
from lfxai.tracking import NOTE_TAG, StoreReader, Tracker, sqlite_path, tracking_uri

__all__ = ["EXIT_BAD_INPUT", "main", "run"]

EXPERIMENT = "report"
MAX_TAG = 5000  # MLflow's limit on a tag value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m entrypoints.report", description="The paper regenerated from the store."
    )
    parser.add_argument("--profile", default="paper", help=f"one of {list(PROFILES)}")
    parser.add_argument("--out", default="", help="also write the report into this folder")
    parser.add_argument("--run_ids", default="none", help="comma-separated runs to report on")
    parser.add_argument("--log", default="true", help="log the report as a run (true/false)")
    return parser


def _flag(name: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ConfigError(f"{name}={value!r}; valid choices: ['true', 'false']")
    return value.lower() == "true"


def check_store(uri: str) -> None:
    """Raises :class:`ConfigError` when a SQLite store does not exist.

    MLflow would create an empty one and the report would find nothing.
    """
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        raise ConfigError(
            f"no MLflow store at {path.absolute()} (MLFLOW_TRACKING_URI={redact(uri)}); "
            "point MLFLOW_TRACKING_URI at the store of the runs"
        )


def _describe(report: Report, tracker: Tracker) -> None:
    """Tags listing the source runs and a description linking each."""
    tags = {
        "lfxai.report.profile": report.profile,
        "lfxai.report.sources": ",".join(report.sources)[:MAX_TAG],
        "lfxai.report.missing": ",".join(e.name for e in report.missing)[:MAX_TAG],
    }
    for entry in report.entries:
        if entry.runs:
            tags[f"lfxai.report.source.{entry.name}"] = ",".join(r.run_id for r in entry.runs)
    lines = [f"Report of the **{report.profile}** profile (artifacts: `index.html`).", ""]
    for entry in report.entries:
        for run in entry.runs:
            name = run.tags.get("mlflow.runName", run.run_id)
            link = f"#/experiments/{run.experiment_id}/runs/{run.run_id}"
            lines.append(f"- {entry.name}: [{name}]({link})")
        if not entry.runs:
            lines.append(f"- {entry.name}: missing (`{entry.command()}`)")
    tags[NOTE_TAG] = "\n".join(lines)[:MAX_TAG]
    tracker.set_tags(tags)


def run(profile: str, out: Path | None, run_ids: list[str], log: bool) -> Path | None:
    """Builds the report, logs it as a run (``log``) and writes it into ``out`` (if given).

    The report is written into a fresh folder first and logged from there: an ``out`` that
    holds the store's own artifacts must not be copied into them.

    Returns:
        ``out/index.html``, or None without ``out``.
    """
    reader = StoreReader()
    staging = Path(tempfile.mkdtemp(prefix="lfxai-report-"))
    try:
        if log:
            with placed_run(EXPERIMENT, f"report · {profile}") as tracker:
                report = build(reader, profile, run_ids)  # bad input: the run ends FAILED
                report.write(staging)
                _describe(report, tracker)
                tracker.log_folder(staging)
                print(f"[lfxai] report run {tracker.run_id} in experiment '{EXPERIMENT}'")
        else:
            build(reader, profile, run_ids).write(staging)
        if out is None:
            return None
        shutil.copytree(staging, out, dirs_exist_ok=True)
        return out / "index.html"
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit code."""
    # A report run reads the store: no system metrics, no progress bar per artifact read.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)

    def work() -> None:
        log = _flag("log", args.log)
        check_store(tracking_uri())  # an existing store only: never an empty new one
        if not log:
            check_profile(args.profile)
        ids = [i.strip() for i in args.run_ids.split(",") if i.strip()]
        ids = [] if [i.lower() for i in ids] == ["none"] else ids
        index = run(args.profile, Path(args.out) if args.out else None, ids, log)
        if index is not None:
            print(f"[lfxai] report: {index}")

    launched_run = os.environ.get("MLFLOW_RUN_ID")
    return launch(
        work, launched_run, launcher=launched_run, create_store=False, record_system_metrics=False
    )
