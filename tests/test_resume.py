"""``resume_run_id`` per experiment kind: refused, changing nothing, where the experiment would
train, register and log a second time; accepted where it resumes without duplicates."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

import lfxai.experiments  # noqa: F401  (fills the registry)
from lfxai.cli.experiment import main
from lfxai.cli.launch import EXIT_BAD_INPUT
from lfxai.config import build_config, load_profile
from lfxai.experiments.registry import EXPERIMENTS, entries, get_experiment
from lfxai.tracking import ERROR_TAG, RESUMED_INTO_TAG, Tracker, tracked_run
from tests.helpers import EXPERIMENT

REFUSED = [(d, n) for d, n in entries() if not EXPERIMENTS[n].resumable]


def test_only_roar_test_resumes():
    assert sorted({n for _, n in entries() if EXPERIMENTS[n].resumable}) == ["roar_test"]
    assert REFUSED  # every other kind is checked below


def _interrupted_run(client: MlflowClient, dataset: str, name: str) -> str:
    """A top-level run of ``name`` as its first attempt left it: settings, a curve, FAILED."""
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    run_id = client.create_run(experiment_id, run_name=f"{dataset}-{name}").info.run_id
    config = build_config(
        get_experiment(dataset, name).schema, load_profile(dataset, name, "smoke")
    )
    identity = {"dataset": dataset, "experiment": name, "profile": "smoke", "version": "0.1.0"}
    tracker = Tracker(run_id)
    tracker.log_config(identity, config)
    tracker.log_metric_rows([("fit/train_loss", 1.0, 0), ("fit/train_loss", 0.5, 1)])
    client.set_terminated(run_id, "FAILED")
    return run_id


def _state(client: MlflowClient, run_id: str) -> tuple:
    run = client.get_run(run_id)
    history = [(m.step, m.value) for m in client.get_metric_history(run_id, "fit/train_loss")]
    artifacts = [a.path for a in client.list_artifacts(run_id)]
    return run.info.status, dict(run.data.tags), dict(run.data.params), history, artifacts


@pytest.mark.parametrize(("dataset", "name"), REFUSED)
def test_a_kind_that_cannot_resume_is_refused_and_nothing_is_logged_twice(
    dataset, name, mlflow_store, monkeypatch, tmp_path, capsys
):
    monkeypatch.chdir(tmp_path)
    client = MlflowClient()
    run_id = _interrupted_run(client, dataset, name)
    before = _state(client, run_id)
    launcher = client.create_run(client.get_run(run_id).info.experiment_id).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher)  # what `mlflow run` made for the resume
    argv = ["--name", name, "--profile", "smoke", "--resume_run_id", run_id]
    assert main(dataset, argv) == EXIT_BAD_INPUT
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"resume_run_id {run_id}: {name} cannot resume" in line
    assert f"resumable experiments of {dataset}: " in line
    assert _state(client, run_id) == before  # status, tags, params, curve, artifacts
    assert client.search_registered_models() == []
    experiment_id = client.get_run(run_id).info.experiment_id
    assert client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{run_id}'") == []
    launched = client.get_run(launcher)
    assert launched.info.status == "FAILED"
    assert launched.data.tags[RESUMED_INTO_TAG] == run_id
    assert "cannot resume" in launched.data.tags[ERROR_TAG]


def test_a_resumed_run_logs_no_metric_point_twice(mlflow_store):
    """roar_test's resume: a summary the first attempt logged before it was stopped, and a
    reopened retraining's curve, keep one point per step."""
    client = MlflowClient()
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    run_id = client.create_run(experiment_id).info.run_id
    Tracker(run_id).log_metric_rows([("summary", 1.0, 0), ("curve", 0.5, 0)])
    child_id = client.create_run(experiment_id, tags={"mlflow.parentRunId": run_id}).info.run_id
    Tracker(child_id).log_metric_rows([("fit/train_loss", 2.0, 0)])
    for stopped in (child_id, run_id):
        client.set_terminated(stopped, "KILLED")
    with tracked_run("resumed", run_id=run_id) as tracker:
        tracker.log_metric_rows([("summary", 1.0, 0), ("curve", 0.5, 0), ("curve", 0.4, 1)])
        tracker.log_metrics({"new": 3.0})
        with tracker.nested("reopened", run_id=child_id) as child:
            child.log_metric_rows([("fit/train_loss", 2.0, 0), ("fit/train_loss", 1.5, 1)])

    def steps(run: str, key: str) -> list[int]:
        return sorted(m.step for m in client.get_metric_history(run, key))

    assert steps(run_id, "summary") == [0] and steps(run_id, "new") == [0]
    assert steps(run_id, "curve") == [0, 1]
    assert steps(child_id, "fit/train_loss") == [0, 1]
