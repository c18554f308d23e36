"""How a run ends when it does not finish: a stop's reason and exit code, a dead run's end."""

from __future__ import annotations

import signal
from datetime import UTC, datetime

import pytest
from mlflow.tracking import MlflowClient

from lfxai.tracking import STOPPED_TAG, Stopped, tracked_run
from lfxai.tracking.lifecycle import terminate_run
from lfxai.tracking.stops import stop_reason
from tests.helpers import open_run


def test_a_stop_names_its_signal_and_a_shell_s_exit_code():
    stop = Stopped(signal.SIGINT)
    assert (stop.signal_name, stop.signum, stop.exit_code) == ("SIGINT", 2, 130)
    assert type(stop.signum) is int  # os.kill gets it back (lfxai.cli.sweep)
    assert stop_reason(stop) == "SIGINT received: the run was stopped"
    assert stop_reason(KeyboardInterrupt()) == "KeyboardInterrupt: the run was stopped"


def test_ctrl_c_ends_the_run_killed_with_its_reason(mlflow_store):
    with pytest.raises(KeyboardInterrupt), tracked_run("interrupted") as tracker:
        raise KeyboardInterrupt
    run = MlflowClient().get_run(tracker.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags[STOPPED_TAG] == "KeyboardInterrupt: the run was stopped"


def test_a_dead_run_ends_at_its_last_sign_of_life_never_before_its_start(mlflow_store):
    client = MlflowClient()
    dead = open_run().info
    run_id, start = dead.run_id, dead.start_time
    last = datetime.fromtimestamp(start / 1000 + 90.5, tz=UTC)
    terminate_run(run_id, "KILLED", {STOPPED_TAG: "dead"}, end_time=last)
    run = client.get_run(run_id)
    assert (run.info.status, run.info.end_time) == ("KILLED", start + 90_500)
    assert run.data.tags[STOPPED_TAG] == "dead"
    early = open_run().info
    early_id, early_start = early.run_id, early.start_time
    terminate_run(early_id, "FAILED", end_time=datetime(2000, 1, 1, tzinfo=UTC))
    assert client.get_run(early_id).info.end_time == early_start
    # An ended run is left as it is: status, end and tags.
    terminate_run(run_id, "FAILED", {STOPPED_TAG: "again"}, end_time=datetime.now(UTC))
    run = client.get_run(run_id)
    assert (run.info.status, run.info.end_time) == ("KILLED", start + 90_500)
    assert run.data.tags[STOPPED_TAG] == "dead"
