"""`mlflow run . -e mnist -P name=roar_test` end to end (smoke profile), read back from the store.

Covers the ROAR curves and table, the nested retraining runs, the registered base model and
resuming a run interrupted after two retrainings (``LFXAI_FAIL_AFTER_RETRAININGS``).
"""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import make_store, mlflow_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

METHODS = ["GradientShap", "IntegratedGradients", "Random"]  # the default methods
PERCENTAGES = [50, 100]  # the smoke profile's
BASE_MODEL = "lfxai-mnist-reconstruction-ae-d4"  # lfxai-<dataset>-<pretext>-ae-d<dim>


def _mlflow_run(store: str, params: dict[str, str], env: dict[str, str] | None = None):
    return mlflow_run("mnist", {"name": "roar_test", "profile": "smoke", **params}, store, env)


def _parent(client: MlflowClient):
    """The one roar_test run that is not nested (the run `mlflow run` made and we used)."""
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="tags.`lfxai.experiment` = 'roar_test'",
    )
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parent


def _children(client: MlflowClient, parent) -> list:
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )


def _key(run) -> tuple[str, str]:
    return run.data.params["method"], run.data.params["k"]


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_dir) -> tuple[MlflowClient, object]:
    """One uninterrupted smoke run, retrained models logged (off by default in smoke)."""
    store = make_store(tmp_path_factory.mktemp("roar"))
    done = _mlflow_run(store, {"data_dir": str(data_dir), "log_retrained_models": "true"})
    assert done.returncode == 0, done.stderr[-4000:]
    client = MlflowClient(tracking_uri=store)
    return client, _parent(client)


def test_parent_logs_curves_table_figures_and_phase_times(smoke_run) -> None:
    client, parent = smoke_run
    assert parent.info.status == "FINISHED"
    base_loss = parent.data.metrics["roar/base_test_loss"]
    table = pd.read_csv(client.download_artifacts(parent.info.run_id, "roar_test.csv"))
    assert len(table) == len(METHODS) * (1 + len(PERCENTAGES))
    for method in METHODS:
        history = client.get_metric_history(parent.info.run_id, f"roar/test_loss/{method}")
        curve = {m.step: m.value for m in history}
        assert len(history) == len(curve)  # one point per step
        assert sorted(curve) == [0, *PERCENTAGES]
        assert curve[0] == pytest.approx(base_loss)
        rows = table[table.method == method].set_index("pct_removed")["test_loss"]
        for pct in PERCENTAGES:
            assert curve[pct] == pytest.approx(rows[pct])
        assert f"time/attribution_seconds/{method}" in parent.data.metrics
        assert f"time/retraining_seconds/{method}" in parent.data.metrics
    assert {
        "time/fit_seconds",
        "time/setup_seconds",
        "time/retraining_wall_seconds",
        "time/total_seconds",
    } <= set(parent.data.metrics)
    assert len(client.get_metric_history(parent.info.run_id, "fit/train_loss")) == 1  # as others
    claims = [k for k in parent.data.metrics if k.startswith("claims/holds/")]
    assert sorted(claims) == [f"claims/holds/loss_above_random/{m}" for m in METHODS[:2]]
    assert {"claims.json", "claims.md"} <= _artifacts(client, parent.info.run_id)
    assert parent.info.run_name == "#1 smoke log_retrained_models=True · roar_test"
    names = _artifacts(client, parent.info.run_id)
    for figure in ("roar_test", "importance_examples"):
        assert {f"{figure}.png", f"{figure}.pdf"} <= names
    assert _artifacts(client, parent.info.run_id, "attributions") == {
        f"attributions/{m}.npy" for m in METHODS
    }
    assert _artifacts(client, parent.info.run_id, "weights") == {
        "weights/initial.pt",
        "weights/base.pt",
    }
    assert parent.data.params["config.n_epochs"] == "1"


def test_each_retraining_is_a_finished_nested_run_with_its_model(smoke_run) -> None:
    client, parent = smoke_run
    children = _children(client, parent)
    assert sorted(_key(r) for r in children) == sorted(
        (m, str(k)) for m in METHODS for k in PERCENTAGES
    )
    by_id = {r.info.run_id: r for r in children}
    reused = {}
    for child in children:
        assert child.info.status == "FINISHED"
        assert "roar/test_loss" in child.data.metrics
        fitted = client.get_metric_history(child.info.run_id, "fit/train_loss")
        source = child.data.tags.get("lfxai.roar_test.same_training_data_as")
        if source is None:
            assert len(fitted) == 1  # epochs
        else:  # bit-identical masked images: the earlier retraining's model and loss
            assert not fitted and source in by_id and not _reused(by_id[source])
            assert (
                child.data.metrics["roar/test_loss"] == by_id[source].data.metrics["roar/test_loss"]
            )
            reused[_key(child)] = _key(by_id[source])
        (output,) = child.outputs.model_outputs  # the encoder, logged but not registered
        assert client.get_logged_model(output.model_id).name == "encoder"
        pixels = round(int(_key(child)[1]) / 100 * 784)
        assert child.data.params["n_pixels_removed"] == str(pixels)
        tags = child.data.tags
        assert tags["lfxai.profile"] == "smoke" and tags["mlflow.source.type"] == "PROJECT"
        inputs = {[t.value for t in d.tags][0]: d.dataset for d in child.inputs.dataset_inputs}
        method, k = _key(child)
        assert inputs["train"].name == f"mnist-standard-train-without-top{k}-{method}"
        assert inputs["test"].name == "mnist-standard-test"
    # k = 100 % removes every pixel whatever the method: only Random trains (its retrainings
    # come first, beside the base model); the others reuse its model.
    first = ("Random", "100")
    others = [m for m in METHODS if m != "Random"]
    assert {(m, "100"): first for m in others}.items() <= reused.items()


def _reused(run) -> bool:
    return "lfxai.roar_test.same_training_data_as" in run.data.tags


def test_at_100_percent_removal_every_method_retrains_on_the_same_images(smoke_run) -> None:
    """Removing every pixel leaves all-black images whatever the ranking: one retraining
    from the same weights on the same data serves every method, so the test losses are
    equal to the last bit."""
    client, parent = smoke_run
    at_100 = {}
    for method in METHODS:
        history = client.get_metric_history(parent.info.run_id, f"roar/test_loss/{method}")
        at_100[method] = {m.step: m.value for m in history}[100]
    assert len(set(at_100.values())) == 1, at_100
    base = parent.data.metrics["roar/base_test_loss"]
    assert at_100["Random"] != base  # retrained on black images: not the base model


def test_only_the_base_model_is_registered(smoke_run) -> None:
    client, parent = smoke_run
    assert [m.name for m in client.search_registered_models()] == [BASE_MODEL]
    (version,) = client.search_model_versions(f"name = '{BASE_MODEL}'")
    assert version.run_id == parent.info.run_id
    assert parent.data.tags["lfxai.encoder_uri"] == f"models:/{BASE_MODEL}/{version.version}"


def test_bad_method_fails_the_run_with_the_valid_choices(tmp_path, data_dir) -> None:
    store = make_store(tmp_path)
    failed = _mlflow_run(store, {"data_dir": str(data_dir), "feature_methods": "Random,Shap"})
    assert failed.returncode != 0
    assert "unknown feature_methods entry 'Shap'" in failed.stderr
    assert "'GradientShap', 'IntegratedGradients', 'Random', 'Saliency'" in failed.stderr
    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs and all(r.info.status == "FAILED" for r in runs)


def test_an_interrupted_run_resumes_without_redoing_finished_work(tmp_path, data_dir) -> None:
    store = make_store(tmp_path)
    params = {"data_dir": str(data_dir)}
    crashed = _mlflow_run(store, params, env={"LFXAI_FAIL_AFTER_RETRAININGS": "2"})
    assert crashed.returncode != 0
    assert "simulated interruption after 2 retrainings" in crashed.stderr
    client = MlflowClient(tracking_uri=store)
    parent = _parent(client)
    assert parent.info.status == "FAILED"
    before = {r.info.run_id: r for r in _children(client, parent)}
    statuses = [r.info.status for r in before.values()]
    # Two retrainings at a time (the default): the first two finish; the third fails as
    # it starts, and so does a fourth if it started before the failure was seen.
    assert statuses.count("FINISHED") == 2 and statuses.count("FAILED") in (1, 2)
    assert len(statuses) in (3, 4)

    resumed = _mlflow_run(store, {**params, "resume_run_id": parent.info.run_id})
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FINISHED"
    children = _children(client, parent)
    keys = [_key(r) for r in children]
    assert len(keys) == len(set(keys)) == len(METHODS) * len(PERCENTAGES)  # no duplicates
    assert all(r.info.status == "FINISHED" for r in children)
    after = {r.info.run_id: r for r in children}
    assert set(before) <= set(after)  # the FAILED one was reopened, not duplicated
    for run_id, old in before.items():
        if old.info.status == "FINISHED":  # skipped: not touched again
            assert after[run_id].info.end_time == old.info.end_time
    # The base model was trained and registered once; its initial weights were reused.
    assert len(client.get_metric_history(parent.info.run_id, "fit/train_loss")) == 1
    assert len(client.search_model_versions(f"name = '{BASE_MODEL}'")) == 1
    for method in METHODS:
        history = client.get_metric_history(parent.info.run_id, f"roar/test_loss/{method}")
        assert sorted(m.step for m in history) == [0, *PERCENTAGES]
