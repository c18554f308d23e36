"""The pretext experiment end to end in-process, on generated digits (seconds each): its
correlations per run, registered models and their reuse, the SCAE's own training, and the
explainers' settings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lfxai.cli.experiment import main
from lfxai.experiments import pretext
from lfxai.experiments.common import tracked_fit
from lfxai.experiments.consistency_examples import balanced_subset
from lfxai.models.scae import rmsprop_eps
from tests.experiments.runs import logged_array, metric_curve, small_argv, top_runs
from tests.helpers import spy, spy_named
from tests.synthetic import digits, use_synthetic


def _children(parent: Run) -> dict[str, Run]:
    """``parent``'s nested runs by run name."""
    runs = MlflowClient().search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    return {r.info.run_name: r for r in runs}


def test_pretext_correlates_its_tasks_per_run_then_reuses_a_registered_version(
    mlflow_store, monkeypatch, tmp_path
) -> None:
    heatmaps = spy(monkeypatch, pretext, "correlation_heatmaps")  # per invocation
    settings = {"tasks": "reconstruction,classification", "n_runs": "2", "n_plots": "3"}
    settings |= {"n_train_explained": "20", "n_test_explained": "10"}
    argv = small_argv("pretext", use_synthetic(monkeypatch, tmp_path), settings)
    assert main("synthetic", argv) == 0
    reuse = ["--pretrained", "true", "--pretrained_version", "1"]
    assert main("synthetic", [*argv, *reuse]) == 0
    trained, reused = top_runs("pretext")
    client = MlflowClient()
    tasks = ("reconstruction", "classification")
    names = {"reconstruction": "lfxai-synthetic-reconstruction-ae-d3"}
    names["classification"] = "lfxai-synthetic-classification-d3"
    what = {"reconstruction": "reconstruction AE", "classification": "Classification model"}
    for task in tasks:  # one version per training run, none added by reuse
        versions = client.search_model_versions(f"name = '{names[task]}'")
        assert sorted(int(v.version) for v in versions) == [1, 2]
        about = client.get_registered_model(names[task]).description
        assert about.startswith(
            f"Encoder of the Synthetic digits {what[task]}: inputs (N, 1, 28, 28) to codes "
            "(N, 3), registered by lfxai's experiments."
        )
        assert f"`lfxai.load_encoder('models:/{names[task]}@paper')`" in about
        first = client.get_model_version(names[task], "1")
        assert first.tags["lfxai.pretext"] == task and first.tags["lfxai.dim_latent"] == "3"
        assert first.tags["lfxai.run_name"] == f"run0-{task}"
        assert first.description.endswith(
            f"; pretext task {task.capitalize()}, n_epochs=1, seed=42."
        )
    train = digits(200, seed=1).head(100)
    for parent in (trained, reused):
        assert parent.info.status == "FINISHED"
        children = _children(parent)
        assert sorted(children) == sorted(f"run{r}-{t}" for r in (0, 1) for t in tasks)
        for run in (0, 1):
            # Each run explains its own subsets, drawn from the seed + run.
            generator = torch.Generator().manual_seed(42 + run)
            train_idx = balanced_subset(train.y, 20, generator)
            test_idx = torch.randperm(30, generator=generator)[:10]
            logged = logged_array(parent, f"subsets/run{run}/train_idx.npy", tmp_path)
            np.testing.assert_array_equal(logged, train_idx)
            logged = logged_array(parent, f"subsets/run{run}/test_idx.npy", tmp_path)
            np.testing.assert_array_equal(logged, test_idx)
            # The per-run correlation is the one between the tasks' logged explanations.
            runs = [children[f"run{run}-{t}"] for t in tasks]
            saliency = [
                logged_array(r, "attributions/Saliency.npy", tmp_path / r.info.run_id) for r in runs
            ]
            assert saliency[0].shape == (10, 1, 28, 28) and (saliency[0] >= 0).all()
            pearson = np.corrcoef(saliency[0].ravel(), saliency[1].ravel())[0, 1]
            metric = metric_curve(parent, "per_run/features/pearson/off_diagonal_mean")[run]
            assert metric == pytest.approx(pearson, abs=1e-5)
            dknn = logged_array(runs[0], "example_importance/DKNN.npy", tmp_path / "e")
            assert dknn.shape == (10, 20)
        model = {"reconstruction": "mnist_ae", "classification": "mnist_classifier"}
        for run in (0, 1):
            for task in tasks:
                child = children[f"run{run}-{task}"]
                tags = child.data.tags
                assert (tags["lfxai.pretext.task"], tags["lfxai.pretext.run"]) == (task, str(run))
                params = {k: v for k, v in child.data.params.items() if k != "model_uri"}
                source = "registry" if parent is reused else "trained"
                assert params == {
                    "task": task,
                    "run": str(run),
                    "model": model[task],
                    "source": source,
                }
        models = pd.read_csv(client.download_artifacts(parent.info.run_id, "pretext_models.csv"))
        assert list(models.run) == [0, 0, 1, 1] and list(models.task) == list(tasks) * 2
        for row in models.itertuples():  # each nested run names the encoder it explained
            child = children[f"run{row.run}-{row.task}"]
            assert child.data.tags["lfxai.encoder_uri"] == row.model_uri
        # The per-run correlation matrices (runs, tasks, tasks), logged and drawn as their
        # mean and std over runs.
        folder = tmp_path / f"correlations-{parent.info.run_id}"
        panels, labels, title = heatmaps[0 if parent is trained else 1]
        assert (labels, title) == (
            ["Reconstruction", "Classification"],
            "Correlation between pretext tasks",
        )
        kinds = {"features": "feature importance", "examples": "example importance"}
        for explanation in ("features", "examples"):
            for correlation in ("pearson", "spearman"):
                runs = logged_array(parent, f"correlations/{explanation}_{correlation}.npy", folder)
                assert runs.shape == (2, 2, 2)
                curve = metric_curve(
                    parent, f"per_run/{explanation}/{correlation}/off_diagonal_mean"
                )
                np.testing.assert_allclose(runs[:, 0, 1], [curve[0], curve[1]], rtol=1e-5)
                mean, std = panels[f"{kinds[explanation]}, {correlation.capitalize()}"]
                np.testing.assert_allclose(mean, runs.mean(0), rtol=1e-6)
                np.testing.assert_allclose(std, runs.std(0), rtol=1e-6, atol=1e-9)
        assert parent.data.tags["lfxai.pretext.models_used"] == " ".join(models.model_uri)
        artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
        figures = {f"pretext_{f}.png" for f in ("saliency", "top_examples", "correlations")}
        tables = {"pretext_correlations.csv", "pretext_correlations.tex", "claims.md"}
        assert figures | tables <= artifacts
    # Training registered run r's encoders as version r + 1; version 1 is run 0's encoders.
    uris = pd.read_csv(client.download_artifacts(trained.info.run_id, "pretext_models.csv"))
    assert list(uris.model_uri) == [f"models:/{names[t]}/{v}" for v in (1, 2) for t in tasks]
    uris = pd.read_csv(client.download_artifacts(reused.info.run_id, "pretext_models.csv"))
    assert list(uris.model_uri) == [f"models:/{names[t]}/1" for _ in (0, 1) for t in tasks]
    assert list(uris.reused) == [True] * 4
    for key in ("features/pearson/off_diagonal_mean", "examples/spearman/off_diagonal_mean"):
        curves = [metric_curve(parent, f"per_run/{key}") for parent in (trained, reused)]
        # Run 0 reused run 0's encoders on run 0's subsets: the same explanations.
        assert curves[1][0] == pytest.approx(curves[0][0], abs=1e-6)
        for parent, curve in zip((trained, reused), curves, strict=True):  # 2 tasks: 1 pair
            assert parent.data.metrics[key] == pytest.approx(np.mean([curve[0], curve[1]]))
    assert curves[1][1] != pytest.approx(curves[0][1], abs=1e-6)  # run 1: other encoders


def test_pretext_trains_the_scae_on_its_own_subset_with_checkpoints_for_tracin(
    mlflow_store, monkeypatch, tmp_path
) -> None:
    """The SCAE trains on the first ``scae_n_train`` examples with its batch size's RMSprop
    eps; TracIn's checkpoints go to a scratch folder removed after; nothing is registered
    with ``register_model=false``."""
    fits = {}

    def recorded(model, training, device, tracker, train, test, checkpoint_dir):
        fitted = tracked_fit(
            model, training, device, tracker, train, test, checkpoint_dir=checkpoint_dir
        )
        task = tracker.tags()["lfxai.pretext.task"]
        kept = sorted(p.name for p in Path(checkpoint_dir).iterdir())
        fits[task] = (model, training, len(train), Path(checkpoint_dir), kept)
        return fitted

    monkeypatch.setattr(pretext, "tracked_fit", recorded)
    settings = {"tasks": "reconstruction,scae", "n_runs": "1", "example_attr_method": "TracIn"}
    settings |= {"n_train_explained": "20", "n_test_explained": "10", "scae_n_train": "40"}
    settings |= {"n_epochs": "2", "scae_n_epochs": "2", "register_model": "false"}
    assert (
        main("synthetic", small_argv("pretext", use_synthetic(monkeypatch, tmp_path), settings))
        == 0
    )
    assert MlflowClient().search_registered_models() == []
    (parent,) = top_runs("pretext")
    uris = pd.read_csv(MlflowClient().download_artifacts(parent.info.run_id, "pretext_models.csv"))
    assert all(uri.startswith("models:/m-") for uri in uris.model_uri)  # logged only
    scae, training, n_train, folder, kept = fits["scae"]
    assert n_train == 40 and fits["reconstruction"][2] == 100
    assert scae.optimizer_options == {"eps": rmsprop_eps(100)}  # smoke's scae_batch_size
    assert not hasattr(fits["reconstruction"][0], "optimizer_options")  # Adam as configured
    # The SCAE's own training block: the profile's scae_* settings size it.
    params = {k.removeprefix("config."): v for k, v in parent.data.params.items()}
    assert (
        (training.lr, training.batch_size)
        == (1e-5, 100)
        == (
            float(params["scae_lr"]),
            int(params["scae_batch_size"]),
        )
    )
    assert (training.n_epochs, training.patience) == (2, int(params["scae_patience"]))
    recon = fits["reconstruction"][1]
    assert (recon.lr, recon.batch_size) == (float(params["lr"]), int(params["batch_size"]))
    for _, training, _, folder, kept in fits.values():  # one checkpoint per epoch, then gone
        assert training.checkpoint_every == 1 and len(kept) == 2 and not folder.exists()


def test_pretext_reuse_of_an_unregistered_task_names_the_data_set_s_models(
    mlflow_store, monkeypatch, tmp_path
) -> None:
    client = MlflowClient()
    for name in ("lfxai-synthetic-other-d3", "lfxai-mnist-reconstruction-ae-d3"):
        client.create_registered_model(name)  # no version needed to be listed
    settings = {"tasks": "reconstruction,classification", "pretrained": "true"}
    argv = small_argv("pretext", use_synthetic(monkeypatch, tmp_path), settings)
    assert main("synthetic", argv) == 2
    (run,) = top_runs("pretext")
    assert run.data.tags["lfxai.error"] == (
        "ConfigError: pretrained=true but no registered model "
        "'lfxai-synthetic-reconstruction-ae-d3' (task reconstruction); train it first with "
        "pretrained=false. Registered lfxai models: ['lfxai-synthetic-other-d3']"
    )


def test_pretext_explains_on_the_chosen_pixel_scale_with_the_run_s_seed_and_baseline(
    mlflow_store, monkeypatch, tmp_path
) -> None:
    """GradientShap gets the run's seed and the plugin's baseline; with ``example_pixels=raw``
    InfluenceFunctions sees every input (its Hessian batches' training split too) times 255."""
    methods = spy_named(monkeypatch, pretext, "make_feature_method")
    saliency = spy(monkeypatch, pretext, "attribute_auxiliary")
    scaled = spy(monkeypatch, pretext, "scaled_inputs")
    explainers = spy_named(monkeypatch, pretext, "build_explainer")
    settings = {"tasks": "reconstruction,denoising", "n_runs": "1", "seed": "7"}
    settings |= {"feature_attr_method": "GradientShap", "example_attr_method": "InfluenceFunctions"}
    settings |= {"example_pixels": "raw", "n_train_explained": "20", "n_test_explained": "10"}
    settings |= {"register_model": "false", "attribution_batch_size": "4"}
    data = use_synthetic(monkeypatch, tmp_path)
    assert main("synthetic", small_argv("pretext", data, settings)) == 0
    (parent,) = top_runs("pretext")
    assert [(m["name"], m["seed"]) for m in methods] == [("GradientShap", 7)] * 2
    for method, call in zip(methods, saliency, strict=True):
        assert call[0] is method["forward_func"] and call[1].batch_size == 4
        assert call[4].shape == (1, 1, 28, 28) and not call[4].any()  # MNIST's black image
    # Per task: the training split (Hessian batches), then the explained train and test sets.
    assert [(len(call[0]), call[1]) for call in scaled] == [
        (100, 255.0),
        (20, 255.0),
        (10, 255.0),
    ] * 2
    for explainer, call in zip(explainers, scaled[::3], strict=True):
        assert (explainer["method"], explainer["seed"]) == ("InfluenceFunctions", 7)
        assert explainer["settings"].example_pixels == "raw"
        assert float(call[0].x.max()) <= 1.0 and torch.equal(explainer["train"].x, call[0].x * 255)
    for task in ("reconstruction", "denoising"):
        (run,) = [
            r for r in _children(parent).values() if r.data.tags["lfxai.pretext.task"] == task
        ]
        assert {"attributions/GradientShap.npy", "example_importance/InfluenceFunctions.npy"} <= {
            f.path
            for folder in ("attributions", "example_importance")
            for f in MlflowClient().list_artifacts(run.info.run_id, folder)
        }
        seconds = (run.info.end_time - run.info.start_time) / 1000  # each phase: a part of it
        times = [
            run.data.metrics[f"time/{kind}_attribution_seconds"] for kind in ("feature", "example")
        ]
        assert all(0 < t < seconds for t in times) and sum(times) < seconds
