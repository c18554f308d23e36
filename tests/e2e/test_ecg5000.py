"""`mlflow run . -e ecg5000 -P name=... -P profile=smoke`, then read the store back."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch

from lfxai import load_encoder
from lfxai.data.ecg5000 import ecg5000_splits
from tests.helpers import make_store, run_experiment

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.data]

FEATURE_METHODS = ["GradientShap", "IntegratedGradients", "Saliency", "Random"]
EXAMPLE_METHODS = ["InfluenceFunctions", "TracIn", "SimplEx", "DKNN"]


def _artifact(client, run_id: str, path: str, tmp_path) -> np.ndarray:
    return np.load(client.download_artifacts(run_id, path, str(tmp_path)))


def test_consistency_features_smoke_run(tmp_path, data_dir):
    store = make_store(tmp_path)
    params = {"name": "consistency_features", "profile": "smoke", "data_dir": str(data_dir)}
    client, run = run_experiment("ecg5000", params, store)
    run_id, data = run.info.run_id, run.data
    assert data.tags["lfxai.dataset"] == "ecg5000" and data.tags["lfxai.profile"] == "smoke"
    assert data.params["config.split"] == "normal" and data.params["config.dim_latent"] == "8"
    assert data.params["n_train_used"] == "60" and data.params["n_test_used"] == "30"
    shifts = {}
    for method in FEATURE_METHODS:
        curve = client.get_metric_history(run_id, f"representation_shift/{method}")
        assert sorted(m.step for m in curve) == [5, 10, 20, 50, 80, 100]
        shifts[method] = {m.step: m.value for m in curve}
        scores = _artifact(client, run_id, f"attributions/{method}.npy", tmp_path)
        assert scores.shape == (30, 140, 1) and np.isfinite(scores).all()
    # At 100% every time step is the mean training beat, whatever the ranking: one shift.
    at_100 = [s[100] for s in shifts.values()]
    assert max(at_100) == min(at_100) and at_100[0] > 0
    paths = {a.path for a in client.list_artifacts(run_id)}
    assert {"consistency_features.csv", "consistency_features.png", "saliency_examples.png"} <= (
        paths
    )
    # The registered encoder reloads and reproduces the logged codes of the abnormal beats.
    assert client.get_experiment(run.info.experiment_id).name == "ecg5000-consistency_features"
    # Abnormal beats are explained: a third input beside the normal train / validation beats.
    contexts = {[t.value for t in d.tags][0]: d.dataset.name for d in run.inputs.dataset_inputs}
    assert contexts == {
        "train": "ecg5000-normal-train",
        "test": "ecg5000-normal-test",
        "explain": "ecg5000-normal-explain",
    }
    assert set(k for k in data.metrics if k.startswith("claims/holds/")) == {
        f"claims/holds/shift_above_random/{m}" for m in FEATURE_METHODS[:3]
    }
    uri = data.tags["lfxai.encoder_uri"]
    assert uri.startswith("models:/lfxai-ecg5000-reconstruction-ae-d8/")
    mlflow.set_tracking_uri(store)
    try:
        encoder = load_encoder(uri)
    finally:
        mlflow.set_tracking_uri(None)
    explained = ecg5000_splits(data_dir / "ecg5000", "normal", seed=42)[2].head(30)
    with torch.no_grad():
        codes = encoder(explained.x)
    logged = _artifact(client, run_id, "codes/test.npy", tmp_path)
    np.testing.assert_allclose(codes.numpy(), logged, rtol=1e-5, atol=1e-6)


def test_consistency_examples_smoke_run(tmp_path, data_dir):
    store = make_store(tmp_path)
    params = {"name": "consistency_examples", "profile": "smoke", "data_dir": str(data_dir)}
    client, run = run_experiment("ecg5000", params, store)
    run_id = run.info.run_id
    assert run.data.params["config.split"] == "random"
    assert run.data.params["config.influence_method"] == "arnoldi"
    for method in EXAMPLE_METHODS:
        scores = _artifact(client, run_id, f"example_importance/{method}.npy", tmp_path)
        assert scores.shape == (20, 20) and np.isfinite(scores).all()
        top = client.get_metric_history(run_id, f"similarity_rate/{method}/top")
        bottom = client.get_metric_history(run_id, f"similarity_rate/{method}/bottom")
        assert sorted(m.step for m in top) == [5, 10, 20, 50, 70, 100]
        # At 100% the top and bottom sets are both every explained train example.
        assert [m.value for m in top if m.step == 100] == [m.value for m in bottom if m.step == 100]
    # Balanced normal / abnormal explained train subset, as the paper.
    train_idx = _artifact(client, run_id, "subsets/train_idx.npy", tmp_path)
    train = ecg5000_splits(data_dir / "ecg5000", "random", seed=42)[0].head(60)
    assert int(train.y[torch.from_numpy(train_idx)].sum()) == 10
    assert len({a.path for a in client.list_artifacts(run_id, "checkpoints")}) == 1
    assert run.data.tags["lfxai.encoder_uri"].startswith("models:/lfxai-ecg5000-")
    claims = {k for k in run.data.metrics if k.startswith("claims/holds/")}
    assert claims == {f"claims/holds/top_above_bottom/{m}" for m in EXAMPLE_METHODS}
