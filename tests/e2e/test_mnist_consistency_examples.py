"""`mlflow run . -e mnist -P name=consistency_examples -P profile=smoke`, then read the store."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import make_store, run_experiment

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.data]

METHODS = ["InfluenceFunctions", "TracIn", "SimplEx", "DKNN"]
PERCENTAGES = [5, 10, 20, 50, 70, 100]


def test_consistency_examples_smoke_run(tmp_path, data_dir):
    store = make_store(tmp_path)
    params = {"name": "consistency_examples", "profile": "smoke", "data_dir": str(data_dir)}
    client, run = run_experiment("mnist", params, store)
    run_id = run.info.run_id
    assert run.data.params["config.example_methods"] == ",".join(METHODS)
    for method in METHODS:
        assert run.data.metrics[f"time/explainer_seconds/{method}"] > 0
        for kind in ("top", "bottom"):
            curve = client.get_metric_history(run_id, f"similarity_rate/{method}/{kind}")
            assert sorted(m.step for m in curve) == PERCENTAGES
            assert all(0 <= m.value <= 1 for m in curve)
        scores = np.load(
            client.download_artifacts(run_id, f"example_importance/{method}.npy", str(tmp_path))
        )
        assert scores.shape == (40, 50) and np.isfinite(scores).all()
    # at 100% the top and bottom sets are the same: all train examples
    top = client.get_metric_history(run_id, "similarity_rate/DKNN/top")
    bottom = client.get_metric_history(run_id, "similarity_rate/DKNN/bottom")
    assert [m.value for m in top if m.step == 100] == [m.value for m in bottom if m.step == 100]
    checkpoints = {a.path for a in client.list_artifacts(run_id, "checkpoints")}
    assert len(checkpoints) == 2  # smoke: 2 epochs, one checkpoint per epoch
    paths = {a.path for a in client.list_artifacts(run_id)}
    assert {
        "consistency_examples.csv",
        "consistency_examples.png",
        "consistency_examples.pdf",
    } <= paths
    train_idx = np.load(client.download_artifacts(run_id, "subsets/train_idx.npy", str(tmp_path)))
    assert len(set(train_idx.tolist())) == 50
    # Its own experiment, its claims, a version of the denoising AE with its profile alias.
    assert client.get_experiment(run.info.experiment_id).name == "mnist-consistency_examples"
    claims = sorted(k for k in run.data.metrics if k.startswith("claims/holds/"))
    assert claims == sorted(f"claims/holds/top_above_bottom/{m}" for m in METHODS)
    aliases = client.get_registered_model("lfxai-mnist-denoising-ae-d4").aliases
    assert aliases == {"smoke": 1, "consistency_examples-smoke": 1}
