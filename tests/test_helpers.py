"""The test helpers themselves: private stores copied from a template, killed process groups."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

import lfxai.experiments  # noqa: F401  (fills the registry)
from lfxai.experiments.registry import entries
from lfxai.tracking import experiment_name
from tests.helpers import EXPERIMENT, kill_group, make_store, run_in_session


def test_copied_stores_keep_their_artifacts_private(tmp_path: Path) -> None:
    """Two stores from one template: each experiment's artifacts go under its own folder."""
    seen: list[str] = []
    for name in ("a", "b"):
        mine: list[str] = []
        folder = tmp_path / name
        folder.mkdir()
        uri = make_store(folder)
        assert make_store(folder) == uri  # idempotent: an existing store is kept
        client = MlflowClient(tracking_uri=uri)
        experiments = {e.name: e for e in client.search_experiments()}
        expected = {experiment_name(*entry) for entry in entries()} | {"Default", EXPERIMENT}
        assert set(experiments) == expected
        for experiment in experiments.values():
            where = (folder / "artifacts" / experiment.name).as_uri()
            assert experiment.artifact_location == where
        for experiment in experiments.values():
            run = client.create_run(experiment.experiment_id)
            client.log_text(run.info.run_id, name, "where.txt")
            client.set_terminated(run.info.run_id)
            local = client.download_artifacts(run.info.run_id, "where.txt", str(tmp_path))
            assert Path(local).read_text() == name
            mine.append(run.info.run_id)
        stored = {p.parent.parent.name for p in (folder / "artifacts").rglob("where.txt")}
        assert stored == set(mine)  # every run of this store, and only them, are here
        seen += mine
    assert len(set(seen)) == 2 * len(experiments)
    assert not any((Path.cwd() / "mlruns").rglob("where.txt"))


def test_mlflow_store_fixture_points_mlflow_at_the_private_store(
    mlflow_store: str, tmp_path: Path
) -> None:
    assert mlflow_store == f"sqlite:///{tmp_path}/mlflow.db"
    assert mlflow.get_tracking_uri() == mlflow_store
    with mlflow.start_run() as run:
        mlflow.log_text("x", "x.txt")
    assert mlflow.get_experiment(run.info.experiment_id).name == EXPERIMENT
    assert run.info.artifact_uri.startswith((tmp_path / "artifacts").as_uri())


def test_killing_the_group_kills_the_grandchild_too() -> None:
    """The grandchild (like the experiment under `mlflow run`) dies with its parent.

    It holds the output pipe: reading that pipe to its end at all proves it has exited (a
    surviving grandchild would keep it open for its 600 s and hang the test).
    """
    script = "sleep 600 & echo $!; wait"
    with subprocess.Popen(
        ["bash", "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    ) as process:
        grandchild = int(process.stdout.readline())  # it exists now
        kill_group(process)
        assert process.stdout.read() == ""  # end of file: no process holds the pipe
    assert process.returncode == -signal.SIGKILL
    assert grandchild != process.pid


def test_run_in_session_raises_on_timeout_with_the_output_so_far() -> None:
    with pytest.raises(subprocess.TimeoutExpired) as error:
        run_in_session(["bash", "-c", "echo started; sleep 600"], timeout=1)
    assert error.value.timeout == 1


def test_run_in_session_returns_output_and_status() -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    result = run_in_session([sys.executable, "-c", code], timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
