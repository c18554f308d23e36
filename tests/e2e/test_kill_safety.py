"""No run stays RUNNING after a SIGKILL: `mlflow run` and its entry point are killed as one
process group, then the next invocation ends what they left RUNNING (KILLED, tagged why).

The sweep is killed at three exact points of a trial (``LFXAI_TEST_HOLD`` makes the trial
touch a marker file and wait there): before its run exists, right after its run is created
(not yet linked to the Optuna trial), and while it trains. Each next invocation retries the
trial; in the end no run is RUNNING and no trial ran twice. A plain experiment run killed
mid-training, with its ``Default`` pointer, is ended by the next run of that experiment.
Waits are for store states (a marker file, a metric, a heartbeat older than the run's own
bound), never for a guessed time.
"""

from __future__ import annotations

import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from lfxai.sweep.objective import HOLD_ENV, HOLD_POINTS, RETRIED_AS_TAG, RUN_ATTR, TRIAL_TAG
from lfxai.tracking import STOPPED_TAG, seconds_since_alive, stale_after
from lfxai.tracking.compat import stale_trial_ids
from tests.helpers import REPO, kill_group, make_store, venv_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.data]

DEADLINE_S = 600  # bound on every wait (a loaded 2-core machine)
STUDY = "killed"


def _command(entry_point: str, params: dict[str, str]) -> list[str]:
    line = [str(Path(sys.executable).parent / "mlflow"), "run", ".", "-e", entry_point]
    for key, value in params.items():
        line += ["-P", f"{key}={value}"]
    return [*line, "--env-manager", "local"]


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as output:
        return subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # `mlflow run` and its entry point: one group
        )


def _wait_for(condition, what: str, process: subprocess.Popen | None, log: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"exited {process.returncode} before {what}:\n{log.read_text()[-4000:]}")
        assert time.monotonic() < deadline, f"no {what} within {DEADLINE_S} s"
        time.sleep(0.2)


def _all_runs(client: MlflowClient) -> list:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, max_results=1000)


def _dead(client: MlflowClient, run_id: str) -> bool:
    """Whether the killed run's heartbeat is older than the bound it declared (plus one
    second: the heartbeat tag is stored to the second)."""
    run = client.get_run(run_id)
    return seconds_since_alive(run) > stale_after(run) + 1


def _killed_parent(client: MlflowClient) -> str:
    experiment = client.get_experiment_by_name("mnist-sweep").experiment_id
    (run,) = client.search_runs(
        [experiment], "attributes.status = 'RUNNING' and tags.`mlflow.parentRunId` IS NULL"
    )
    return run.info.run_id


def test_a_sweep_killed_before_during_and_after_a_trial_s_run_creation(tmp_path, data_dir):
    store = make_store(tmp_path)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    client = MlflowClient(tracking_uri=store)
    params = {"dataset": "mnist", "profile": "smoke", "n_epochs": "1", "n_trials": "1"}
    params |= {"study_name": STUDY, "storage": storage, "data_dir": str(data_dir)}
    params["max_retry"] = "3"  # each kill's trial is retried by the next invocation
    # Optuna's own view of stale trials (compat: it has no public one), with the smoke profile's
    # heartbeat settings.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna_view = optuna.storages.RDBStorage(storage, heartbeat_interval=1, grace_period=3)
    outputs = []
    for index, point in enumerate(HOLD_POINTS):
        marker, log = tmp_path / f"{point}.held", tmp_path / f"{index}-{point}.log"
        env = {**venv_env(store), HOLD_ENV: f"{point}:{marker}"}
        worker = _start(_command("sweep", params), env, log)
        try:
            _wait_for(marker.exists, f"the trial held at {point!r}", worker, log)
        finally:
            kill_group(worker)  # SIGKILL: no handler runs
            worker.wait()
        outputs.append(log.read_text())
        parent = _killed_parent(client)
        _wait_for(
            lambda p=parent: _dead(client, p) and stale_trial_ids(optuna_view, STUDY),
            "a stale heartbeat",
            None,
            log,
        )
    log = tmp_path / "final.log"
    final = _start(_command("sweep", params), venv_env(store), log)
    try:
        assert final.wait(timeout=DEADLINE_S) == 0, log.read_text()[-4000:]
    finally:
        kill_group(final)
    outputs.append(log.read_text())

    runs = _all_runs(client)
    assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == []
    trials = optuna.load_study(study_name=STUDY, storage=storage).trials
    assert [t.state.name for t in trials] == ["FAIL", "FAIL", "FAIL", "COMPLETE"]
    assert all(t.params == trials[0].params for t in trials)  # one trial, retried
    assert [t.system_attrs.get("retry_history") for t in trials] == [None, [0], [0, 1], [0, 1, 2]]
    # one run per trial at most: trial 0 was killed before its run existed
    by_trial: dict[str, list] = {}
    for run in runs:
        if TRIAL_TAG in run.data.tags:
            by_trial.setdefault(run.data.tags[TRIAL_TAG], []).append(run)
    assert sorted(by_trial) == ["1", "2", "3"] and all(len(v) == 1 for v in by_trial.values())
    for number in ("1", "2"):  # killed after their run was created: ended, then retried
        (run,) = by_trial[number]
        assert run.info.status == "KILLED"
        assert "its process died" in run.data.tags[STOPPED_TAG]
        assert run.data.tags[RETRIED_AS_TAG] == str(int(number) + 1)
    assert by_trial["3"][0].info.status == "FINISHED"
    assert by_trial["3"][0].info.run_id == trials[3].user_attrs[RUN_ATTR]
    # every invocation's parent and `mlflow run` pointer: three ended KILLED, the last FINISHED
    sweep_id = client.get_experiment_by_name("mnist-sweep").experiment_id
    parents = [
        r
        for r in runs
        if r.info.experiment_id == sweep_id and "mlflow.parentRunId" not in r.data.tags
    ]
    pointers = [r for r in runs if r.info.experiment_id == "0"]
    for group in (parents, pointers):
        assert sorted(r.info.status for r in group) == ["FINISHED", "KILLED", "KILLED", "KILLED"]
        for run in group:
            if run.info.status == "KILLED":
                assert "its process died" in run.data.tags[STOPPED_TAG]
    # each next invocation said what it ended
    killed = sorted(parents, key=lambda r: r.info.start_time)[:-1]
    for run, output in zip(killed, outputs[1:], strict=True):
        assert f"[lfxai] ended KILLED: run {run.info.run_id}" in output


def test_a_killed_experiment_run_and_its_pointer_are_ended_by_the_next_run(tmp_path, data_dir):
    store = make_store(tmp_path)
    client = MlflowClient(tracking_uri=store)
    env = {**venv_env(store), "LFXAI_HEARTBEAT_S": "1"}  # dead after 10 s, not 300 s
    params = {"name": "consistency_features", "profile": "smoke", "data_dir": str(data_dir)}
    params |= {"n_train": "40", "n_test": "20", "batch_size": "20", "register_model": "false"}
    params |= {"feature_methods": "Saliency", "perturbation_percentages": "50"}
    log = tmp_path / "killed.log"
    worker = _start(
        _command("mnist", {**params, "n_epochs": "100000", "patience": "100000"}), env, log
    )
    experiment = None

    def training() -> bool:
        nonlocal experiment
        experiment = client.get_experiment_by_name("mnist-consistency_features")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        return bool(runs and client.get_metric_history(runs[0].info.run_id, "fit/train_loss"))

    try:
        _wait_for(training, "a first epoch", worker, log)
    finally:
        kill_group(worker)
        worker.wait()
    (killed,) = client.search_runs([experiment.experiment_id])
    (pointer,) = client.search_runs(["0"])
    assert {killed.info.status, pointer.info.status} == {"RUNNING"}  # what SIGKILL leaves
    _wait_for(lambda: _dead(client, killed.info.run_id), "a stale heartbeat", None, log)

    log = tmp_path / "next.log"
    later = _start(_command("mnist", {**params, "n_epochs": "1"}), env, log)
    try:
        assert later.wait(timeout=DEADLINE_S) == 0, log.read_text()[-4000:]
    finally:
        kill_group(later)
    output = log.read_text()
    for run in (killed, pointer):
        assert f"[lfxai] ended KILLED: run {run.info.run_id}" in output
        ended = client.get_run(run.info.run_id)
        assert ended.info.status == "KILLED"
        assert f"no sign of life from run {killed.info.run_id}" in ended.data.tags[STOPPED_TAG]
    assert [r.info.run_id for r in _all_runs(client) if r.info.status == "RUNNING"] == []
