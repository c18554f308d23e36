"""lfxai.tracking: state dicts are logged as CPU tensors (logged encoders:
test_tracking_encoders.py); the run lifecycle (explicit nesting, KILLED on a stop, heartbeats,
resume checks, the one-time, locked initialisation of a new SQLite store)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from lfxai import tracking
from lfxai.tracking import (
    ERROR_TAG,
    HEARTBEAT_TAG,
    STOPPED_TAG,
    ResumeRefused,
    Stopped,
    Tracker,
    check_resumable,
    sqlite_path,
    tracked_run,
)
from tests.helpers import EXPERIMENT, REPO


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2))


def test_log_state_dict_saves_detached_cpu_tensors(mlflow_store):
    model = _model()
    with mlflow.start_run() as run:
        tracker = Tracker(run.info.run_id)
        tracker.log_state_dict(model, "weights/model.pt")
        with tempfile.TemporaryDirectory() as tmp:
            local = tracker.client.download_artifacts(run.info.run_id, "weights/model.pt", tmp)
            # No map_location: a tensor saved on a GPU would come back on the GPU (or fail).
            state = torch.load(local, weights_only=True)
    assert set(state) == set(model.state_dict())
    assert all(v.device.type == "cpu" and not v.requires_grad for v in state.values())
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value)


# -- run lifecycle ---------------------------------------------------------------------
IDENTITY = {"dataset": "mnist", "experiment": "roar_test", "profile": "smoke"}


def _same_settings(_logged: dict[str, str]) -> list[str]:
    return []


def _run(client: MlflowClient, tags: dict[str, str], start_time: int | None = None) -> str:
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    return client.create_run(experiment_id, start_time=start_time, tags=tags).info.run_id


def _children(client: MlflowClient, run_id: str) -> list:
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    return client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )


def test_nested_runs_open_under_the_parent_whatever_mlflow_run_id_says(mlflow_store, monkeypatch):
    client = MlflowClient()
    parent = _run(client, {})
    client.set_terminated(parent, "FAILED")  # an interrupted run, about to be resumed
    launcher = _run(client, {})  # what `mlflow run` made for the resume
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher)
    with tracked_run("resumed", run_id=parent) as tracker:
        with tracker.nested("first") as first:
            pass
        with tracker.nested("second") as second:
            pass
    assert {r.info.run_id for r in _children(client, parent)} == {first.run_id, second.run_id}
    assert _children(client, launcher) == []
    assert client.get_run(launcher).info.status == "RUNNING"  # not taken over, not ended
    assert client.get_run(parent).info.status == "FINISHED"


def test_a_stop_ends_the_run_and_its_open_nested_run_killed(mlflow_store):
    client = MlflowClient()
    with pytest.raises(Stopped), tracked_run("stopped") as tracker:
        with tracker.nested("done"):
            pass
        with tracker.nested("open") as child:
            raise Stopped(signal.SIGTERM)
    parent = client.get_run(tracker.run_id)
    assert parent.info.status == "KILLED"
    assert parent.data.tags[STOPPED_TAG] == "SIGTERM received: the run was stopped"
    assert ERROR_TAG not in parent.data.tags
    statuses = {r.info.run_name: r.info.status for r in _children(client, tracker.run_id)}
    assert statuses == {"done": "FINISHED", "open": "KILLED"}
    assert client.get_run(child.run_id).data.tags[STOPPED_TAG].startswith("SIGTERM")
    assert Stopped(signal.SIGTERM).exit_code == 143


def test_a_working_run_refreshes_its_heartbeat(mlflow_store, monkeypatch):
    ticks = iter(datetime(2030, 1, 1, tzinfo=UTC) + timedelta(minutes=i) for i in range(10**6))
    monkeypatch.setattr(tracking.heartbeat, "utc_now", lambda: next(ticks))
    client = MlflowClient()
    run_id = _run(client, {})
    with tracking.Heartbeat(run_id, every=0.01, stale_after=5):
        first = client.get_run(run_id).data.tags[HEARTBEAT_TAG]  # set before the block runs
        deadline = time.monotonic() + 60
        while client.get_run(run_id).data.tags[HEARTBEAT_TAG] == first:
            assert time.monotonic() < deadline, "no second heartbeat within 60 s"
            time.sleep(0.01)
    assert datetime.fromisoformat(first).year == 2030  # UTC, ISO 8601
    assert client.get_run(run_id).data.tags[tracking.STALE_AFTER_TAG] == "5"
    with tracked_run("beating") as tracker:
        assert HEARTBEAT_TAG in tracker.tags()
        assert tracker.tags()[tracking.STALE_AFTER_TAG] == "300"  # 10 beats of 30 s


def test_a_run_left_running_is_resumable_once_its_heartbeat_is_stale(mlflow_store):
    client = MlflowClient()
    tags = {f"lfxai.{k}": v for k, v in IDENTITY.items()}
    beat = datetime(2030, 1, 1, tzinfo=UTC)
    start = int((beat - timedelta(hours=1)).timestamp() * 1000)
    run_id = _run(client, {**tags, HEARTBEAT_TAG: beat.isoformat()}, start_time=start)
    alive = beat + timedelta(seconds=tracking.STALE_AFTER_S - 1)
    with pytest.raises(ResumeRefused, match="RUNNING and alive"):
        check_resumable(run_id, IDENTITY, _same_settings, now=alive)
    dead = beat + timedelta(seconds=tracking.STALE_AFTER_S + 1)  # SIGKILL, lost machine
    assert check_resumable(run_id, IDENTITY, _same_settings, now=dead) == "RUNNING"
    for status in ("FAILED", "KILLED", "FINISHED"):
        client.set_terminated(run_id, status)
        assert check_resumable(run_id, IDENTITY, _same_settings, now=alive) == status
    assert client.get_run(run_id).data.tags[HEARTBEAT_TAG] == beat.isoformat()  # read only


def test_a_run_alive_up_to_its_bound_is_not_resumed(mlflow_store):
    client = MlflowClient()
    tags = {f"lfxai.{k}": v for k, v in IDENTITY.items()}
    beat = datetime(2030, 1, 1, tzinfo=UTC)
    run_id = _run(client, {**tags, HEARTBEAT_TAG: beat.isoformat(), tracking.STALE_AFTER_TAG: "60"})
    message = (
        f"resume_run_id {run_id} is RUNNING and alive (last heartbeat 60 s ago; a run is taken "
        "for dead after 60 s without one): let it finish, or stop it (SIGTERM / Ctrl-C), then "
        "resume"
    )
    with pytest.raises(ResumeRefused) as refused:
        check_resumable(run_id, IDENTITY, _same_settings, now=beat + timedelta(seconds=60))
    assert str(refused.value) == message
    assert check_resumable(run_id, IDENTITY, _same_settings, now=beat + timedelta(seconds=61))


def test_a_deleted_run_or_another_kind_of_run_is_refused_naming_why(mlflow_store):
    client = MlflowClient()
    other = {"lfxai.dataset": "ecg5000", "lfxai.experiment": "roar_test", "lfxai.profile": "paper"}
    run_id = _run(client, other)
    with pytest.raises(ResumeRefused) as refused:
        check_resumable(run_id, IDENTITY, _same_settings)
    assert str(refused.value) == (
        f"resume_run_id {run_id} is a run of another kind, not resumed: dataset: the run is "
        "'ecg5000', this command 'mnist'; profile: the run is 'paper', this command 'smoke'"
    )
    client.delete_run(run_id)
    with pytest.raises(ResumeRefused) as refused:
        check_resumable(run_id, IDENTITY, _same_settings)
    assert str(refused.value) == f"resume_run_id {run_id}: the run is deleted"


def test_resume_check_names_every_differing_setting(mlflow_store):
    client = MlflowClient()
    run_id = _run(client, {f"lfxai.{k}": v for k, v in IDENTITY.items()})
    Tracker(run_id).log_params({"n_epochs": "1", "lr": "0.001"}, prefix="config.")
    client.set_terminated(run_id, "FAILED")

    def differ(logged: dict[str, str]) -> list[str]:
        assert logged == {"n_epochs": "1", "lr": "0.001"}  # the config.* params, unprefixed
        return ["n_epochs: the run has '1', this command '2'", "lr: ..."]

    with pytest.raises(ResumeRefused) as refused:
        check_resumable(run_id, IDENTITY, differ)
    assert str(refused.value) == (
        f"resume_run_id {run_id} was started with other settings, not resumed (resume with the "
        "run's settings, or start a new run): n_epochs: the run has '1', this command '2'; lr: ..."
    )


def test_a_resumed_run_loses_its_stale_outcome_and_keeps_its_params(mlflow_store):
    client = MlflowClient()
    run_id = _run(client, {ERROR_TAG: "RuntimeError: old", STOPPED_TAG: "SIGTERM received"})
    Tracker(run_id).log_params({"device_used": "cpu"})
    client.set_terminated(run_id, "KILLED")
    with tracked_run("resumed", run_id=run_id) as tracker:
        tracker.log_params({"device_used": "cuda", "n_train_used": 40})  # no MLflow error
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert ERROR_TAG not in run.data.tags and STOPPED_TAG not in run.data.tags
    assert run.data.params == {"device_used": "cpu", "n_train_used": "40"}


def test_sqlite_path():
    assert sqlite_path("sqlite:////abs/mlflow.db") == Path("/abs/mlflow.db")
    assert sqlite_path("sqlite:///rel.db?timeout=20") == Path("rel.db")
    assert sqlite_path("sqlite:///rel.db?timeout=20&note=why?") == Path("rel.db")  # first "?"
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("http://tracking-host:5000") is None
    assert sqlite_path("postgresql://mlflow@db/mlflow") is None


@pytest.mark.slow
def test_three_processes_initialise_a_new_sqlite_store_at_once(tmp_path):
    uri = f"sqlite:///{tmp_path}/new.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    env.pop("MLFLOW_RUN_ID", None)
    command = [sys.executable, "-m", "lfxai.tracking"]  # what `make store` runs
    workers = [
        subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(3)
    ]
    try:
        outputs = [w.communicate(timeout=600)[0].decode() for w in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output[-3000:]
        assert f"MLflow store ready: {uri}" in output
    client = MlflowClient(tracking_uri=uri)  # the file opens and holds a working store
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert client.search_registered_models() == []
