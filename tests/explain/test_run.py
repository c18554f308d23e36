"""One explain run in-process (the entry point's ``main``) on generated digits, read back."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
import torch
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lfxai.cli.explain import main
from lfxai.cli.launch import EXIT_BAD_INPUT
from lfxai.data.masking import apply_mask, top_k_mask
from lfxai.experiments.consistency_examples import balanced_subset
from lfxai.explain import pipeline
from lfxai.explain.pipeline import example_explainer
from lfxai.explanations.examples import DKNN
from lfxai.models.registry import ModelSpec, build_model
from lfxai.plotting.examples import top_bottom_examples
from lfxai.tracking import Tracker, load_explained_model
from tests.synthetic import digits, use_synthetic

NAME = "digits-encoder"


@pytest.fixture()
def registered(mlflow_store) -> str:
    """An lfxai MNIST encoder (3 latent units), registered as ``digits-encoder`` v1."""
    torch.manual_seed(0)
    model = build_model("mnist_ae", ModelSpec(3, (1, 28, 28), "reconstruction", "ae")).eval()
    with mlflow.start_run():
        Tracker(mlflow.active_run().info.run_id).log_encoder_model(
            model, torch.rand(2, 1, 28, 28), NAME
        )
    MlflowClient().set_registered_model_alias(NAME, "prod", "1")
    return f"models:/{NAME}@prod"


def _files(client: MlflowClient, run_id: str) -> set[str]:
    files, folders = set(), [None]
    while folders:
        for item in client.list_artifacts(run_id, folders.pop()):
            (folders.append(item.path) if item.is_dir else files.add(item.path))
    return files


def _explain(uri: str, data_dir: Path, *extra: str) -> tuple[int, Run]:
    """``mlflow run . -e explain`` in-process: smoke settings, one method of each family."""
    argv = ["--model_uri", uri, "--dataset", "synthetic", "--profile", "smoke"]
    argv += ["--data_dir", str(data_dir), "--n_train", "200"]
    argv += ["--feature_methods", "Saliency", "--example_methods", "DKNN", *extra]
    code = main(argv)
    (run,) = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string="tags.`lfxai.experiment` = 'explain'",
    )
    return code, run


def test_an_explain_run_logs_both_families_and_their_claims(
    registered, tmp_path, monkeypatch, capsys
) -> None:
    figures = {}  # what the top/bottom figure was asked to draw

    def recorded(*args):
        figures["top_bottom"] = args
        return top_bottom_examples(*args)

    monkeypatch.setattr(pipeline, "top_bottom_examples", recorded)
    code, run = _explain(registered, use_synthetic(monkeypatch, tmp_path))
    assert code == 0 and run.info.status == "FINISHED"
    client = MlflowClient()
    logged = run.data
    methods = {"feature": ("Saliency", "Random"), "example": ("DKNN", "Random")}
    # The summary printed: each method's mean shift and top rate at the smallest k, the codes' size.
    out = capsys.readouterr().out
    assert f"[lfxai] explained {registered} on synthetic in run {run.info.run_id}" in out
    printed = dict(line.strip().split(": ") for line in out.splitlines() if line.startswith("  "))
    final = {k: float(v) for k, v in printed.items()}
    summary = [f"representation_shift_mean/{m}" for m in methods["feature"]]
    summary += [f"similarity_rate_top_min_pct/{m}" for m in methods["example"]]
    assert sorted(final) == sorted([*summary, "dim_latent"]) and final["dim_latent"] == 3
    for key in summary:
        assert final[key] == pytest.approx(logged.metrics[key], rel=1e-5)
    assert logged.params["config.model_uri"] == registered
    assert logged.params["config.n_train"] == "200" and logged.tags["lfxai.dataset"] == "synthetic"
    assert logged.tags["mlflow.runName"].startswith(f"#1 {NAME}@prod smoke ")
    assert "time/total_seconds" in logged.metrics
    assert logged.params["dim_latent"] == "3" and logged.params["n_train_used"] == "200"
    # Random's own rates are no claim: one claim per method against Random.
    claims = sorted(k for k in logged.metrics if k.startswith("claims/holds/"))
    assert claims == [
        "claims/holds/shift_above_random/Saliency",
        "claims/holds/top_above_bottom/DKNN",
    ]
    for method in methods["feature"]:  # the mean over k of the logged curve
        curve = client.get_metric_history(run.info.run_id, f"representation_shift/{method}")
        assert sorted(m.step for m in curve) == [5, 10, 20, 50, 80, 100]
        assert logged.metrics[f"representation_shift_mean/{method}"] == pytest.approx(
            np.mean([m.value for m in curve]), rel=1e-6
        )
    assert logged.metrics["similarity_rate_top_min_pct/DKNN"] == 1.0  # a bar's class is found
    assert logged.tags["lfxai.model.resolved"] == f"models:/{NAME}/1"
    note = logged.tags["mlflow.note.content"]
    assert note.startswith(f"**explain** `{registered}` on **synthetic**, profile `smoke`, run #1")
    assert (
        f"\n### Claims: {NAME}@prod (v1) on Synthetic digits · smoke profile · "
        "registered encoder, not trained here\n"
    ) in note
    assert _files(client, run.info.run_id) == {
        *(f"attributions/{m}.npy" for m in methods["feature"]),
        *(f"example_importance/{m}.npy" for m in methods["example"]),
        "codes/test.npy",
        "subsets/train_idx.npy",
        "subsets/test_idx.npy",
        "claims.json",
        "config.yaml",
        "claims.md",
        "claims_evidence.npz",
        *(
            f"{name}.{ext}"
            for name in (
                "consistency_examples",
                "consistency_features",
                "saliency_examples",
                "top_bottom_examples",
            )
            for ext in ("pdf", "png")
        ),
        "consistency_examples.csv",
        "consistency_features.csv",
    }

    def array(path: str) -> np.ndarray:
        return np.load(client.download_artifacts(run.info.run_id, path, str(tmp_path)))

    # The subsets: class-balanced training examples, then a random draw of the explained
    # ones, both from the run's seeded generator.
    train, test = digits(200, seed=1), digits(60, seed=2)
    generator = torch.Generator().manual_seed(42)  # the smoke seed
    train_idx = balanced_subset(train.y, 40, generator)
    test_idx = torch.randperm(60, generator=generator)[:20]
    np.testing.assert_array_equal(array("subsets/train_idx.npy"), train_idx.numpy())
    np.testing.assert_array_equal(array("subsets/test_idx.npy"), test_idx.numpy())
    encoder = load_explained_model(registered)[0].eval()
    with torch.no_grad():
        codes = encoder(test.x)
    np.testing.assert_allclose(array("codes/test.npy"), codes.numpy(), rtol=1e-4, atol=1e-5)
    scores = {m: array(f"example_importance/{m}.npy") for m in methods["example"]}
    assert {s.shape for s in scores.values()} == {(20, 40)}
    assert array("attributions/Saliency.npy").shape == (60, 1, 28, 28)
    evidence = np.load(
        client.download_artifacts(run.info.run_id, "claims_evidence.npz", str(tmp_path))
    )
    # Each k's shift: the codes' squared distance once the top k% pixels (by the logged
    # attributions) are black, per example in the evidence, averaged in the curve.
    saliency = torch.from_numpy(array("attributions/Saliency.npy"))
    curve = {
        m.step: m.value
        for m in client.get_metric_history(run.info.run_id, "representation_shift/Saliency")
    }
    for pct in (5, 50, 100):
        masked = apply_mask(test.x, top_k_mask(saliency, pct / 100), torch.zeros(1, 1, 28, 28))
        with torch.no_grad():
            shifts = ((encoder(masked) - codes) ** 2).sum(1)
        np.testing.assert_allclose(
            evidence[f"features/Saliency@{pct}"], shifts.numpy(), rtol=1e-3, atol=1e-7
        )
        assert curve[pct] == pytest.approx(shifts.mean().item(), rel=1e-3, abs=1e-7)
    assert {k.split("@")[0] for k in evidence.files} == {
        "features/Saliency",
        "features/Random",
        "examples/DKNN",
        "examples/Random",
    }

    # Similarity rates: of each test example's top (bottom) k% training examples, the share
    # with its label; Random's scores have no ties, so the ranking is unambiguous.
    labels_train, labels_test = train.y[train_idx], test.y[test_idx]
    random = torch.from_numpy(scores["Random"])
    for pct, k in ((5, 2), (50, 20)):
        same = {
            kind: (
                labels_train[random.topk(k, dim=1, largest=largest).indices] == labels_test[:, None]
            )
            .float()
            .mean(1)
            for kind, largest in (("top", True), ("bottom", False))
        }
        for kind, rates in same.items():
            history = client.get_metric_history(run.info.run_id, f"similarity_rate/Random/{kind}")
            assert {m.step: m.value for m in history}[pct] == pytest.approx(rates.mean().item())
            np.testing.assert_allclose(
                evidence[f"examples/Random@{pct}"][int(kind == "bottom")], rates.numpy()
            )
        if pct == 5:  # the smallest k: the run's summary
            assert final["similarity_rate_top_min_pct/Random"] == pytest.approx(
                same["top"].mean().item()
            )

    # The figure: the first 6 test examples beside each method's top and bottom example.
    shown, labels, columns, title = figures["top_bottom"]
    np.testing.assert_array_equal(shown, test.x[test_idx[:6]].numpy())
    np.testing.assert_array_equal(labels, test.y[test_idx[:6]].numpy())
    assert title == f"{NAME}@prod (v1) on Synthetic digits: training examples"
    assert [c[0] for c in columns] == ["DKNN top", "DKNN bottom", "Random top", "Random bottom"]
    for (heading, images, classes), pick in zip(columns, ("argmax", "argmin") * 2, strict=True):
        method = heading.split()[0]
        index = train_idx[getattr(scores[method][:6], pick)(1)]
        np.testing.assert_array_equal(images, train.x[index].numpy())
        np.testing.assert_array_equal(classes, train.y[index].numpy())


def test_a_loss_method_is_refused_before_any_data_is_read(
    registered, tmp_path, monkeypatch
) -> None:
    data = use_synthetic(monkeypatch, tmp_path)
    code, run = _explain(registered, data, "--example_methods", "TracIn")
    assert code == EXIT_BAD_INPUT and run.info.status == "FAILED"
    assert run.data.tags["lfxai.error"].startswith(
        "ConfigError: example_methods ['TracIn'] differentiate"
    )
    assert run.data.tags["lfxai.model.resolved"] == f"models:/{NAME}/1"  # recorded, refused
    assert "n_train_used" not in run.data.params and not run.data.metrics  # no data read


def test_each_example_method_gets_the_runs_settings(tiny_encoder) -> None:
    config = SimpleNamespace(seed=7, simplex_steps=13)
    simplex = example_explainer("SimplEx", tiny_encoder, config)
    assert simplex.simplex_steps == 13 and not simplex.progress
    assert example_explainer("Random", tiny_encoder, config).seed == 7
    assert isinstance(example_explainer("DKNN", tiny_encoder, config), DKNN)
