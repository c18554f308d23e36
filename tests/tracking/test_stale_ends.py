"""Ending the runs a dead process left RUNNING: only RUNNING runs, silent past their bound,
judged by their host (or by themselves when the host is gone)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mlflow.tracking import MlflowClient

from lfxai.tracking import (
    HEARTBEAT_TAG,
    STALE_AFTER_TAG,
    STOPPED_TAG,
    Tracker,
    end_stale_runs,
    heartbeat,
)
from lfxai.tracking.tags import PARENT_TAG
from tests.helpers import EXPERIMENT, open_run


def test_a_run_that_ended_long_ago_is_neither_ended_again_nor_reported(mlflow_store):
    client = MlflowClient()
    long_ago = datetime.now(UTC) - timedelta(days=2)
    tags = {"lfxai.experiment": "roar_test", HEARTBEAT_TAG: long_ago.isoformat()}
    start = int(long_ago.timestamp() * 1000)
    ended = open_run(EXPERIMENT, tags=tags, start_time=start).info.run_id
    client.set_terminated(ended, "FAILED", end_time=start + 1000)
    dead = open_run(EXPERIMENT, tags=tags, start_time=start).info.run_id
    now = Tracker(open_run(EXPERIMENT).info.run_id)
    assert [line.split()[0] for line in end_stale_runs(now)] == [dead]
    run = client.get_run(ended)
    assert (run.info.status, run.info.end_time) == ("FAILED", start + 1000)
    assert STOPPED_TAG not in run.data.tags


def test_a_run_silent_for_exactly_its_bound_is_still_alive(mlflow_store, monkeypatch):
    beat = datetime(2030, 1, 1, tzinfo=UTC)
    tags = {"lfxai.experiment": "roar_test", HEARTBEAT_TAG: beat.isoformat()}
    start = int((beat - timedelta(hours=1)).timestamp() * 1000)
    run_id = open_run(EXPERIMENT, tags={**tags, STALE_AFTER_TAG: "60"}, start_time=start)
    run_id = run_id.info.run_id
    now = Tracker(open_run(EXPERIMENT).info.run_id)
    monkeypatch.setattr(heartbeat, "utc_now", lambda: beat + timedelta(seconds=60))
    assert end_stale_runs(now) == []
    monkeypatch.setattr(heartbeat, "utc_now", lambda: beat + timedelta(seconds=61))
    assert [line.split()[0] for line in end_stale_runs(now)] == [run_id]


def test_a_run_whose_parent_is_gone_is_judged_by_itself(mlflow_store):
    # e.g. its parent was purged (`mlflow gc`): the parent id no longer resolves
    long_ago = datetime.now(UTC) - timedelta(days=2)
    tags = {"lfxai.experiment": "roar_test", PARENT_TAG: "0" * 32}
    start = int(long_ago.timestamp() * 1000)
    orphan = open_run(EXPERIMENT, tags=tags, start_time=start).info.run_id
    now = Tracker(open_run(EXPERIMENT).info.run_id)
    (line,) = end_stale_runs(now)
    assert line.startswith(f"{orphan} ") and f"no sign of life from run {orphan}" in line
