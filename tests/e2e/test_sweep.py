"""The ``sweep`` entry point end to end: `mlflow run` of the smoke profile on real MNIST.

A 3-trial sweep gives 3 complete trials and 3 nested runs under one parent; a second
invocation continues the study (6 trials, no duplicates); a worker SIGKILLed mid-trial has
its trial retried by the next invocation; two workers share one study on PostgreSQL and one
`mlflow server` (fixtures of ``tests/e2e/conftest.py``) and every trial completes once.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from lfxai.sweep.objective import RETRIED_AS_TAG, RETRY_OF_TAG, RUN_ATTR, STUDY_TAG, TRIAL_TAG
from tests.helpers import REPO, kill_group, make_store, mlflow_run, venv_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.data]

# The smoke profile with one epoch on a few images: seconds per trial.
SMOKE = {"dataset": "mnist", "profile": "smoke", "n_epochs": "1"}
GRACE_S = 3  # the smoke profile's grace_period: a killed worker's trial is stale after it


def sweep_params(data_dir: Path, storage: str, study: str, n_trials: int) -> dict[str, str]:
    return {
        **SMOKE,
        "n_trials": str(n_trials),
        "study_name": study,
        "storage": storage,
        "data_dir": str(data_dir),
    }


def command(params: dict[str, str]) -> list[str]:
    """`mlflow run . -e sweep -P ...` as a user types it."""
    line = [str(Path(sys.executable).parent / "mlflow"), "run", ".", "-e", "sweep"]
    for key, value in params.items():
        line += ["-P", f"{key}={value}"]
    return [*line, "--env-manager", "local"]


def sweep_runs(client: MlflowClient, study: str) -> tuple[list, list]:
    """(parent runs, nested trial runs) of a study in the experiment ``mnist-sweep``."""
    experiment = client.get_experiment_by_name("mnist-sweep")
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.`{STUDY_TAG}` = '{study}'", max_results=1000
    )
    nested = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parents, nested


def test_a_sweep_runs_its_trials_in_nested_runs_and_a_second_invocation_resumes(tmp_path, data_dir):
    store = make_store(tmp_path)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    params = sweep_params(data_dir, storage, "e2e", 3)
    result = mlflow_run("sweep", params, store)
    assert result.returncode == 0, result.stderr[-4000:]
    study = optuna.load_study(study_name="e2e", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    client = MlflowClient(tracking_uri=store)
    (parent,), nested = sweep_runs(client, "e2e")
    assert parent.info.status == "FINISHED" and len(nested) == 3
    assert {r.data.tags["mlflow.parentRunId"] for r in nested} == {parent.info.run_id}
    assert {r.info.run_id for r in nested} == {t.user_attrs[RUN_ATTR] for t in study.trials}
    for run in nested:
        assert run.info.status == "FINISHED"
        assert {"pearson", "test_reconstruction"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "best_trials.csv", "pareto.png", "claims.md"} <= artifacts
    best = set(parent.data.tags["lfxai.best_run_ids"].split(","))
    # One encoder version per trial and no alias (one per drawn beta would bury the
    # registry): the best trials' versions are tagged instead.
    models = client.search_registered_models()
    versions = [v for m in models for v in client.search_model_versions(f"name = '{m.name}'")]
    assert sorted(v.run_id for v in versions) == sorted(r.info.run_id for r in nested)
    assert all(not m.aliases for m in models)
    pareto = {v.run_id for v in versions if v.tags.get("lfxai.pareto_optimal") == "true"}
    assert pareto == best

    result = mlflow_run("sweep", params, store)  # the same command again: resumes
    assert result.returncode == 0, result.stderr[-4000:]
    study = optuna.load_study(study_name="e2e", storage=storage)
    assert [t.number for t in study.trials] == list(range(6))
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    parents, nested = sweep_runs(client, "e2e")
    assert len(parents) == 2 and len(nested) == 6
    assert sorted(int(r.data.tags[TRIAL_TAG]) for r in nested) == list(range(6))


def _running_trial(storage: str, study: str, deadline_s: float) -> optuna.trial.FrozenTrial:
    """The first RUNNING trial whose nested run is open, polled until ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            trials = optuna.load_study(study_name=study, storage=storage).trials
        except KeyError:  # the study does not exist yet
            trials = []
        for trial in trials:
            if trial.state.name == "RUNNING" and RUN_ATTR in trial.user_attrs:
                return trial
        time.sleep(0.2)
    pytest.fail(f"no trial of {study} was running within {deadline_s} s")


def test_a_worker_killed_mid_trial_has_its_trial_retried_by_the_next_invocation(tmp_path, data_dir):
    store = make_store(tmp_path)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    params = sweep_params(data_dir, storage, "killed", 1)
    log = tmp_path / "worker.log"
    with open(log, "w") as output:
        worker = subprocess.Popen(
            command(params),
            cwd=REPO,
            env=venv_env(store),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # `mlflow run` and the sweep: one group, killed together
        )
    try:
        lost = _running_trial(storage, "killed", deadline_s=300)
        kill_group(worker)  # SIGKILL: no handler runs, the trial stays RUNNING
    finally:
        kill_group(worker)
        worker.wait()
    time.sleep(GRACE_S + 1)  # its heartbeat goes stale
    result = mlflow_run("sweep", params, store)
    assert result.returncode == 0, result.stderr[-4000:]
    trials = optuna.load_study(study_name="killed", storage=storage).trials
    assert trials[lost.number].state.name == "FAIL"
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == lost.number]
    assert retry.state.name == "COMPLETE" and retry.params == lost.params
    assert sum(t.state.name == "COMPLETE" for t in trials) == len(trials) - 1
    client = MlflowClient(tracking_uri=store)
    dead = client.get_run(lost.user_attrs[RUN_ATTR])
    assert dead.info.status == "KILLED"
    assert dead.data.tags[RETRIED_AS_TAG] == str(retry.number)
    again = client.get_run(retry.user_attrs[RUN_ATTR])
    assert again.info.status == "FINISHED" and again.data.tags[RETRY_OF_TAG] == str(lost.number)


@pytest.mark.database
def test_two_workers_share_one_study_on_postgresql_and_a_tracking_server(
    tracking_server, new_database, data_dir, tmp_path, monkeypatch
):
    uri, _, credentials = tracking_server
    storage = new_database("optuna")
    params = sweep_params(data_dir, storage, "shared", 2)
    workers, logs = [], []
    try:
        for index in range(2):
            logs.append(tmp_path / f"worker-{index}.log")
            with open(logs[-1], "w") as output:
                workers.append(
                    subprocess.Popen(
                        command(params),
                        cwd=REPO,
                        env={**venv_env(uri), **credentials},
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        for worker in workers:
            worker.wait(timeout=900)
    finally:
        for worker in workers:
            if worker.returncode is None:
                kill_group(worker)
                worker.wait()
    for worker, log in zip(workers, logs, strict=True):
        assert worker.returncode == 0, log.read_text()[-4000:]
    trials = optuna.load_study(study_name="shared", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    for key, value in credentials.items():
        monkeypatch.setenv(key, value)
    client = MlflowClient(tracking_uri=uri)
    parents, nested = sweep_runs(client, "shared")
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
    assert sorted(int(r.data.tags[TRIAL_TAG]) for r in nested) == [0, 1, 2, 3]
    assert {r.info.run_id for r in nested} == {t.user_attrs[RUN_ATTR] for t in trials}
    # both workers ran trials of the study, each under its own parent run
    by_parent = {p.info.run_id: 0 for p in parents}
    for run in nested:
        by_parent[run.data.tags["mlflow.parentRunId"]] += 1
    assert sorted(by_parent.values()) == [2, 2]
