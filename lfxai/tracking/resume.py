"""Runs a dead process left behind: ended KILLED by the next invocation, or resumed.

A run lives in the process of its host (:func:`_host`: itself, its top-level parent, or the
run a `mlflow run` pointer moved or resumed into); it is dead when its host has shown no sign
of life for longer than the host declared (:mod:`lfxai.tracking.heartbeat`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lfxai.config import ConfigError
from lfxai.redact import redact
from lfxai.tracking import heartbeat, store
from lfxai.tracking.lifecycle import terminate_run
from lfxai.tracking.tags import (
    MOVED_TO_TAG,
    PARENT_TAG,
    RESUME_IDENTITY,
    RESUMED_INTO_TAG,
    STOPPED_TAG,
)
from lfxai.tracking.tracker import Tracker


class ResumeRefused(ConfigError):
    """The run named by ``resume_run_id`` must not be resumed by this command."""


def _host(run: Run, get: Callable[[str], Run | None]) -> Run:
    """The run whose process ``run`` lives in.

    The run a `mlflow run` pointer moved or resumed into, the top-level ancestor of a nested
    run, else ``run`` itself.
    """
    tags = run.data.tags
    target = tags.get(MOVED_TO_TAG) or tags.get(RESUMED_INTO_TAG)
    host = (get(target) if target else None) or run
    for _ in range(8):  # nesting is one or two levels deep; a cycle must not hang
        parent_id = host.data.tags.get(PARENT_TAG)
        parent = get(parent_id) if parent_id else None
        if parent is None:
            break
        host = parent
    return host


def end_stale_runs(tracker: Tracker, launched_run: str | None = None) -> list[str]:
    """Ends KILLED the runs a dead process left RUNNING where ``tracker``'s run goes.

    That is ``tracker``'s experiment and ``Default`` (where `mlflow run` leaves its pointer
    runs). Only lfxai's runs are touched: those with an ``lfxai.*`` tag, and `mlflow run` runs
    of the same project as ``launched_run`` that never reached our code. Each gets
    ``lfxai.stopped`` saying why.

    Args:
        tracker: the invocation's own run (left alone, as is ``launched_run``).
        launched_run: the run `mlflow run` made for this invocation (None: not launched so).

    Returns:
        One line per run ended: its id, name and why.
    """
    client, now = MlflowClient(), heartbeat.utc_now()
    keep = {tracker.run_id, launched_run}
    source = None
    if launched_run:
        source = client.get_run(launched_run).data.tags.get("mlflow.source.name")
    experiments = {client.get_run(tracker.run_id).info.experiment_id}
    default = client.get_experiment_by_name(store.DEFAULT_EXPERIMENT)
    if default is not None:
        experiments.add(default.experiment_id)
    running = client.search_runs(
        sorted(experiments), "attributes.status = 'RUNNING'", max_results=1000
    )
    cache: dict[str, Run | None] = {run.info.run_id: run for run in running}

    def get(run_id: str) -> Run | None:
        if run_id not in cache:
            try:
                cache[run_id] = client.get_run(run_id)
            except MlflowException:
                cache[run_id] = None
        return cache[run_id]

    def ours(run: Run) -> bool:
        tags = run.data.tags
        return any(k.startswith("lfxai.") for k in tags) or (
            source is not None
            and tags.get("mlflow.source.type") == "PROJECT"
            and tags.get("mlflow.source.name") == source
        )

    ended = []
    for run in running:
        if run.info.run_id in keep or not ours(run):
            continue
        host = _host(run, get)
        bound = heartbeat.stale_after(host)
        if heartbeat.seconds_since_alive(host, now) <= bound:
            continue
        last = heartbeat.last_sign_of_life(host)
        reason = (
            f"its process died: no sign of life from run {host.info.run_id} since "
            f"{last:%Y-%m-%d %H:%M:%S} UTC (dead after {bound:g} s); ended by run "
            f"{tracker.run_id}"
        )
        # dated at the last sign of life: its wall time is the time it worked, not the
        # hours it lay dead before this invocation noticed it
        terminate_run(run.info.run_id, "KILLED", {STOPPED_TAG: reason}, end_time=last)
        ended.append(f"{run.info.run_id} '{run.info.run_name}': {reason}")
    return ended


def check_resumable(
    run_id: str,
    identity: dict[str, str],
    settings_differ: Callable[[dict[str, str]], list[str]],
    now: datetime | None = None,
) -> str:
    """Checks, without changing anything, that this command may resume ``run_id``.

    Args:
        run_id: the run to resume (a top-level experiment run).
        identity: the command's ``dataset``, ``experiment`` and ``profile``.
        settings_differ: given the run's logged settings (``config.*`` params without the
            prefix), one line per setting the command would change (see
            :func:`lfxai.config.setting_differences`).
        now: the current time (tests).

    Returns:
        The run's status: ``FINISHED`` (nothing to do), or ``FAILED``, ``KILLED`` or a stale
        ``RUNNING`` (to be continued).

    Raises:
        ResumeRefused: no such run, a nested run, another data set / experiment / profile,
            other settings (each difference named), or a RUNNING run whose heartbeat is
            fresh (its process is still working on it).
    """
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ResumeRefused(
            f"resume_run_id {run_id!r}: no such run in the store {redact(store.tracking_uri())}"
        ) from None
    tags = run.data.tags
    if run.info.lifecycle_stage == "deleted":
        raise ResumeRefused(f"resume_run_id {run_id}: the run is deleted")
    if PARENT_TAG in tags:
        raise ResumeRefused(
            f"resume_run_id {run_id} is a nested run of {tags[PARENT_TAG]}: "
            "resume that parent run instead"
        )
    differ = [
        f"{key}: the run is {tags.get(f'lfxai.{key}')!r}, this command {identity[key]!r}"
        for key in RESUME_IDENTITY
        if tags.get(f"lfxai.{key}") != identity[key]
    ]
    if differ:
        raise ResumeRefused(
            f"resume_run_id {run_id} is a run of another kind, not resumed: " + "; ".join(differ)
        )
    prefix = "config."  # how Tracker.log_config logs the settings
    logged = {k[len(prefix) :]: v for k, v in run.data.params.items() if k.startswith(prefix)}
    if logged:  # empty: the first attempt stopped before it logged its settings
        differ = settings_differ(logged)
        if differ:
            raise ResumeRefused(
                f"resume_run_id {run_id} was started with other settings, not resumed "
                "(resume with the run's settings, or start a new run): " + "; ".join(differ)
            )
    status = run.info.status
    if status == "RUNNING":
        quiet, bound = heartbeat.seconds_since_alive(run, now), heartbeat.stale_after(run)
        if quiet <= bound:
            raise ResumeRefused(
                f"resume_run_id {run_id} is RUNNING and alive (last heartbeat {quiet:.0f} s "
                f"ago; a run is taken for dead after {bound:.0f} s without one): "
                "let it finish, or stop it (SIGTERM / Ctrl-C), then resume"
            )
    return status
