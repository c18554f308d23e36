"""The consistency experiments and ROAR end to end in-process, on generated digits (seconds
each).

``main("synthetic", argv)`` is what ``mlflow run . -e mnist`` calls, on MNIST's settings and a
generated data set (:mod:`tests.synthetic`); the store is read back as a user would.
"""

from __future__ import annotations

from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from lfxai.cli.experiment import main
from lfxai.experiments import consistency_examples, roar_retraining, roar_test
from lfxai.experiments.common import split_digest
from lfxai.experiments.consistency_examples import balanced_subset
from lfxai.tracking import Tracker
from tests.experiments.runs import logged_array, metric_curve, small_argv, top_runs
from tests.helpers import spy_named
from tests.synthetic import SyntheticDigits, digits, use_synthetic


def test_consistency_features_trains_registers_then_reuses_its_encoder(
    mlflow_store, monkeypatch, tmp_path
) -> None:
    settings = {"feature_methods": "Saliency,Random", "perturbation_percentages": "20,100"}
    settings["attribution_batch_size"] = "15"
    argv = small_argv("consistency_features", use_synthetic(monkeypatch, tmp_path), settings)
    assert main("synthetic", argv) == 0
    assert main("synthetic", [*argv, "--pretrained", "true"]) == 0
    trained, reused = top_runs("consistency_features")
    for run in (trained, reused):
        assert run.info.status == "FINISHED"
        assert run.data.params["n_train_used"] == "100" and run.data.params["n_test_used"] == "30"
        # At 100 % every pixel is black whatever the ranking: one shift for every method.
        shifts = [metric_curve(run, f"representation_shift/{m}") for m in ("Saliency", "Random")]
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
        logged_array(trained, "codes/test.npy", tmp_path / "a"),
        logged_array(reused, "codes/test.npy", tmp_path / "b"),
    )


def test_consistency_examples_scores_its_balanced_subsets(
    mlflow_store, monkeypatch, tmp_path
) -> None:
    curves = spy_named(monkeypatch, consistency_examples, "method_curves")
    settings = {"example_methods": "TracIn,DKNN", "similarity_percentages": "10,50"}
    settings |= {"n_train_explained": "20", "n_test_explained": "10", "register_model": "false"}
    argv = small_argv("consistency_examples", use_synthetic(monkeypatch, tmp_path), settings)
    assert main("synthetic", argv) == 0
    (run,) = top_runs("consistency_examples")
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
    np.testing.assert_array_equal(logged_array(run, "subsets/train_idx.npy", tmp_path), train_idx)
    np.testing.assert_array_equal(logged_array(run, "subsets/test_idx.npy", tmp_path), test_idx)
    scores = {
        m: logged_array(run, f"example_importance/{m}.npy", tmp_path) for m in ("TracIn", "DKNN")
    }
    assert {s.shape for s in scores.values()} == {(10, 20)}
    # TracIn's scores have no ties: each rate is the share of the top (bottom) k% training
    # examples with the test example's label, averaged over the test examples.
    tracin = torch.from_numpy(scores["TracIn"])
    for kind, largest in (("top", True), ("bottom", False)):
        curve = metric_curve(run, f"similarity_rate/TracIn/{kind}")
        assert sorted(curve) == [10, 50]
        for pct, k in ((10, 2), (50, 10)):
            picked = train.y[train_idx][tracin.topk(k, dim=1, largest=largest).indices]
            rate = (picked == test.y[test_idx][:, None]).float().mean().item()
            assert curve[pct] == pytest.approx(rate), (kind, pct)
    for method in scores:  # the summary: the top rate at the smallest k
        top = metric_curve(run, f"similarity_rate/{method}/top")[10]
        assert run.data.metrics[f"similarity_rate_top_min_pct/{method}"] == pytest.approx(top)
    assert run.data.metrics["similarity_rate_top_min_pct/DKNN"] > 0.9  # a bar's class is found


def test_roar_test_logs_each_retraining_and_the_summary(
    mlflow_store, monkeypatch, tmp_path
) -> None:
    built = spy_named(monkeypatch, roar_retraining, "new_model")
    methods = spy_named(monkeypatch, roar_test, "make_feature_method")
    attributed = spy_named(monkeypatch, roar_test, "attribute_auxiliary")
    settings = {"feature_methods": "Saliency,Random", "remove_percentages": "50,100"}
    settings |= {"register_model": "false", "batch_size": "50"}
    assert (
        main("synthetic", small_argv("roar_test", use_synthetic(monkeypatch, tmp_path), settings))
        == 0
    )
    # Each model's name (stored with a logged encoder's spec): the initial weights', the
    # base model's, then one per retraining: Random's first (they train beside the base
    # model: Random needs none), then Saliency's.
    assert [call["name"] for call in built] == [
        "roar_test_initial",
        "roar_test_base",
        *(f"roar_{method}_{k}" for method in ("Random", "Saliency") for k in (50, 100)),
    ]
    (parent,) = top_runs("roar_test")
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
    # Random draws its scores without a model, before the base model is trained; Saliency
    # explains the base encoder. Each with the run's seed, the plugin's black image as
    # baseline, every training image in order; its time and throughput are logged.
    assert [(c["name"], c["seed"]) for c in methods] == [("Random", 42), ("Saliency", 42)]
    assert isinstance(attributed[0]["encoder"], torch.nn.Identity)
    weights = Tracker(parent.info.run_id).load_state_dict(roar_test.BASE_WEIGHTS)
    explained = attributed[1]["encoder"].state_dict()
    assert explained and all(torch.equal(v, weights[f"encoder.{k}"]) for k, v in explained.items())
    for method, call, made in zip(("Random", "Saliency"), attributed, methods, strict=True):
        assert call["encoder"] is made["forward_func"] and call["device"].type == "cpu"
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
        assert metric_curve(parent, f"roar/test_loss/{method}") == pytest.approx(
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
