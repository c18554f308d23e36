"""Pretext task sensitivity: tables, claims, settings and the reuse of registered models."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from lfxai.cli.experiment import main
from lfxai.cli.launch import EXIT_BAD_INPUT
from lfxai.config import ConfigError, build_config, load_profile
from lfxai.data.splits import Split
from lfxai.experiments import pretext, pretext_models
from lfxai.experiments.pretext_models import TITLES
from lfxai.experiments.pretext_models import resolve_pretrained as resolve
from lfxai.metrics.claims import claims_markdown, pretext_claims
from lfxai.metrics.correlation import CORRELATIONS, correlation_table, latex_tables
from lfxai.models.images import EncoderMnist
from lfxai.models.registry import ModelSpec, build_model
from lfxai.plugins import get_dataset
from lfxai.tracking import Tracker

MNIST = get_dataset("mnist")


def _matrices(value: float, n_runs: int = 3) -> dict[tuple[str, str], np.ndarray]:
    runs = np.full((n_runs, 3, 3), value)
    runs[:, range(3), range(3)] = 1.0
    runs[0, 0, 1] = runs[0, 1, 0] = value + 0.1  # some spread over runs
    return {(e, c): runs.copy() for e in pretext.EXPLANATIONS for c in CORRELATIONS}


def test_table_latex_and_claims() -> None:
    tasks = ["reconstruction", "denoising", "scae"]
    table = correlation_table(_matrices(0.3), tasks)
    assert len(table) == 4 * 9 and set(table.n_runs) == {3}
    pair = table[(table.task_a == "reconstruction") & (table.task_b == "denoising")]
    assert pair["mean"].iloc[0] == pytest.approx(0.3 + 0.1 / 3)
    assert pair["std"].iloc[0] == pytest.approx(np.std([0.4, 0.3, 0.3]))
    latex = latex_tables(table, tasks, TITLES)
    assert latex.count("\\begin{tabular}{lccc}") == 4
    assert "Reconstruction & $1.00 \\pm 0.00$ & $0.33 \\pm 0.05$ & $0.30 \\pm 0.00$ \\\\" in latex
    claims = pretext_claims(table)  # no per-run values: nothing to test
    assert {c.verdict for c in claims} == {"inconclusive"}
    assert {c.key for c in claims} == {
        f"not_strongly_correlated/{e}/{c}" for e in pretext.EXPLANATIONS for c in CORRELATIONS
    }
    assert len(claims[0].figures) == 3  # each pair once, the diagonal left out
    weak = _matrices(0.3, n_runs=5)
    claims = pretext_claims(correlation_table(weak, tasks), _evidence(weak))
    assert [c.verdict for c in claims] == ["holds"] * 4  # every pair below 0.65 in 5 runs
    # 6 runs: 1/64 is below 0.05 / 3 pairs, so a pair may fail
    strong = _matrices(0.9, n_runs=6)
    claims = pretext_claims(correlation_table(strong, tasks), _evidence(strong))
    assert [c.verdict for c in claims] == ["fails"] * 4
    assert claims[0].reason == (  # every pair, in the table's order: 1 of 2^6 sign patterns
        "fails at reconstruction vs scae (p = 0.0156), denoising vs reconstruction "
        "(p = 0.0156), denoising vs scae (p = 0.0156)"
    )
    report = claims_markdown(claims, "t")
    assert "| **fails** | Section 4.2 |" in report and "at reconstruction vs scae" in report


def _evidence(matrices: dict[tuple[str, str], np.ndarray]) -> dict[str, np.ndarray]:
    """What the experiment logs as the claims' evidence: the per-run matrices."""
    return {f"{e}_{c}": runs for (e, c), runs in matrices.items()}


def _settings(**overrides: str):
    values = load_profile("mnist", "pretext", "smoke")
    return build_config(pretext.PretextConfig, values, overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"feature_attr_method": "Shap"},
            r"^unknown feature_attr_method entry 'Shap'; valid choices: \[.*'GradientShap'",
        ),
        (
            {"example_attr_method": "KNN"},
            r"^unknown example_attr_method entry 'KNN'; valid choices: \[.*'DKNN'.*'TracIn'",
        ),
        ({"n_runs": "0"}, r"n_runs must be >= 1"),
        ({"tasks": "scae"}, r"at least two tasks"),
        ({"tasks": "reconstruction,vae"}, r"unknown tasks entry 'vae'.*valid choices"),
        (
            {"pretrained": "true", "example_attr_method": "TracIn"},
            r"^pretrained=true cannot explain with TracIn: registered encoders carry no training "
            r"loss \(nor checkpoints\) to differentiate; use example_attr_method DKNN or "
            r"SimplEx, or pretrained=false$",
        ),
        (
            {"example_attr_method": "TracIn", "checkpoint_every": "0"},
            r"^TracIn needs checkpoint_every > 0 \(checkpoints saved while training\)$",
        ),
        (
            {"example_pixels": "bytes"},
            r"^unknown example_pixels entry 'bytes'; valid choices: \['raw', 'unit'\]$",
        ),
        ({"patience": "-1"}, r"^patience must be >= 0, got -1$"),
        ({"scae_patience": "-1"}, r"^scae_patience must be >= 0, got -1$"),
        (
            {"pretrained_version": ""},
            r"^pretrained_version must be 'latest', a version number or an alias$",
        ),
    ]
    + [  # every size, zero or negative
        ({key: bad}, rf"^{key} must be positive, got {bad}")
        for key, bad in {
            "scae_n_train": "0",
            "scae_batch_size": "-64",
            "scae_lr": "0",
            "scae_n_epochs": "-1",
            "n_plots": "0",
            "attribution_batch_size": "-1",
            "n_test_explained": "0",
            "n_train_explained": "-10",
            "n_test": "0",
            "n_train": "-1",
        }.items()
    ],
)
def test_bad_settings_name_the_value_and_the_choices(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        _settings(**overrides)


def test_no_patience_at_all_is_allowed() -> None:
    settings = _settings(patience="0", scae_patience="0")  # 0: train every epoch
    assert (settings.patience, settings.scae_patience) == (0, 0)


def test_every_profile_builds_with_every_task_of_the_plugin() -> None:
    for profile in ("paper", "quick", "smoke"):
        config = build_config(pretext.PretextConfig, load_profile("mnist", "pretext", profile))
        assert set(config.tasks) == set(MNIST.pretext_tasks) == set(TITLES)
    assert _settings().feature_attr_method == "Saliency"
    assert (
        build_config(
            pretext.PretextConfig, load_profile("mnist", "pretext", "paper")
        ).feature_attr_method
        == "GradientShap"
    )


class _Arrays:
    """The two logging calls of ``pretext._explanations``, kept in memory."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        pass

    def log_array(self, array: np.ndarray, path: str) -> None:
        self.arrays[path] = np.asarray(array)


def test_raw_example_pixels_feed_the_example_explainer_0_255_and_leave_saliency_alone() -> None:
    """``example_pixels=raw`` (the reference's DkNN inputs): the example importance is DkNN's
    on 255 x the images, the saliency is unchanged."""
    torch.manual_seed(0)
    encoder = EncoderMnist(4).eval()
    images = torch.rand(30, 1, 28, 28)
    labels = torch.arange(30) % 10
    train = Split(images[:20], labels[:20])
    data = pretext._Explained(train, train, train, Split(images[20:], labels[20:]))
    results = {}
    for pixels in ("unit", "raw"):
        config = _settings(example_attr_method="DKNN", example_pixels=pixels)
        results[pixels] = pretext._explanations(
            MNIST, config, _Arrays(), data, encoder, encoder, torch.device("cpu")
        )
    codes_train, codes_test = encoder(255 * images[:20]), encoder(255 * images[20:])
    expected = 1 / torch.cdist(codes_test, codes_train).pow(2)
    np.testing.assert_allclose(results["raw"][1], expected.detach().numpy(), rtol=1e-4)
    assert not np.allclose(results["unit"][1], results["raw"][1], rtol=1e-2)
    np.testing.assert_array_equal(results["unit"][0], results["raw"][0])


def test_registered_names_encode_dataset_task_and_latent_size() -> None:
    assert pretext_models.model_name(MNIST, "denoising", 4) == "lfxai-mnist-denoising-ae-d4"
    assert pretext_models.model_name(MNIST, "classification", 4) == "lfxai-mnist-classification-d4"
    assert pretext_models.model_name(MNIST, "scae", 3456) == "lfxai-mnist-scae-d3456"


def _register(
    tracker: Tracker, name: str, alias: str | None = None, experiment: str = "pretext"
) -> str:
    """A version of ``name`` tagged as ``experiment``'s (as register_encoder tags it)."""
    model = build_model("mnist_ae", ModelSpec(4, (1, 28, 28)))
    uri = tracker.log_encoder_model(model, torch.rand(2, 1, 28, 28), name)
    version = uri.rsplit("/", 1)[1]
    tracker.client.set_model_version_tag(name, version, "lfxai.experiment", experiment)
    if alias:
        tracker.client.set_registered_model_alias(name, alias, version)
    return uri


def test_reuse_resolves_versions_and_names_what_is_missing(mlflow_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = _settings(tasks="reconstruction,denoising", pretrained="true", n_runs="2")
    dim_latent = {"reconstruction": 4, "denoising": 4}
    with mlflow.start_run() as run:
        tracker = Tracker(run.info.run_id)
        with pytest.raises(ConfigError, match=r"no registered model 'lfxai-mnist-reconstruction"):
            resolve(tracker, MNIST, config, dim_latent)
        for task in dim_latent:
            for _ in range(2):
                _register(tracker, pretext_models.model_name(MNIST, task, 4), "smoke")
        # The newest denoising version is consistency_features': `latest` skips it.
        _register(tracker, "lfxai-mnist-denoising-ae-d4", experiment="consistency_features")
        uris = resolve(tracker, MNIST, config, dim_latent)
        assert uris == [
            {t: f"models:/lfxai-mnist-{t}-ae-d4/{v}" for t in dim_latent} for v in ("2", "1")
        ]  # latest: run r reuses the r-th newest version pretext trained
        one = resolve(tracker, MNIST, _settings(**_reuse(pretrained_version="1")), dim_latent)
        assert [u["denoising"] for u in one] == ["models:/lfxai-mnist-denoising-ae-d4/1"] * 2
        alias = resolve(tracker, MNIST, _settings(**_reuse(pretrained_version="smoke")), dim_latent)
        assert alias[0]["reconstruction"] == "models:/lfxai-mnist-reconstruction-ae-d4/2"
        with pytest.raises(ConfigError, match=r"has 2; pass n_runs=2"):
            resolve(tracker, MNIST, _settings(**_reuse(n_runs="3")), dim_latent)
        nine = r"reconstruction-ae-d4' has no version 9; valid: \['2', '1'\]"
        with pytest.raises(ConfigError, match=nine):
            resolve(tracker, MNIST, _settings(**_reuse(pretrained_version="9")), dim_latent)
        with pytest.raises(ConfigError, match=r"no alias 'paper'; valid aliases: \['smoke'\]"):
            resolve(tracker, MNIST, _settings(**_reuse(pretrained_version="paper")), dim_latent)
        example = torch.rand(1, 1, 28, 28)
        encoder = pretext_models.load_encoder(uris[0]["denoising"], example, 4)
        assert encoder(example).shape == (1, 4)
        with pytest.raises(ConfigError, match=r"incompatible: its codes have shape \(4,\)"):
            pretext_models.load_encoder(uris[0]["denoising"], example, 3456)
        with pytest.raises(ConfigError, match=r"does not accept inputs of shape \(3, 28, 28\)"):
            pretext_models.load_encoder(uris[0]["denoising"], torch.rand(1, 3, 28, 28), 4)


def _reuse(**overrides: str) -> dict[str, str]:
    return {"tasks": "reconstruction,denoising", "pretrained": "true", "n_runs": "2", **overrides}


@pytest.mark.data
def test_reuse_without_registered_models_fails_the_run_before_any_work(
    mlflow_store, data_dir, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["--name", "pretext", "--profile", "smoke", "--data_dir", str(data_dir)]
    assert main("mnist", [*argv, "--pretrained", "true"]) == EXIT_BAD_INPUT
    assert "no registered model 'lfxai-mnist-reconstruction-ae-d4'" in capsys.readouterr().err
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FAILED"
    assert "no registered model" in run.data.tags["lfxai.error"]
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert artifacts == {"config.yaml"}  # no half-written results
