"""``-P resume_run_id`` through `mlflow run`, on runs interrupted after their results were
logged (the run ended FAILED by hand, as a SIGKILL at the end would leave it for a resume):
``consistency_features`` refuses and logs nothing twice; ``roar_test`` resumes to FINISHED
and logs no metric point, nested run or model version twice."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import make_store, mlflow_run, run_experiment

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.data]

TINY = {"profile": "smoke", "n_train": "40", "n_test": "20", "batch_size": "20"}


def _state(client: MlflowClient, run_id: str) -> dict:
    """What a resume could duplicate: metric points, nested runs, model versions, artifacts.

    Points are ``(step, value)`` per key; MLflow's ``system/*`` samples are left out (a
    resumed run goes on sampling its machine, at new steps: see :func:`_one_point_per_step`).
    """
    run = client.get_run(run_id)
    points = {
        k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k))
        for k in run.data.metrics
        if not k.startswith("system/")
    }
    nested = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'", max_results=1000
    )
    versions = {}
    for model in client.search_registered_models():
        for version in client.search_model_versions(f"name = '{model.name}'"):
            aliases = client.get_model_version(model.name, version.version).aliases
            versions[(model.name, version.version)] = sorted(aliases)
    artifacts = sorted(a.path for a in client.list_artifacts(run_id))
    return {
        "points": points,
        "nested": sorted(r.info.run_id for r in nested),
        "versions": versions,
        "artifacts": artifacts,
    }


def test_consistency_features_refuses_to_resume_and_duplicates_nothing(tmp_path, data_dir):
    store = make_store(tmp_path)
    params = {"name": "consistency_features", "data_dir": str(data_dir), **TINY}
    params |= {"feature_methods": "Saliency,Random", "perturbation_percentages": "50"}
    client, run = run_experiment("mnist", params, store)
    client.set_terminated(run.info.run_id, "FAILED")  # interrupted after its results
    before = _state(client, run.info.run_id)
    assert len(before["versions"]) == 1 and list(before["versions"].values()) == [
        ["consistency_features-smoke", "smoke"]
    ]
    result = mlflow_run("mnist", {**params, "resume_run_id": run.info.run_id}, store)
    assert result.returncode != 0
    assert f"resume_run_id {run.info.run_id}: consistency_features cannot resume" in result.stderr
    assert _state(client, run.info.run_id) == before  # no version, point or artifact added
    assert client.get_run(run.info.run_id).info.status == "FAILED"


def test_roar_test_resumes_without_logging_anything_twice(tmp_path, data_dir):
    store = make_store(tmp_path)
    params = {"name": "roar_test", "data_dir": str(data_dir), **TINY}
    params |= {"feature_methods": "Random", "remove_percentages": "50"}
    client, run = run_experiment("mnist", params, store)
    client.set_terminated(run.info.run_id, "FAILED")  # stopped after its summary was logged
    before = _state(client, run.info.run_id)
    assert before["nested"] and before["versions"]
    result = mlflow_run("mnist", {**params, "resume_run_id": run.info.run_id}, store)
    assert result.returncode == 0, result.stderr[-4000:]
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert _state(client, run.info.run_id) == before
    _one_point_per_step(client, run.info.run_id)


def _one_point_per_step(client: MlflowClient, run_id: str) -> None:
    for key in client.get_run(run_id).data.metrics:
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert len(steps) == len(set(steps)), (key, sorted(steps))
