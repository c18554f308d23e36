"""Stops and first use, as a user meets them: processes get SIGTERM, three runs start at once
on a new SQLite store. Each process is killed in a ``finally``, whatever the test's outcome."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import EXPERIMENT, REPO, make_store, venv_env

pytestmark = [pytest.mark.slow, pytest.mark.data]

TINY = ["--n_train", "40", "--n_test", "20", "--batch_size", "20", "--register_model", "false"]
DEADLINE_S = 600  # bound on every wait: a loaded 2-core machine, imports and SQLite included

# The real runner, with a retraining that blocks until the process is stopped: the second
# retraining's nested run is then open when SIGTERM arrives (no race with a fast retraining).
BLOCKING_CHILD = """
import sys, time
from pathlib import Path
from lfxai.cli.experiment import main
from lfxai.experiments import roar_retraining

def check(self):
    if self.count >= 1:
        Path(sys.argv[1]).touch()
        while True:
            time.sleep(0.05)
    self.count += 1

roar_retraining.InterruptionHook.check = check
sys.exit(main("mnist", sys.argv[2:]))
"""


def _start(command: list[str], log: Path, **kwargs) -> subprocess.Popen:
    """Starts ``command`` with its output in ``log`` (a pipe nobody reads could fill up)."""
    with open(log, "wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **kwargs)


def _wait_for(condition, what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"exited {process.returncode} before {what}:\n{_tail(log)}")
        assert time.monotonic() < deadline, f"no {what} within {DEADLINE_S} s"
        time.sleep(0.2)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


def _runs(client: MlflowClient) -> list:
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_sigterm_ends_the_run_and_its_open_nested_run_killed(tmp_path, data_dir):
    store = make_store(tmp_path)
    marker = tmp_path / "blocked"
    argv = ["--name", "roar_test", "--profile", "smoke", "--data_dir", str(data_dir), *TINY]
    argv += ["--feature_methods", "Random", "--remove_percentages", "10,50"]
    # One at a time: the blocked retraining is then in the main thread, where the signal
    # lands (retrainings at once meet a stop at their next epoch, tested in-process).
    argv += ["--retraining_workers", "1"]
    env = {**venv_env(store), "MLFLOW_EXPERIMENT_NAME": EXPERIMENT}
    command = [sys.executable, "-c", BLOCKING_CHILD, str(marker), *argv]
    log = tmp_path / "output.log"
    process = _start(command, log, cwd=REPO, env=env)
    try:
        _wait_for(marker.exists, "second retraining", process, log)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=DEADLINE_S)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, _tail(log)
    assert "stopped by SIGTERM" in _tail(log)
    runs = _runs(MlflowClient(tracking_uri=store))
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.info.run_name: r for r in runs if r.info.run_id != parent.info.run_id}
    assert parent.info.status == "KILLED"
    assert parent.data.tags["lfxai.stopped"] == "SIGTERM received: the run was stopped"
    assert {name: r.info.status for name, r in children.items()} == {
        "Random-10": "FINISHED",
        "Random-50": "KILLED",
    }
    assert children["Random-50"].data.tags["lfxai.stopped"].startswith("SIGTERM")
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children.values())


def _children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.e2e
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_sigterm_to_mlflow_run_alone_stops_its_child_too(tmp_path, data_dir):
    store = make_store(tmp_path)
    client = MlflowClient(tracking_uri=store)
    params = {"name": "consistency_features", "profile": "smoke", "data_dir": str(data_dir)}
    params |= {"n_epochs": "100000", "patience": "100000", "n_train": "40", "n_test": "20"}
    command = [str(Path(sys.executable).parent / "mlflow"), "run", ".", "-e", "mnist"]
    command += ["--experiment-name", EXPERIMENT, "--env-manager", "local"]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    log = tmp_path / "output.log"
    launcher = _start(command, log, cwd=REPO, env=venv_env(store))
    children: list[int] = []

    def training() -> bool:
        runs = _runs(client)
        return bool(runs and client.get_metric_history(runs[0].info.run_id, "fit/train_loss"))

    try:
        _wait_for(training, "first epoch", launcher, log)
        children = _children_of(launcher.pid)
        assert len(children) == 1, children  # `bash -c` exec'd the entry point
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=DEADLINE_S)
        (run,) = _runs(client)
        deadline = time.monotonic() + DEADLINE_S
        while (run := client.get_run(run.info.run_id)).info.status == "RUNNING":
            assert time.monotonic() < deadline, "the child kept running after mlflow run died"
            time.sleep(0.2)
    finally:
        launcher.kill()
        for pid in children:  # still our entry point (a finished one's pid may be reused)?
            with contextlib.suppress(OSError):
                if b"entrypoints.mnist" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
    assert run.info.status == "KILLED", _tail(log)
    assert run.data.tags["lfxai.stopped"].startswith("SIGTERM")


def test_three_first_runs_at_once_on_a_new_sqlite_store(tmp_path, data_dir):
    uri = f"sqlite:///{tmp_path}/new.db"
    env = {**venv_env(uri), "PYTHONPATH": str(REPO)}  # the working directory is tmp_path
    argv = ["--name", "consistency_features", "--profile", "smoke", "--data_dir", str(data_dir)]
    argv += [*TINY, "--feature_methods", "Saliency", "--perturbation_percentages", "50"]
    command = [sys.executable, "-m", "entrypoints.mnist", *argv]
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    workers = [_start(command, log, cwd=tmp_path, env=env) for log in logs]
    try:
        for worker in workers:
            worker.wait(timeout=DEADLINE_S)
    finally:
        for worker in workers:
            worker.kill()
    for worker, log in zip(workers, logs, strict=True):
        assert worker.returncode == 0, _tail(log)
    runs = _runs(MlflowClient(tracking_uri=uri))  # the store opens, with the three runs
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3
