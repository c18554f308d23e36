"""Scaling out: several workers log to one MLflow tracking server backed by PostgreSQL.

The test starts a private PostgreSQL cluster and an ``mlflow server`` (proxied artifacts) on
loopback ports (fixtures ``postgres`` and ``tracking_server`` of ``tests/e2e/conftest.py``),
runs two entry points concurrently against ``http://127.0.0.1:<port>`` (two "machines"), and
reads both runs and both registered model versions back from the server.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import REPO, kill_group, venv_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.data, pytest.mark.database]


def test_two_workers_share_one_tracking_server(tracking_server, data_dir):
    uri, artifacts = tracking_server
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
                    env=venv_env(uri),
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
