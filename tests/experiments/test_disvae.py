"""disvae: settings validation and ``train_and_measure`` on tiny data with a real tracker."""

from __future__ import annotations

import dataclasses
import math

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from lfxai.config import ConfigError, build_config, load_profile
from lfxai.data.splits import Split
from lfxai.experiments.disvae import (
    DisvaeConfig,
    VaeTrial,
    registered_vae_name,
    train_and_measure,
)
from lfxai.metrics.claims import disvae_claims
from lfxai.plugins import Splits, get_dataset
from lfxai.tracking import Tracker, load_encoder

RESULT_KEYS = {
    "pearson",
    "spearman",
    "cosine",
    "entropy",
    "active_units",
    "test_loss",
    "test_reconstruction",
    "best_epoch",
}


def _config(**overrides: str) -> DisvaeConfig:
    values = load_profile("mnist", "disvae", "smoke")
    return build_config(DisvaeConfig, values, {"device": "cpu", **overrides})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"beta_list": "1,-5"}, r"beta_list entry -5.0 is not a finite beta >= 0"),
        ({"beta_list": "1,x"}, r"beta_list='x' is not a valid float"),
        ({"beta_list": ","}, r"beta_list must not be empty"),
        ({"beta_list": "5,5"}, r"beta_list lists a beta more than once"),
        ({"loss_list": "beta_vae,factor"}, r"'factor'.*valid choices.*beta_tc_vae"),
        ({"n_runs": "0"}, r"n_runs must be >= 1, got 0"),
        ({"dim_latent": "1"}, r"dim_latent must be >= 2"),
        ({"n_explained": "0"}, r"n_explained must be positive"),
    ],
)
def test_bad_settings_name_the_value_and_the_choices(overrides, message):
    with pytest.raises(ConfigError, match=message):
        _config(**overrides)


def test_profiles_follow_the_paper():
    paper = build_config(DisvaeConfig, load_profile("mnist", "disvae", "paper"))
    assert paper.split == "resized32" and paper.dim_latent == 3 and paper.batch_size == 300
    assert paper.beta_list == (1, 5, 10) and paper.n_runs == 5
    assert paper.loss_list == ("beta_vae", "beta_tc_vae")


def _splits() -> Splits:
    generator = torch.Generator().manual_seed(0)
    x = (torch.rand(50, 1, 32, 32, generator=generator) > 0.7).float()
    y = torch.zeros(50, dtype=torch.long)
    train, test = Split(x[:30], y[:30]), Split(x[30:], y[30:])
    return Splits(train, test, test.head(8))


@pytest.fixture()
def parent(mlflow_store):
    with mlflow.start_run() as run:
        yield Tracker(run.info.run_id)


def test_train_and_measure_logs_one_trial_and_calls_on_epoch_every_epoch(parent, tmp_path):
    config = dataclasses.replace(_config(), n_epochs=3, patience=0, batch_size=10)
    trial = VaeTrial("beta_tc_vae", 5.0, 3, run=1)
    calls: list[tuple[int, dict[str, float]]] = []
    with parent.nested(trial.name) as child:
        result = train_and_measure(
            get_dataset("mnist"),
            config,
            child,
            trial,
            _splits(),
            on_epoch=lambda epoch, metrics: calls.append((epoch, metrics)),
        )
        run_id = child.run_id
    assert set(result) >= RESULT_KEYS and all(math.isfinite(v) for v in result.values())
    assert [epoch for epoch, _ in calls] == [0, 1, 2]
    for _, metrics in calls:
        assert {"test_loss", "test_reconstruction", "test_kl", "test_tc", "train_loss"} <= set(
            metrics
        )
    test_losses = [m["test_loss"] for _, m in calls]
    best = int(np.argmin(test_losses))
    assert result["best_epoch"] == best
    assert result["test_loss"] == pytest.approx(test_losses[best], rel=1e-12)
    assert result["test_reconstruction"] == pytest.approx(calls[best][1]["test_reconstruction"])

    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["trial.beta"] == "5" and run.data.params["trial.trial_seed"] == str(
        config.seed + 1
    )
    history = client.get_metric_history(run_id, "fit/test_tc")
    assert sorted(m.step for m in history) == [0, 1, 2]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        [m["test_tc"] for _, m in calls]
    )
    assert run.data.metrics["pearson"] == pytest.approx(result["pearson"])
    paths = {a.path for a in client.list_artifacts(run_id)}
    assert {"loss_terms.png", "saliency_units.png", "saliency", "codes"} <= paths
    saliency = np.load(client.download_artifacts(run_id, "saliency/units.npy", str(tmp_path)))
    assert saliency.shape == (8, 3, 32, 32) and (saliency >= 0).all()

    name = registered_vae_name("mnist", "beta_tc_vae", 3)
    assert name == "lfxai-mnist-beta-tc-vae-d3"
    version = client.get_model_version(name, "1")
    assert version.run_id == run_id
    assert version.tags["lfxai.beta"] == "5" and version.tags["lfxai.run"] == "1"
    assert run.data.tags["lfxai.encoder_uri"] == f"models:/{name}/1"
    encoder = load_encoder(f"models:/{name}/1")
    codes = np.load(client.download_artifacts(run_id, "codes/explained.npy", str(tmp_path)))
    with torch.no_grad():
        np.testing.assert_allclose(encoder(_splits().explain.x).numpy(), codes, rtol=1e-5)


class Prune(Exception):
    """Stands in for optuna.TrialPruned."""


def test_an_exception_from_on_epoch_propagates_and_fails_the_nested_run(parent):
    config = dataclasses.replace(_config(), n_epochs=3, batch_size=10, register_model=False)
    trial = VaeTrial("beta_vae", 1.0, 2)
    epochs = []

    def prune(epoch, metrics):
        epochs.append(epoch)
        if epoch == 1:
            raise Prune(metrics["test_loss"])

    with pytest.raises(Prune), parent.nested(trial.name) as child:
        train_and_measure(get_dataset("mnist"), config, child, trial, _splits(), on_epoch=prune)
    assert epochs == [0, 1]
    assert MlflowClient().get_run(child.run_id).info.status == "FAILED"


def test_claims_compare_the_models_of_each_beta_from_the_logged_table():
    # 4 runs per beta (the smallest sample an exact two-sample test can decide at 0.05)
    rows = [
        ("beta_vae", b, r, 0.25 + b / 40 + r / 100, 0.5 - b / 40) for b in (1, 10) for r in range(4)
    ]
    rows.append(("beta_tc_vae", 1, 0, 0.1, 0.1))
    table = pd.DataFrame(rows, columns=["loss", "beta", "run", "pearson", "spearman"])
    claims = {c.key: c for c in disvae_claims(table)}
    pearson = claims["correlation_not_falling/beta_vae/pearson"]
    assert pearson.verdict == "holds"  # higher at beta 10 on all 4 models: p = 1/70
    assert [f["margin"] for f in pearson.figures] == pytest.approx([9 / 40])
    spearman = claims["correlation_not_falling/beta_vae/spearman"]
    assert spearman.verdict == "fails" and spearman.reason.startswith("fails at beta = 10")
    assert claims["correlation_not_falling/beta_tc_vae/pearson"].verdict == "untested"
