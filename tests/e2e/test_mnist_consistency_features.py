"""`mlflow run . -e mnist -P name=consistency_features -P profile=smoke`, then read the store."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from lfxai.data.mnist import mnist_tensors
from lfxai.explanations.features import attribute_auxiliary, make_feature_method
from tests.helpers import make_store, run_experiment

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.data]

METHODS = ["GradientShap", "IntegratedGradients", "Saliency", "Random"]
PERCENTAGES = [5, 10, 20, 50, 80, 100]


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
    assert uri.startswith("models:/lfxai-mnist-denoising-ae/")
    version = client.get_model_version("lfxai-mnist-denoising-ae", uri.rsplit("/", 1)[1])
    assert version.run_id == run.info.run_id
    mlflow.set_tracking_uri(store)
    try:
        encoder = mlflow.pytorch.load_model(uri)
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
