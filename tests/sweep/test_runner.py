"""A sweep with a fake trial: runs, nested runs, resume, retries, stops, threads, pruning."""

from __future__ import annotations

import signal
import time

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient

from lfxai.cli.sweep import main
from lfxai.sweep.objective import (
    PRUNED_TAG,
    RETRIED_AS_TAG,
    RETRY_OF_TAG,
    RUN_ATTR,
    STUDY_TAG,
    TRIAL_TAG,
)
from lfxai.sweep.settings import load_sweep_config
from lfxai.sweep.study import make_storage
from lfxai.tracking import STOPPED_TAG, Stopped
from lfxai.tracking.compat import storage_trial_id
from tests.helpers import EXPERIMENT
from tests.sweep.fakes import FakeTrain, fake_backend

# Whole sweeps (Optuna study, MLflow store, report figures) of a fake trial: seconds each, so
# they run with `make test`, not in the fast subset.
pytestmark = pytest.mark.slow

STUDY = "test-study"


def sweep(storage: str, n_trials: int, *extra: str, train: FakeTrain | None = None) -> int:
    argv = ["--dataset", "mnist", "--n_trials", str(n_trials), "--profile", "smoke"]
    argv += ["--storage", storage, "--study_name", STUDY, *extra]
    return main(argv, backend=fake_backend(train))


def load(storage: str) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=storage)


def runs(client: MlflowClient) -> tuple[list, list]:
    """(parent runs, nested runs) of the test experiment."""
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    every = client.search_runs([experiment], max_results=1000)
    nested = [r for r in every if "mlflow.parentRunId" in r.data.tags]
    parents = [r for r in every if "mlflow.parentRunId" not in r.data.tags]
    return parents, nested


def artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


def test_three_trials_three_nested_runs_under_one_parent_with_a_report(sweep_env):
    assert sweep(sweep_env, 3) == 0
    study = load(sweep_env)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    client = MlflowClient()
    (parent,), nested = runs(client)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["lfxai.experiment"] == "sweep"
    assert parent.data.tags[STUDY_TAG] == STUDY
    assert parent.data.params["config.n_trials"] == "3"
    assert parent.data.params["config.storage"] == sweep_env
    assert parent.data.params["trial.n_epochs"] == "2"  # the smoke disvae profile
    assert len(nested) == 3
    assert {r.data.tags["mlflow.parentRunId"] for r in nested} == {parent.info.run_id}
    assert sorted(r.data.tags[TRIAL_TAG] for r in nested) == ["0", "1", "2"]
    assert all(r.data.tags[STUDY_TAG] == STUDY for r in nested)
    assert all(r.info.status == "FINISHED" for r in nested)
    by_run = {t.user_attrs[RUN_ATTR]: t for t in study.trials}
    for run in nested:
        trial = by_run[run.info.run_id]
        assert run.data.params["beta"] == str(trial.params["beta"])
        history = client.get_metric_history(run.info.run_id, "epoch/test_loss")
        assert [m.step for m in history] == [0, 1]  # per epoch
        assert run.data.metrics["pearson"] == pytest.approx(trial.values[0])
    logged = artifacts(client, parent.info.run_id)
    assert {"trials.csv", "best_trials.csv", "pareto.png", "claims.md", "claims.json"} <= logged
    optuna_plots = artifacts(client, parent.info.run_id, "optuna")
    assert {"optuna/pareto_front.png", "optuna/history_pearson.png"} <= optuna_plots
    best = parent.data.tags["lfxai.best_run_ids"].split(",")
    assert best and set(best) <= set(by_run)
    assert parent.data.metrics["trials/complete"] == 3
    # the continue command names this store, so that a continuation logs beside these runs
    continued = f"MLFLOW_TRACKING_URI={mlflow.get_tracking_uri()} mlflow run . -e sweep "
    assert continued in parent.data.tags["mlflow.note.content"]
    # fake: Pearson rises with beta, so the claim is not refuted (3 trials: not significant)
    assert "claims/holds/correlation_not_falling/all/pearson" in parent.data.metrics


def test_a_second_invocation_continues_the_study(sweep_env):
    assert sweep(sweep_env, 3) == 0
    assert sweep(sweep_env, 3) == 0
    study = load(sweep_env)
    assert [t.number for t in study.trials] == list(range(6))
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    parents, nested = runs(MlflowClient())
    assert len(parents) == 2 and len(nested) == 6
    assert sorted(int(r.data.tags[TRIAL_TAG]) for r in nested) == list(range(6))
    # the second parent reports the whole study
    second = max(parents, key=lambda r: r.info.start_time)
    assert second.data.metrics["trials/complete"] == 6
    assert second.data.metrics["trials/this_invocation"] == 3


def test_a_study_of_other_settings_is_not_continued(sweep_env, capsys):
    assert sweep(sweep_env, 1) == 0
    assert sweep(sweep_env, 1, "--beta_range", "1,2") == 2
    assert (
        "beta_range: the study has [0.5, 20.0], this command [1.0, 2.0]" in capsys.readouterr().err
    )
    assert sweep(sweep_env, 1, "--objective", "correlation") == 2
    assert sweep(sweep_env, 1, "--n_epochs", "3") == 2  # trials trained otherwise
    assert "trial setting n_epochs: the study has '2', this command '3'" in capsys.readouterr().err


def test_a_trial_left_running_by_a_dead_worker_is_retried_once(sweep_env):
    config = load_sweep_config(
        "mnist", "smoke", {"n_trials": "1", "study_name": STUDY, "storage": sweep_env}
    )
    storage = make_storage(sweep_env, config)
    study = optuna.create_study(study_name=STUDY, storage=storage, directions=config.directions)
    # a worker that died mid-trial: its trial RUNNING with an old heartbeat, its run RUNNING
    with pytest.warns(UserWarning, match="Heartbeat"):  # Optuna: ask is not optimize
        lost = study.ask()
    params = {
        "loss": lost.suggest_categorical("loss", list(config.losses)),
        "beta": lost.suggest_float("beta", *config.beta_range, log=True),
        "dim_latent": lost.suggest_int("dim_latent", *config.latent_range),
    }
    storage.record_heartbeat(storage_trial_id(study.trials[lost.number]))
    client = MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    dead_run = client.create_run(
        experiment, tags={STUDY_TAG: STUDY, TRIAL_TAG: "0", "mlflow.parentRunId": "gone"}
    ).info.run_id
    time.sleep(config.grace_period + 1)
    assert sweep(sweep_env, 2) == 0
    trials = load(sweep_env).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[1].params == params  # the retry, first
    assert trials[1].system_attrs["failed_trial"] == 0
    assert trials[2].params != params  # then a new trial: n_trials counts the retry
    dead = client.get_run(dead_run)
    assert dead.info.status == "KILLED"
    assert dead.data.tags[RETRIED_AS_TAG] == "1"
    assert "no heartbeat" in dead.data.tags[STOPPED_TAG]
    retry = client.get_run(trials[1].user_attrs[RUN_ATTR])
    assert retry.data.tags[RETRY_OF_TAG] == "0"


def test_a_stop_signal_kills_the_trial_s_run_and_queues_it_for_the_next_invocation(sweep_env):
    train = FakeTrain()
    train.raise_at = (1, Stopped(signal.SIGTERM))
    assert sweep(sweep_env, 3, train=train) == 128 + signal.SIGTERM
    trials = load(sweep_env).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "WAITING"]
    assert trials[2].params == trials[1].params
    client = MlflowClient()
    (parent,), nested = runs(client)
    assert parent.info.status == "KILLED"
    stopped = client.get_run(trials[1].user_attrs[RUN_ATTR])
    assert stopped.info.status == "KILLED"
    assert sweep(sweep_env, 1) == 0  # the resume runs the queued trial first
    trials = load(sweep_env).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].params == trials[1].params


def test_worker_processes_run_every_trial_once(sweep_env):
    train = FakeTrain()
    train.raise_at = (1, Stopped(signal.SIGTERM))  # leaves a queued retry
    assert sweep(sweep_env, 2, train=train) == 128 + signal.SIGTERM
    train = FakeTrain()
    assert sweep(sweep_env, 4, "--n_jobs", "2", train=train) == 0  # two workers at once
    trials = load(sweep_env).trials[2:]
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    assert len(train.calls) == 2  # this process's share; the worker process ran the others
    assert trials[0].system_attrs["failed_trial"] == 1  # the retry, once
    # each worker samples with its own sampler: no two trials drawn alike
    assert len({round(t.params["beta"], 3) for t in trials}) == 4
    _, nested = runs(MlflowClient())
    assert sorted(int(r.data.tags[TRIAL_TAG]) for r in nested) == [0, 1, 2, 3, 4, 5]
    assert len({r.data.tags["mlflow.parentRunId"] for r in nested[:4]}) == 1


def test_a_stop_signal_stops_every_worker_process(sweep_env, tmp_path):
    train = FakeTrain()
    train.ctrl_c_when_all_train, train.n_workers = tmp_path / "training", 2
    train.ctrl_c_when_all_train.mkdir()
    code = sweep(sweep_env, 6, "--n_jobs", "2", "--n_epochs", "20", train=train)
    assert code == 128 + signal.SIGINT
    trials = load(sweep_env).trials
    assert len(trials) < 6 + 2  # no new trial started after the signal
    states = [t.state.name for t in trials]
    assert "RUNNING" not in states and states.count("WAITING") == 2  # both trials queued
    client = MlflowClient()
    for trial in trials:
        if trial.state.name == "FAIL":  # stopped: its run KILLED, a retry queued
            assert client.get_run(trial.user_attrs[RUN_ATTR]).info.status == "KILLED"
    (parent,), _ = runs(client)
    assert parent.info.status == "KILLED"


def test_correlation_objective_prunes_on_epoch_reports(sweep_env):
    extra = ["--objective", "correlation", "--n_startup_trials", "1", "--n_epochs", "3"]
    extra += ["--sampler", "random"]
    assert sweep(sweep_env, 8, *extra) == 0
    trials = load(sweep_env).trials
    states = [t.state.name for t in trials]
    assert set(states) <= {"COMPLETE", "PRUNED"} and "PRUNED" in states
    client = MlflowClient()
    for trial in trials:
        run = client.get_run(trial.user_attrs[RUN_ATTR])
        assert len(trial.intermediate_values) >= 1
        if trial.state.name == "PRUNED":
            assert run.info.status == "KILLED"
            assert run.data.tags[PRUNED_TAG].startswith("pruned at epoch")
        else:
            assert run.info.status == "FINISHED"


def test_an_invocation_whose_every_trial_fails_fails(sweep_env, capsys):
    train = FakeTrain()
    train.fail_all = True
    assert sweep(sweep_env, 2, train=train) == 1
    assert "every trial of this invocation failed" in capsys.readouterr().err
    client = MlflowClient()
    (parent,), nested = runs(client)
    assert parent.info.status == "FAILED"
    assert all(r.data.tags["lfxai.error"] == "ValueError: the fake trial fails" for r in nested)


def test_a_queued_trial_is_started_by_one_worker_only(sweep_env):
    """Two workers popping one WAITING trial: one gets it (SQLite ignores FOR UPDATE)."""
    config = load_sweep_config("mnist", "smoke", {"n_trials": "1"})
    storage = make_storage(sweep_env, config)
    study = optuna.create_study(study_name=STUDY, storage=storage)
    study.enqueue_trial({"x": 1.0})
    (queued,) = study.get_trials()
    trial_id = storage_trial_id(queued)
    first = storage.set_trial_state_values(trial_id, optuna.trial.TrialState.RUNNING)
    second = storage.set_trial_state_values(trial_id, optuna.trial.TrialState.RUNNING)
    assert (first, second) == (True, False)
    trial = storage.get_trial(trial_id)
    assert trial.state.name == "RUNNING" and trial.datetime_start is not None
    # every other change goes through Optuna's own code
    storage.set_trial_state_values(trial_id, optuna.trial.TrialState.COMPLETE, [1.0])
    assert storage.get_trial(trial_id).state.name == "COMPLETE"
