"""`mlflow run . -e cifar10` (smoke) on a generated CIFAR-10 in the real format, read back.

The data are written by ``write_cifar10`` into a temporary ``data_dir`` (there is no offline
source of the real files), so the real loading and checking code runs. The first run trains
SimCLR and registers its encoder; the second reuses it with ``pretrained=true``.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch

from lfxai import load_encoder
from lfxai.data.cifar10 import cifar10_split, write_cifar10
from lfxai.data.masking import GaussianBlur
from tests.helpers import make_store, run_experiment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FEATURE_METHODS = ["GradientShap", "IntegratedGradients", "Saliency", "Random"]
EXAMPLE_METHODS = ["SimplEx", "DKNN"]
MODEL = "lfxai-cifar10-simclr-resnet-18-d512"


def _artifact(client, run_id: str, path: str, folder) -> np.ndarray:
    return np.load(client.download_artifacts(run_id, path, str(folder)))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A project data folder holding a generated CIFAR-10 (64 train, 32 test images)."""
    data_dir = tmp_path_factory.mktemp("data")
    write_cifar10(data_dir / "cifar10", n_train=64, n_test=32, seed=0)
    return data_dir, make_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def features_run(generated):
    data_dir, store = generated
    params = {"name": "consistency_features", "profile": "smoke", "data_dir": str(data_dir)}
    return run_experiment("cifar10", params, store)


def test_consistency_features_smoke_run(features_run, generated, tmp_path):
    data_dir, store = generated
    client, run = features_run
    run_id, data = run.info.run_id, run.data
    assert data.tags["lfxai.dataset"] == "cifar10" and data.tags["lfxai.profile"] == "smoke"
    assert data.tags["lfxai.data_source"] == "fixture"  # the manifest's digests were checked
    assert data.params["n_train_used"] == "64" and data.params["n_test_used"] == "6"
    assert data.params["config.optimizer"] == "sgd" and data.params["config.lr_schedule"] == (
        "cosine"
    )
    assert data.metrics["fit/epochs"] == 1 and np.isfinite(data.metrics["fit/train_loss"])
    shifts = {}
    for method in FEATURE_METHODS:
        curve = client.get_metric_history(run_id, f"representation_shift/{method}")
        assert sorted(m.step for m in curve) == [5, 10, 20, 50, 80, 100]
        shifts[method] = {m.step: m.value for m in curve}
        scores = _artifact(client, run_id, f"attributions/{method}.npy", tmp_path)
        assert scores.shape == (6, 3, 32, 32) and np.isfinite(scores).all()
    # At 100% every pixel value is the blurred image's, whatever the ranking: one shift.
    at_100 = [s[100] for s in shifts.values()]
    assert max(at_100) - min(at_100) <= 1e-6 * max(at_100) and at_100[0] > 0
    paths = {a.path for a in client.list_artifacts(run_id)}
    assert {"consistency_features.csv", "consistency_features.png", "saliency_examples.png"} <= (
        paths
    )
    assert {k for k in data.metrics if k.startswith("claims/holds/")} == {
        f"claims/holds/shift_above_random/{m}" for m in FEATURE_METHODS[:3]
    }
    # The registered encoder reloads, reproduces the logged codes, and its 100% shift is
    # the distance to the codes of the blurred images.
    uri = data.tags["lfxai.encoder_uri"]
    assert uri == f"models:/{MODEL}/1"
    aliases = client.get_registered_model(MODEL).aliases
    assert aliases == {"smoke": 1, "consistency_features-smoke": 1}
    mlflow.set_tracking_uri(store)
    try:
        encoder = load_encoder(uri)
    finally:
        mlflow.set_tracking_uri(None)
    explained = cifar10_split(data_dir / "cifar10", train=False, size=6).x
    with torch.no_grad():
        codes = encoder(explained)
        blurred = encoder(GaussianBlur(21, 5.0)(explained))
    logged = _artifact(client, run_id, "codes/test.npy", tmp_path)
    np.testing.assert_allclose(codes.numpy(), logged, rtol=1e-4, atol=1e-5)
    shift = float(((codes - blurred) ** 2).sum(dim=1).mean())
    assert shift == pytest.approx(at_100[0], rel=1e-3)


def test_consistency_examples_smoke_run_reuses_the_registered_encoder(
    features_run, generated, tmp_path
):
    data_dir, store = generated
    _, first = features_run
    params = {
        "name": "consistency_examples",
        "profile": "smoke",
        "data_dir": str(data_dir),
        "pretrained": "true",
    }
    client, run = run_experiment("cifar10", params, store)
    run_id, data = run.info.run_id, run.data
    # The encoder of the first run, loaded strictly: no training, nothing registered.
    assert data.tags["lfxai.pretrained"] == f"models:/{MODEL}/1"
    assert not {k for k in data.metrics if k.startswith("fit/")}
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == 1
    assert data.params["config.example_methods"] == "SimplEx,DKNN"
    for method in EXAMPLE_METHODS:
        scores = _artifact(client, run_id, f"example_importance/{method}.npy", tmp_path)
        assert scores.shape == (16, 20) and np.isfinite(scores).all()
        top = client.get_metric_history(run_id, f"similarity_rate/{method}/top")
        bottom = client.get_metric_history(run_id, f"similarity_rate/{method}/bottom")
        assert sorted(m.step for m in top) == [5, 10, 20, 50, 70, 100]
        # At 100% the top and bottom sets are both every explained train example.
        assert [m.value for m in top if m.step == 100] == [m.value for m in bottom if m.step == 100]
    simplex = _artifact(client, run_id, "example_importance/SimplEx.npy", tmp_path)
    np.testing.assert_allclose(simplex.sum(axis=1), 1.0, rtol=1e-5)
    # The explained train subset comes from the TRAIN split, two images of each class.
    train_idx = _artifact(client, run_id, "subsets/train_idx.npy", tmp_path)
    train = cifar10_split(data_dir / "cifar10", train=True)
    assert np.bincount(train.y[torch.from_numpy(train_idx)].numpy(), minlength=10).tolist() == (
        [2] * 10
    )
    assert {k for k in data.metrics if k.startswith("claims/holds/")} == {
        f"claims/holds/top_above_bottom/{m}" for m in EXAMPLE_METHODS
    }
