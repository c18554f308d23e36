"""Runs a dead process left RUNNING are ended KILLED by the next invocation, and only those:
a run is judged by its host's (itself, its top-level parent, the run a `mlflow run` pointer
moved to) last sign of life against the silence the host declared."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from mlflow.tracking import MlflowClient

from lfxai import tracking
from lfxai.cli.experiment import main
from lfxai.config import ConfigError
from lfxai.tracking import (
    HEARTBEAT_TAG,
    MOVED_TO_TAG,
    RESUMED_INTO_TAG,
    STALE_AFTER_TAG,
    STOPPED_TAG,
    Heartbeat,
    Tracker,
    end_stale_runs,
    tracked_run,
)
from tests.helpers import EXPERIMENT

OURS = {"lfxai.experiment": "roar_test"}
PROJECT = {"mlflow.source.type": "PROJECT", "mlflow.source.name": "file:///work/lfxai"}


def _ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


def _run(
    experiment: str,
    tags: dict[str, str],
    beat_ago: float | None = None,
    started_ago: float = 0.0,
) -> str:
    """A RUNNING run started ``started_ago`` s ago, its last heartbeat ``beat_ago`` s ago."""
    client = MlflowClient()
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    if beat_ago is not None:
        tags = {**tags, HEARTBEAT_TAG: _ago(beat_ago).isoformat(timespec="seconds")}
    start = int(_ago(started_ago).timestamp() * 1000)
    return client.create_run(experiment_id, start_time=start, tags=tags).info.run_id


def _status(run_id: str) -> str:
    return MlflowClient().get_run(run_id).info.status


def test_dead_runs_and_those_living_in_them_end_killed_live_ones_stay(mlflow_store):
    dead = _run(EXPERIMENT, {**OURS, STALE_AFTER_TAG: "3"}, beat_ago=10, started_ago=60)
    alive = _run(EXPERIMENT, {**OURS, STALE_AFTER_TAG: "300"}, beat_ago=10, started_ago=60)
    # a killed sweep: its trial run (nested) and the pointer `mlflow run` left in Default
    trial = _run(EXPERIMENT, {**OURS, "mlflow.parentRunId": dead}, started_ago=30)
    pointer = _run("Default", {**PROJECT, MOVED_TO_TAG: dead}, started_ago=60)
    live_child = _run(EXPERIMENT, {**OURS, "mlflow.parentRunId": alive}, started_ago=30)
    live_pointer = _run("Default", {**PROJECT, MOVED_TO_TAG: alive}, started_ago=60)
    foreign = _run(EXPERIMENT, {}, started_ago=10**5)  # not ours: a user's own run
    with tracked_run("next invocation") as tracker:
        ended = end_stale_runs(tracker)
    assert {line.split()[0] for line in ended} == {dead, trial, pointer}
    for run_id in (dead, trial, pointer):
        run = MlflowClient().get_run(run_id)
        assert run.info.status == "KILLED"
        reason = run.data.tags[STOPPED_TAG]
        assert f"no sign of life from run {dead}" in reason and "dead after 3 s" in reason
        assert f"ended by run {tracker.run_id}" in reason
        # ended when its host last beat (10 s ago), not when it was noticed; never
        # before its own start
        end = datetime.fromtimestamp(run.info.end_time / 1000, UTC)
        assert end <= _ago(5) and run.info.end_time >= run.info.start_time
    assert {_status(r) for r in (alive, live_child, live_pointer, foreign)} == {"RUNNING"}


def test_a_pointer_follows_its_run_s_end_not_its_own_age(mlflow_store):
    client = MlflowClient()
    finished = _run(EXPERIMENT, {**OURS, STALE_AFTER_TAG: "300"}, beat_ago=0)
    client.set_terminated(finished, "FINISHED")  # `mlflow run` is about to end its pointer
    pointer = _run("Default", {**PROJECT, MOVED_TO_TAG: finished}, started_ago=3600)
    # `mlflow run` of a resume: its run continued an earlier one, which is alive
    resumed = {**PROJECT, RESUMED_INTO_TAG: finished}
    resumer = _run("Default", resumed, started_ago=tracking.UNCLAIMED_STALE_S * 2)
    with tracked_run("next invocation") as tracker:
        assert end_stale_runs(tracker) == []
    assert _status(pointer) == _status(resumer) == "RUNNING"


def test_a_mlflow_run_run_our_code_never_reached_ends_after_an_hour(mlflow_store):
    """Its launcher died before our code started (or is building a conda environment)."""
    recent = _run("Default", PROJECT, started_ago=tracking.UNCLAIMED_STALE_S - 60)
    old = _run("Default", PROJECT, started_ago=tracking.UNCLAIMED_STALE_S + 60)
    other_project = {**PROJECT, "mlflow.source.name": "file:///elsewhere"}
    unrelated = _run("Default", other_project, started_ago=10**5)
    launched = _run("Default", PROJECT)  # this invocation's own `mlflow run` run
    with tracked_run("next invocation") as tracker:
        end_stale_runs(tracker, launched)
    assert [_status(r) for r in (recent, old, unrelated, launched)] == [
        "RUNNING",
        "KILLED",
        "RUNNING",
        "RUNNING",
    ]


def test_every_invocation_looks_first_even_one_with_bad_input(mlflow_store, capsys):
    dead = _run(EXPERIMENT, {**OURS, STALE_AFTER_TAG: "3"}, beat_ago=10, started_ago=60)
    argv = ["--name", "consistency_features", "--profile", "smoke", "--n_epochs", "0"]
    assert main("mnist", argv) == 2
    assert _status(dead) == "KILLED"
    assert f"[lfxai] ended KILLED: run {dead} " in capsys.readouterr().out


def test_a_heartbeat_s_pace_changes_at_once(mlflow_store, monkeypatch):
    client = MlflowClient()
    run_id = _run(EXPERIMENT, OURS)
    with Heartbeat(run_id, every=3600, stale_after=36000) as heartbeat:
        assert client.get_run(run_id).data.tags[STALE_AFTER_TAG] == "36000"
        ticks = iter(datetime(2030, 1, 1, tzinfo=UTC) + timedelta(minutes=i) for i in range(10**6))
        monkeypatch.setattr(tracking.heartbeat, "utc_now", lambda: next(ticks))
        heartbeat.pace(0.01, 2)  # a sweep: its grace period
        assert client.get_run(run_id).data.tags[STALE_AFTER_TAG] == "2"
        first = client.get_run(run_id).data.tags[HEARTBEAT_TAG]
        deadline = time.monotonic() + 60
        # the next beat comes at the new pace, not an hour later
        while client.get_run(run_id).data.tags[HEARTBEAT_TAG] == first:
            assert time.monotonic() < deadline, "no beat at the new pace within 60 s"
            time.sleep(0.01)


def test_the_heartbeat_interval_is_a_positive_number(monkeypatch):
    monkeypatch.setenv("LFXAI_HEARTBEAT_S", "2")
    assert tracking.heartbeat_every() == 2.0
    for bad in ("0", "-1", "soon", "nan"):
        monkeypatch.setenv("LFXAI_HEARTBEAT_S", bad)
        with pytest.raises(ConfigError, match=f"LFXAI_HEARTBEAT_S .* got '{bad}'"):
            tracking.heartbeat_every()


def test_a_stale_run_s_own_bound_decides_when_it_may_be_resumed(mlflow_store):
    identity = {"dataset": "mnist", "experiment": "roar_test", "profile": "smoke"}
    tags = {f"lfxai.{k}": v for k, v in identity.items()} | {STALE_AFTER_TAG: "5"}
    run_id = _run(EXPERIMENT, tags, beat_ago=10, started_ago=60)
    assert tracking.check_resumable(run_id, identity, lambda logged: []) == "RUNNING"
    Tracker(run_id).set_tags({STALE_AFTER_TAG: "60"})
    with pytest.raises(tracking.ResumeRefused, match="alive .* dead after 60 s"):
        tracking.check_resumable(run_id, identity, lambda logged: [])
