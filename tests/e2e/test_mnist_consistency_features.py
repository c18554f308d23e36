"""`mlflow run . -e mnist -P name=consistency_features -P profile=smoke`, then read the store."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from lfxai import load_encoder
from lfxai.data.mnist import mnist_tensors
from lfxai.explanations.features import attribute_auxiliary, make_feature_method
from tests.helpers import make_store, mlflow_run, run_experiment

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.data]

METHODS = ["GradientShap", "IntegratedGradients", "Saliency", "Random"]
PERCENTAGES = [5, 10, 20, 50, 80, 100]


MODEL = "lfxai-mnist-denoising-ae-d4"
EXPERIMENT = "mnist-consistency_features"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir):
    store = make_store(tmp_path_factory.mktemp("store"))
    params = {
        "name": "consistency_features",
        "profile": "smoke",
        "data_dir": str(data_dir),
        "seed": "3",
    }
    return (store, *run_experiment("mnist", params, store))


@pytest.fixture(scope="module")
def second_run(finished_run, data_dir):
    """A second, cheaper run with other settings, in the same store (after the first)."""
    store, client, first = finished_run
    params = {"name": "consistency_features", "profile": "smoke", "data_dir": str(data_dir)}
    params |= {"seed": "4", "feature_methods": "Saliency,Random", "n_epochs": "1"}
    done = mlflow_run("mnist", params, store)
    assert done.returncode == 0, done.stderr[-4000:]
    runs = client.search_runs([first.info.experiment_id], order_by=["attributes.start_time"])
    assert [r.info.run_id for r in runs][0] == first.info.run_id
    return runs[-1]


def test_runs_are_named_grouped_and_described(finished_run, second_run):
    _, client, run = finished_run
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == EXPERIMENT
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # `mlflow run` (no --experiment-name) made its runs in Default: left there as pointers.
    pointers = client.search_runs(["0"], order_by=["attributes.start_time"])
    assert [r.data.tags["lfxai.moved_to"] for r in pointers] == [
        run.info.run_id,
        second_run.info.run_id,
    ]
    assert all(r.info.status == "FINISHED" for r in pointers)
    assert run.info.run_name == "#1 smoke seed=3 · consistency_features"
    # n_epochs=1 is the smoke profile's value: not a difference.
    assert second_run.info.run_name == (
        "#2 smoke seed=4 feature_methods=Saliency,Random · consistency_features"
    )
    note = run.data.tags["mlflow.note.content"]
    assert "mlflow run . -e mnist -P name=consistency_features -P profile=smoke" in note
    assert "| seed | 3 | 42 |" in note and "### Claims" in note
    assert run.data.tags["mlflow.source.type"] == "PROJECT"  # the project, not the script
    assert run.data.tags["mlflow.project.entryPoint"] == "mnist"
    for params, seed in ((run.data.params, "3"), (second_run.data.params, "4")):
        assert not {k for k, v in params.items() if v in ("profile", "None", "none")}, params
        assert "config.n_train" in params and params["config.seed"] == seed  # resolved
        # The -P params as `mlflow run` logged them on its Default pointer, copied over.
        assert (params["name"], params["profile"], params["seed"]) == (
            "consistency_features",
            "smoke",
            seed,
        )
    found = client.search_runs([run.info.experiment_id], filter_string="params.seed = '4'")
    assert [r.info.run_id for r in found] == [second_run.info.run_id]


def test_train_and_test_data_are_run_inputs(finished_run, data_dir):
    _, _, run = finished_run
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"mnist-standard-train", "mnist-standard-test"}
    train = inputs["mnist-standard-train"]
    assert [t.value for t in train.tags] == ["train"]
    assert train.dataset.digest == run.data.tags["lfxai.data_digest"]
    assert (data_dir / "mnist" / "MNIST" / "raw").as_uri() in train.dataset.source
    assert json.loads(train.dataset.profile)["features_shape"] == [600, 1, 28, 28]


def test_claims_are_reported_and_system_metrics_logged(finished_run, tmp_path):
    _, client, run = finished_run
    report = json.loads(
        Path(client.download_artifacts(run.info.run_id, "claims.json", str(tmp_path))).read_text()
    )
    keys = [c["key"] for c in report["claims"]]
    assert keys == [f"shift_above_random/{m}" for m in METHODS if m != "Random"]
    assert report["title"] == "MNIST denoising AE (d=4) · smoke profile · 1 epoch"
    for claim in report["claims"]:
        assert claim["verdict"] in ("holds", "fails", "inconclusive")
        assert claim["section"] == "Section 4.1 (feature importance consistency)"
        assert sorted(f["k"] for f in claim["figures"]) == PERCENTAGES[:-1]
        assert {f["n"] for f in claim["figures"]} == {100}  # per-example shifts, paired
        holds = run.data.metrics[f"claims/holds/{claim['key']}"]
        assert holds == float(claim["verdict"] == "holds")
    assert run.data.metrics["claims/all_hold"] in (0.0, 1.0)
    assert "claims.md" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")


def test_the_registered_encoder_is_described_and_found_by_its_profile_alias(
    finished_run, second_run, data_dir, tmp_path, monkeypatch
):
    store, client, run = finished_run
    model = client.get_registered_model(MODEL)
    # What the name holds, whichever experiment registered the newest version.
    assert "the MNIST denoising AE: inputs (N, 1, 28, 28) to codes (N, 4)" in model.description
    assert "@consistency_features-paper" in model.description
    first, second = (client.get_model_version(MODEL, v) for v in ("1", "2"))
    assert first.run_id == run.info.run_id and second.run_id == second_run.info.run_id
    assert "consistency_features (smoke profile)" in first.description
    assert run.data.tags["lfxai.data_digest"] in first.description
    assert first.tags["lfxai.profile"] == "smoke" and first.tags["lfxai.dim_latent"] == "4"
    assert float(first.tags["test_loss"]) == pytest.approx(
        run.data.metrics["fit/best_test_loss"], rel=1e-5
    )
    # Both aliases moved to the newest smoke-profile version of this experiment.
    assert model.aliases == {"smoke": 2, "consistency_features-smoke": 2}
    # MLflow's own loader reads the pt2 graph with pickle refused (it checks the archive).
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    mlflow.set_tracking_uri(store)
    try:
        encoder = load_encoder(f"models:/{MODEL}@smoke")
        graph = mlflow.pytorch.load_model(f"models:/{MODEL}@smoke")
    finally:
        mlflow.set_tracking_uri(None)
    x, _ = mnist_tensors(data_dir / "mnist", train=False)
    logged = np.load(
        client.download_artifacts(second_run.info.run_id, "codes/test.npy", str(tmp_path))
    )
    with torch.no_grad():
        for loaded in (encoder, graph):
            np.testing.assert_allclose(loaded(x[:100]).numpy(), logged, rtol=1e-5, atol=1e-6)


def test_run_finished_with_resolved_config(finished_run):
    _, _, run = finished_run
    assert run.info.status == "FINISHED"
    params, tags = run.data.params, run.data.tags
    assert params["config.seed"] == "3" and params["config.n_epochs"] == "1"
    assert params["config.feature_methods"] == ",".join(METHODS)
    assert tags["lfxai.profile"] == "smoke" and tags["lfxai.dataset"] == "mnist"


def test_curves_are_step_metrics(finished_run):
    _, client, run = finished_run
    epochs = client.get_metric_history(run.info.run_id, "fit/train_loss")
    assert [m.step for m in epochs] == [0]
    for method in METHODS:
        curve = client.get_metric_history(run.info.run_id, f"representation_shift/{method}")
        assert sorted(m.step for m in curve) == PERCENTAGES
        assert all(m.value >= 0 for m in curve)
        assert run.data.metrics[f"throughput/{method}_images_per_second"] > 0


def test_artifacts_are_logged(finished_run, tmp_path):
    _, client, run = finished_run
    paths = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {
        "config.yaml",
        "consistency_features.csv",
        "consistency_features.png",
        "consistency_features.pdf",
        "saliency_examples.png",
        "attributions",
    } <= paths
    local = client.download_artifacts(
        run.info.run_id, "attributions/IntegratedGradients.npy", str(tmp_path)
    )
    assert np.load(local).shape == (100, 1, 28, 28)
    table = client.download_artifacts(run.info.run_id, "consistency_features.csv", str(tmp_path))
    lines = Path(table).read_text().strip().splitlines()
    assert len(lines) == 1 + len(METHODS) * len(PERCENTAGES)


def test_registered_encoder_reloads_and_explains(finished_run, data_dir):
    store, client, run = finished_run
    uri = run.data.tags["lfxai.encoder_uri"]
    assert uri.startswith(f"models:/{MODEL}/")
    version = client.get_model_version(MODEL, uri.rsplit("/", 1)[1])
    assert version.run_id == run.info.run_id
    mlflow.set_tracking_uri(store)
    try:
        encoder = load_encoder(uri)
    finally:
        mlflow.set_tracking_uri(None)
    x, _ = mnist_tensors(data_dir / "mnist", train=False)
    with torch.no_grad():
        codes = encoder(x[:100])
    logged = np.load(client.download_artifacts(run.info.run_id, "codes/test.npy"))
    np.testing.assert_allclose(codes.numpy(), logged, rtol=1e-5, atol=1e-6)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x[:8], torch.zeros(8)), batch_size=4
    )
    scores = attribute_auxiliary(
        encoder,
        loader,
        torch.device("cpu"),
        make_feature_method("Saliency", encoder),
        progress=False,
    )
    assert scores.shape == (8, 1, 28, 28) and np.abs(scores).sum() > 0


def test_at_100_percent_every_method_gives_the_same_shift(finished_run):
    """Every feature replaced by the baseline: each method's masked images are the same
    all-black images, so the shifts are equal to the last bit (same process, same inputs)."""
    _, client, run = finished_run
    at_100 = {}
    for method in METHODS:
        curve = client.get_metric_history(run.info.run_id, f"representation_shift/{method}")
        at_100[method] = {m.step: m.value for m in curve}[100]
    assert len(set(at_100.values())) == 1, at_100
    assert at_100["Random"] > 0  # black images are not the explained ones
