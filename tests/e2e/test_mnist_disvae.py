"""`mlflow run . -e mnist -P name=disvae -P profile=smoke`, then read the store back.

The smoke profile trains 4 tiny VAEs (2 losses x beta 1, 5 x 1 run, 1 epoch) on 32x32 MNIST.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from lfxai import load_encoder
from lfxai.data.mnist_resized import mnist_resized_split
from lfxai.metrics.disentanglement import SALIENCY_METRICS
from tests.helpers import make_store, run_experiment

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.data]

LOSSES = ["beta_vae", "beta_tc_vae"]
BETAS = [1, 5]  # the smoke profile's
N_EXPLAINED = 40


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir):
    store = make_store(tmp_path_factory.mktemp("store"))
    params = {"name": "disvae", "profile": "smoke", "data_dir": str(data_dir)}
    client, run = run_experiment("mnist", params, store)
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    return store, client, run, children


def test_one_finished_nested_run_per_loss_and_beta(finished_run):
    _, client, run, children = finished_run
    assert run.info.status == "FINISHED" and run.data.tags["lfxai.experiment"] == "disvae"
    names = sorted(c.info.run_name for c in children)
    assert names == sorted(f"{loss}-beta{b}-run0" for loss in LOSSES for b in BETAS)
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["lfxai.experiment"] == "disvae"  # inherited identity
        metrics = child.data.metrics
        assert set(SALIENCY_METRICS) <= set(metrics)
        assert 0 <= metrics["entropy"] <= np.log(3) + 1e-9
        assert 0 <= metrics["active_units"] <= 3
        terms = {"loss", "reconstruction", "kl"}
        if child.data.params["trial.loss"] == "beta_tc_vae":
            terms |= {"mi", "tc", "dw_kl"}
        for term in terms:
            history = client.get_metric_history(child.info.run_id, f"fit/test_{term}")
            assert [m.step for m in history] == [0]


def test_parent_table_summary_figures_and_claims(finished_run, tmp_path):
    _, client, run, children = finished_run
    paths = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"disvae.csv", "metric_box_plots.png", "claims.json", "saliency_units"} <= paths
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "saliency_units")}
    assert {f"saliency_units/{loss}.png" for loss in LOSSES} <= figures
    table = pd.read_csv(client.download_artifacts(run.info.run_id, "disvae.csv", str(tmp_path)))
    assert len(table) == len(LOSSES) * len(BETAS)
    by_run = {c.info.run_id: c for c in children}
    for row in table.itertuples():
        child = by_run[row.run_id]
        assert child.data.params["trial.loss"] == row.loss
        assert row.pearson == pytest.approx(child.data.metrics["pearson"])
        key = f"pearson_mean/{row.loss}/beta{row.beta:g}"
        assert run.data.metrics[key] == pytest.approx(row.pearson)  # one run: mean = value
    report = json.loads(
        Path(client.download_artifacts(run.info.run_id, "claims.json", str(tmp_path))).read_text()
    )
    keys = sorted(c["key"] for c in report["claims"])
    assert keys == sorted(
        f"correlation_not_falling/{loss}/{m}" for loss in LOSSES for m in ("pearson", "spearman")
    )
    for claim in report["claims"]:
        # one model per beta: too few for the two-sample test, whatever the margins
        assert claim["verdict"] == "inconclusive" and "the test needs at least 4" in claim["reason"]
        assert run.data.metrics[f"claims/holds/{claim['key']}"] == 0.0
        assert run.data.metrics[f"claims/verdict/{claim['key']}"] == 0.0
    inputs = {d.dataset.name for d in run.inputs.dataset_inputs}
    assert inputs == {"mnist-resized32-train", "mnist-resized32-test"}


def test_registered_encoders_reload_and_reproduce_the_logged_codes(finished_run, data_dir):
    store, client, _, children = finished_run
    (child,) = [c for c in children if c.info.run_name == "beta_tc_vae-beta5-run0"]
    uri = child.data.tags["lfxai.encoder_uri"]
    name = "lfxai-mnist-beta-tc-vae-d3"
    assert uri.startswith(f"models:/{name}/")
    model = client.get_registered_model(name)
    assert set(model.aliases) == {"smoke-beta1", "smoke-beta5"}
    version = client.get_model_version(name, model.aliases["smoke-beta5"])
    assert version.run_id == child.info.run_id
    assert version.tags["lfxai.beta"] == "5" and version.tags["lfxai.profile"] == "smoke"
    mlflow.set_tracking_uri(store)
    try:
        encoder = load_encoder(f"models:/{name}@smoke-beta5")
    finally:
        mlflow.set_tracking_uri(None)
    x = mnist_resized_split(data_dir / "mnist", train=False, size=N_EXPLAINED).x
    with torch.no_grad():
        codes = encoder(x).numpy()
    logged = np.load(client.download_artifacts(child.info.run_id, "codes/explained.npy"))
    np.testing.assert_allclose(codes, logged, rtol=1e-5, atol=1e-6)
    saliency = np.load(client.download_artifacts(child.info.run_id, "saliency/units.npy"))
    assert saliency.shape == (N_EXPLAINED, 3, 32, 32)
