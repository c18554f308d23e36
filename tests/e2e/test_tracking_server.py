"""Scaling out: several workers log to one MLflow tracking server backed by PostgreSQL.

The test starts a private PostgreSQL cluster and an ``mlflow server`` with MLflow's
basic-auth app and proxied artifacts on loopback ports (fixtures ``postgres`` and
``tracking_server`` of ``tests/e2e/conftest.py``), runs two entry points concurrently against
``http://127.0.0.1:<port>`` (two "machines", signed in through ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD``), and reads both runs and both registered model versions back
from the server; a client without credentials, or with a wrong password, is refused.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tests.helpers import REPO, kill_group, venv_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.data, pytest.mark.database]


def _status(uri: str, authorization: str | None = None) -> int:
    """The HTTP status of a REST call (list experiments), sent with ``authorization``."""
    request = urllib.request.Request(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1")
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_client_without_valid_credentials_is_refused(tracking_server, monkeypatch):
    uri, _, credentials = tracking_server
    user, password = (
        credentials["MLFLOW_TRACKING_USERNAME"],
        credentials["MLFLOW_TRACKING_PASSWORD"],
    )
    assert _status(uri) == 401
    assert _status(uri, _basic(user, password + "x")) == 401
    assert _status(uri, _basic(user, password)) == 200
    for key in credentials:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(MlflowException, match="401"):  # MLflow's own client, anonymous
        MlflowClient(tracking_uri=uri).search_experiments()


def test_two_workers_share_one_tracking_server(tracking_server, data_dir, monkeypatch):
    uri, artifacts, credentials = tracking_server
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    workers = []
    try:
        for seed in (1, 2):
            workers.append(
                subprocess.Popen(
                    [
                        mlflow_bin,
                        "run",
                        ".",
                        "-e",
                        "mnist",
                        "-P",
                        "name=consistency_features",
                        "-P",
                        "profile=smoke",
                        "-P",
                        f"seed={seed}",
                        "-P",
                        f"data_dir={data_dir}",
                        "-P",
                        "feature_methods=Saliency,Random",
                        "--env-manager",
                        "local",
                    ],
                    cwd=REPO,
                    env={**venv_env(uri), **credentials},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,  # `mlflow run` and its entry point: one group
                )
            )
        outputs = [worker.communicate(timeout=900)[0] for worker in workers]
    finally:
        for worker in workers:  # on a timeout or an error: no experiment left running
            if worker.returncode is None:
                kill_group(worker)
                worker.communicate()
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output[-4000:]

    for key, value in credentials.items():
        monkeypatch.setenv(key, value)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("mnist-consistency_features")
    runs = client.search_runs(
        [experiment.experiment_id], "tags.`lfxai.experiment` = 'consistency_features'"
    )
    assert sorted(r.data.params["config.seed"] for r in runs) == ["1", "2"]
    assert all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        curve = client.get_metric_history(run.info.run_id, "representation_shift/Saliency")
        assert len(curve) == 6
        # artifacts went through the server into its artifact destination
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        assert any(artifacts.rglob(f"{run.info.run_id}/artifacts/attributions/Saliency.npy"))
    versions = client.search_model_versions("name = 'lfxai-mnist-denoising-ae-d4'")
    assert sorted(v.version for v in versions) == ["1", "2"]
    # both workers moved the profile's alias at about the same time: it ends on the newest
    newest = client.get_model_version_by_alias("lfxai-mnist-denoising-ae-d4", "smoke")
    assert str(newest.version) == "2"
