"""The consistency experiments end to end in-process, on generated digits (seconds each).

``main("synthetic", argv)`` is what ``mlflow run . -e mnist`` calls, on MNIST's settings and a
generated data set (:mod:`tests.synthetic`); the store is read back as a user would.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lfxai.cli.experiment import main
from lfxai.experiments import consistency_examples, pretext, roar_test
from lfxai.experiments.common import split_digest, tracked_fit
from lfxai.experiments.consistency_examples import balanced_subset
from lfxai.models.scae import rmsprop_eps
from tests.helpers import spy, spy_named
from tests.synthetic import SyntheticDigits, digits, use_synthetic

SMALL = ["--profile", "smoke", "--n_train", "100", "--n_test", "30", "--dim_latent", "3"]


def _argv(experiment: str, data: Path, settings: dict[str, str]) -> list[str]:
    """The command line of a small smoke run of ``experiment`` on the generated digits."""
    argv = ["--name", experiment, "--data_dir", str(data), *SMALL]
    return argv + [item for key, value in settings.items() for item in (f"--{key}", value)]


def _runs(experiment: str) -> list[Run]:
    """The top-level runs of ``experiment``, oldest first."""
    runs = mlflow.search_runs(
        search_all_experiments=True, output_format="list", order_by=["attributes.start_time"]
    )
    return [
        r
        for r in runs
        if r.data.tags.get("lfxai.experiment") == experiment
        and "mlflow.parentRunId" not in r.data.tags
    ]


def _array(run: Run, path: str, folder: Path) -> np.ndarray:
    return np.load(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path=path, dst_path=str(folder)
        )
    )


def _curve(run: Run, key: str) -> dict[int, float]:
    return {m.step: m.value for m in MlflowClient().get_metric_history(run.info.run_id, key)}


def test_consistency_features_trains_registers_then_reuses_its_encoder(
    mlflow_store, monkeypatch, tmp_path
) -> None:
    settings = {"feature_methods": "Saliency,Random", "perturbation_percentages": "20,100"}
    settings["attribution_batch_size"] = "15"
    argv = _argv("consistency_features", use_synthetic(monkeypatch, tmp_path), settings)
    assert main("synthetic", argv) == 0
    assert main("synthetic", [*argv, "--pretrained", "true"]) == 0
    trained, reused = _runs("consistency_features")
    for run in (trained, reused):
        assert run.info.status == "FINISHED"
        assert run.data.params["n_train_used"] == "100" and run.data.params["n_test_used"] == "30"
        # At 100 % every pixel is black whatever the ranking: one shift for every method.
        shifts = [_curve(run, f"representation_shift/{m}") for m in ("Saliency", "Random")]
        assert [sorted(s) for s in shifts] == [[20, 100], [20, 100]]
        assert shifts[0][100] == pytest.approx(shifts[1][100], rel=1e-6)
        for method, curve in zip(("Saliency", "Random"), shifts, strict=True):
            mean = run.data.metrics[f"representation_shift_mean/{method}"]
            assert mean == pytest.approx(np.mean(list(curve.values())), rel=1e-6)
    metrics = trained.data.metrics
    assert metrics["fit/epochs"] == 1 and metrics["fit/best_epoch"] == 0
    assert metrics["fit/best_test_loss"] == metrics["fit/test_loss"]
    name = "lfxai-synthetic-denoising-ae-d3"
    assert trained.data.tags["lfxai.encoder_uri"] == f"models:/{name}/1"
    version = MlflowClient().get_model_version_by_alias(name, "consistency_features-smoke")
    assert int(version.version) == 1 and version.run_id == trained.info.run_id
    assert sorted(version.aliases) == ["consistency_features-smoke", "smoke"]
    assert version.description.endswith(
        f"Test loss {metrics['fit/best_test_loss']:.6f}; data digest "
        f"{trained.data.tags['lfxai.data_digest']}; trained on synthetic split 'standard', "
        "n_epochs=1, seed=42."
    )
    assert reused.data.tags["lfxai.pretrained"] == f"models:/{name}/1"
    assert not [k for k in reused.data.metrics if k.startswith("fit/")]  # nothing trained
    # The reused encoder is the trained one: the same codes of the same explained examples.
    np.testing.assert_array_equal(
        _array(trained, "codes/test.npy", tmp_path / "a"),
        _array(reused, "codes/test.npy", tmp_path / "b"),
    )


def test_consistency_examples_scores_its_balanced_subsets(
    mlflow_store, monkeypatch, tmp_path
) -> None:
    curves = spy_named(monkeypatch, consistency_examples, "method_curves")
    settings = {"example_methods": "TracIn,DKNN", "similarity_percentages": "10,50"}
    settings |= {"n_train_explained": "20", "n_test_explained": "10", "register_model": "false"}
    argv = _argv("consistency_examples", use_synthetic(monkeypatch, tmp_path), settings)
    assert main("synthetic", argv) == 0
    (run,) = _runs("consistency_examples")
    assert run.info.status == "FINISHED"
    seconds = (run.info.end_time - run.info.start_time) / 1000
    for method in ("TracIn", "DKNN"):  # each explainer's own time, a part of the run's
        assert 0 < run.data.metrics[f"time/explainer_seconds/{method}"] < seconds
    (call,) = curves  # the plot: top (solid) and bottom (dashed) rates per method
    assert (call["x"], call["y"], call["style"]) == ("pct_examples", "similarity_rate", "type")
    assert set(call["frame"].type) == {"top", "bottom"}
    assert (call["xlabel"], call["ylabel"], call["title"]) == (
        "% most (solid) / least (dashed) important train examples",
        "similarity rate",
        "Synthetic digits denoising AE (d=3)",
    )
    # Not registered: the encoder is a logged model of the run only.
    assert run.data.tags["lfxai.encoder_uri"].startswith("models:/m-")
    assert MlflowClient().search_registered_models() == []
    # TracIn's checkpoints: one per epoch (checkpoint_every=1, n_epochs=2).
    checkpoints = MlflowClient().list_artifacts(run.info.run_id, "checkpoints")
    assert len(checkpoints) == 2
    # The subsets: class-balanced training examples, then random test examples, both from
    # the run's seeded generator (seed 42), in that order.
    train, test = digits(200, seed=1).head(100), digits(60, seed=2).head(30)
    generator = torch.Generator().manual_seed(42)
    train_idx = balanced_subset(train.y, 20, generator)
    test_idx = torch.randperm(30, generator=generator)[:10]
    np.testing.assert_array_equal(_array(run, "subsets/train_idx.npy", tmp_path), train_idx)
    np.testing.assert_array_equal(_array(run, "subsets/test_idx.npy", tmp_path), test_idx)
    scores = {m: _array(run, f"example_importance/{m}.npy", tmp_path) for m in ("TracIn", "DKNN")}
    assert {s.shape for s in scores.values()} == {(10, 20)}
    # TracIn's scores have no ties: each rate is the share of the top (bottom) k% training
    # examples with the test example's label, averaged over the test examples.
    tracin = torch.from_numpy(scores["TracIn"])
    for kind, largest in (("top", True), ("bottom", False)):
        curve = _curve(run, f"similarity_rate/TracIn/{kind}")
        assert sorted(curve) == [10, 50]
        for pct, k in ((10, 2), (50, 10)):
            picked = train.y[train_idx][tracin.topk(k, dim=1, largest=largest).indices]
            rate = (picked == test.y[test_idx][:, None]).float().mean().item()
            assert curve[pct] == pytest.approx(rate), (kind, pct)
    for method in scores:  # the summary: the top rate at the smallest k
        top = _curve(run, f"similarity_rate/{method}/top")[10]
        assert run.data.metrics[f"similarity_rate_top_min_pct/{method}"] == pytest.approx(top)
    assert run.data.metrics["similarity_rate_top_min_pct/DKNN"] > 0.9  # a bar's class is found


def test_roar_test_logs_each_retraining_and_the_summary(
    mlflow_store, monkeypatch, tmp_path
) -> None:
    built = spy_named(monkeypatch, roar_test, "new_model")
    methods = spy_named(monkeypatch, roar_test, "make_feature_method")
    attributed = spy_named(monkeypatch, roar_test, "attribute_auxiliary")
    settings = {"feature_methods": "Saliency,Random", "remove_percentages": "50,100"}
    settings |= {"register_model": "false", "batch_size": "50"}
    assert (
        main("synthetic", _argv("roar_test", use_synthetic(monkeypatch, tmp_path), settings)) == 0
    )
    # Each model's name (stored with a logged encoder's spec): the initial weights', the
    # base model's, then one per retraining.
    assert [call["name"] for call in built] == [
        "roar_test_initial",
        "roar_test_base",
        *(f"roar_{method}_{k}" for method in ("Saliency", "Random") for k in (50, 100)),
    ]
    (parent,) = _runs("roar_test")
    metrics, tags = parent.data.metrics, parent.data.tags
    base = metrics["roar/base_test_loss"]
    assert base == metrics["fit/best_test_loss"] and tags["lfxai.roar_test.base_test_loss"] == repr(
        base
    )
    children = MlflowClient().search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    nested = {
        (r.data.tags["lfxai.roar_test.method"], r.data.tags["lfxai.roar_test.k"]): r
        for r in children
    }
    assert sorted(nested) == [
        ("Random", "100"),
        ("Random", "50"),
        ("Saliency", "100"),
        ("Saliency", "50"),
    ]
    # Each method explains the base encoder with the run's seed, the plugin's black image as
    # baseline, every training image in order; its time and throughput are logged.
    assert [(c["name"], c["seed"]) for c in methods] == [("Saliency", 42), ("Random", 42)]
    for method, call in zip(("Saliency", "Random"), attributed, strict=True):
        assert call["encoder"] is methods[0]["forward_func"] and call["device"].type == "cpu"
        assert call["baseline"].shape == (1, 1, 28, 28) and not call["baseline"].any()
        assert torch.equal(torch.cat([x for x, _ in call["data_loader"]]), digits(200, 1).x[:100])
        seconds = metrics[f"time/attribution_seconds/{method}"]
        assert 0 < seconds < (parent.info.end_time - parent.info.start_time) / 1000
        assert metrics[f"throughput/{method}_images_per_second"] == pytest.approx(100 / seconds)
    plugin = SyntheticDigits()
    config = SimpleNamespace(
        data_dir=parent.data.params["config.data_dir"], split="standard", seed=42
    )
    losses = {}
    for (method, k), run in nested.items():
        assert run.info.status == "FINISHED" and run.info.run_name == f"{method}-{k}"
        # Each retraining's data: its own digest of the masked training set, the test split's.
        digests = {
            d.dataset.name: (d.dataset.digest, {t.key: t.value for t in d.tags})
            for d in run.inputs.dataset_inputs
        }
        assert digests == {
            f"synthetic-standard-train-without-top{k}-{method}": (
                split_digest(plugin, config, f"train-{method}-{k}", 100),
                {"mlflow.data.context": "train"},
            ),
            "synthetic-standard-test": (
                split_digest(plugin, config, "test", 30),
                {"mlflow.data.context": "test"},
            ),
        }
        assert run.data.params == {
            "method": method,
            "k": k,
            "n_pixels_removed": str(784 * int(k) // 100),
        }
        inputs = sorted(d.dataset.name for d in run.inputs.dataset_inputs)
        assert inputs == [
            "synthetic-standard-test",
            f"synthetic-standard-train-without-top{k}-{method}",
        ]
        losses[method, int(k)] = run.data.metrics["roar/test_loss"]
    for method in ("Saliency", "Random"):  # the curve: the base loss at 0, then each retraining
        assert _curve(parent, f"roar/test_loss/{method}") == pytest.approx(
            {0: base, 50: losses[method, 50], 100: losses[method, 100]}
        )
        mean = (losses[method, 50] + losses[method, 100]) / 2
        assert metrics[f"roar/test_loss_mean/{method}"] == pytest.approx(mean)
        assert metrics[f"time/retraining_seconds/{method}"] > 0
    excess = (losses["Saliency", 50] - losses["Random", 50]) / 2  # equal at 100 %: all removed
    assert metrics["roar/excess_over_random/Saliency"] == pytest.approx(excess)
    assert "roar/excess_over_random/Random" not in metrics
    table = mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/roar_test.csv").splitlines()
    assert table[0] == "method,pct_removed,test_loss,run_id" and len(table) == 1 + 6


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
    argv = _argv("pretext", use_synthetic(monkeypatch, tmp_path), settings)
    assert main("synthetic", argv) == 0
    reuse = ["--pretrained", "true", "--pretrained_version", "1"]
    assert main("synthetic", [*argv, *reuse]) == 0
    trained, reused = _runs("pretext")
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
            logged = _array(parent, f"subsets/run{run}/train_idx.npy", tmp_path)
            np.testing.assert_array_equal(logged, train_idx)
            logged = _array(parent, f"subsets/run{run}/test_idx.npy", tmp_path)
            np.testing.assert_array_equal(logged, test_idx)
            # The per-run correlation is the one between the tasks' logged explanations.
            runs = [children[f"run{run}-{t}"] for t in tasks]
            saliency = [
                _array(r, "attributions/Saliency.npy", tmp_path / r.info.run_id) for r in runs
            ]
            assert saliency[0].shape == (10, 1, 28, 28) and (saliency[0] >= 0).all()
            pearson = np.corrcoef(saliency[0].ravel(), saliency[1].ravel())[0, 1]
            metric = _curve(parent, "per_run/features/pearson/off_diagonal_mean")[run]
            assert metric == pytest.approx(pearson, abs=1e-5)
            dknn = _array(runs[0], "example_importance/DKNN.npy", tmp_path / "e")
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
                runs = _array(parent, f"correlations/{explanation}_{correlation}.npy", folder)
                assert runs.shape == (2, 2, 2)
                curve = _curve(parent, f"per_run/{explanation}/{correlation}/off_diagonal_mean")
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
        curves = [_curve(parent, f"per_run/{key}") for parent in (trained, reused)]
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
    assert main("synthetic", _argv("pretext", use_synthetic(monkeypatch, tmp_path), settings)) == 0
    assert MlflowClient().search_registered_models() == []
    (parent,) = _runs("pretext")
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
    argv = _argv("pretext", use_synthetic(monkeypatch, tmp_path), settings)
    assert main("synthetic", argv) == 2
    (run,) = _runs("pretext")
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
    assert main("synthetic", _argv("pretext", data, settings)) == 0
    (parent,) = _runs("pretext")
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
