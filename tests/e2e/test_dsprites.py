"""`mlflow run . -e dsprites -P name=disvae -P profile=smoke`, then read the store back.

The run's data_dir is a temporary folder holding a small strided sub-grid of the sprites
(1,920 images, rendered in about a second): the full 737,280-image grid is never rendered
here. The run must say so in its data-source tag.
"""

from __future__ import annotations

import json
import math

import mlflow
import numpy as np
import pytest
import torch

from lfxai import load_encoder
from lfxai.data.dsprites import META_NAME, dsprites_splits, provision_dsprites
from tests.helpers import make_store, run_experiment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SMALL = (1, 5, 8, 4, 4)  # 3 shapes x 2 scales x 5 orientations x 8 x 8 positions
FACTORS = ("shape", "scale", "orientation", "pos_x", "pos_y")


def test_disvae_smoke_run(tmp_path):
    data_dir = tmp_path / "data"
    provisioned = provision_dsprites(data_dir / "dsprites", download=False, strides=SMALL)
    store = make_store(tmp_path)
    params = {"name": "disvae", "profile": "smoke", "data_dir": str(data_dir)}
    client, run = run_experiment("dsprites", params, store)
    data = run.data
    assert data.tags["lfxai.dataset"] == "dsprites"
    assert data.tags["lfxai.data_source"] == f"cache: {provisioned.source}"
    assert "sub-grid strides [1, 5, 8, 4, 4]" in data.tags["lfxai.data_source"]
    assert data.params["config.split"] == "random" and data.params["config.dim_latent"] == "6"
    assert data.params["n_train_used"] == "200" and data.params["n_test_used"] == "100"
    contexts = {[t.value for t in d.tags][0]: d for d in run.inputs.dataset_inputs}
    assert set(contexts) == {"train", "test"}
    assert '"features_shape": [200, 1, 64, 64]' in contexts["train"].dataset.profile
    meta = json.loads((data_dir / "dsprites" / META_NAME).read_text())
    assert meta["strides"] == list(SMALL)

    children = client.search_runs(
        [run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"
    )
    assert sorted(c.data.tags["mlflow.runName"] for c in children) == [
        "beta_tc_vae-beta1-run0",
        "beta_vae-beta1-run0",
    ]
    for child in children:
        metrics = child.data.metrics
        assert 0.0 <= metrics["mig"] <= 1.0
        gaps = [metrics[f"mig/{f}"] for f in FACTORS]
        assert all(0.0 <= g <= 1.0 for g in gaps)
        assert metrics["mig"] == pytest.approx(float(np.mean(gaps)), abs=1e-9)
        assert {"pearson", "spearman", "cosine", "entropy", "active_units"} <= set(metrics)
        assert math.isfinite(metrics["test_loss"])
        assert child.data.params["trial.dim_latent"] == "6"

    # The registered encoder reloads and takes the decoded 64x64 test images.
    child = next(c for c in children if c.data.tags["mlflow.runName"].startswith("beta_vae"))
    mlflow.set_tracking_uri(store)
    try:
        encoder = load_encoder(child.data.tags["lfxai.encoder_uri"])
    finally:
        mlflow.set_tracking_uri(None)
    _, test = dsprites_splits(data_dir / "dsprites", "random", 42, 200, 100)
    with torch.no_grad():
        codes = encoder(test.x[:10])
    assert codes.shape == (10, 6) and torch.isfinite(codes).all()
