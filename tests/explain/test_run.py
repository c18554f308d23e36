"""One explain run in-process (the entry point's ``main``) on generated digits, read back."""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
import torch
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lfxai.cli import explain as explain_cli
from lfxai.cli.explain import _parser, differences, main
from lfxai.cli.launch import EXIT_BAD_INPUT
from lfxai.config import PROFILES
from lfxai.data.masking import apply_mask, top_k_mask
from lfxai.experiments.consistency_examples import balanced_subset
from lfxai.explain import pipeline
from lfxai.explain.pipeline import example_explainer
from lfxai.explain.settings import resolve
from lfxai.explanations.examples import DKNN
from lfxai.models.registry import ModelSpec, build_model
from lfxai.plugins import DATASETS
from lfxai.redact import redact
from lfxai.tracking import (
    MOVED_TO_TAG,
    STOPPED_TAG,
    UNCLAIMED_STALE_S,
    Stopped,
    Tracker,
    load_explained_model,
    tracking_uri,
)
from tests.helpers import spy
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
    # What the figures were asked to draw.
    top_bottom_calls = spy(monkeypatch, pipeline, "top_bottom_examples")
    shift_calls = spy(monkeypatch, pipeline, "log_feature_shifts")
    rate_calls = spy(monkeypatch, pipeline, "log_similarity_rates")
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
    order = [f"similarity_rate_top_min_pct/{m}" for m in methods["example"]]
    order += [f"representation_shift_mean/{m}" for m in methods["feature"]]
    assert list(final) == [*order, "dim_latent"] and final["dim_latent"] == 3  # methods' order
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
    report = json.loads(
        Path(client.download_artifacts(run.info.run_id, "claims.json", str(tmp_path))).read_text()
    )
    assert report["experiment"] == "explain"
    # Each point tested on the per-example evidence: 60 explained, 20 of them scored.
    sizes = {c["key"]: {f["n"] for f in c["figures"]} for c in report["claims"]}
    assert sizes == {"shift_above_random/Saliency": {60}, "top_above_bottom/DKNN": {20}}
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

    ((*_, saliency_title),), ((*_, similarity_title),) = shift_calls, rate_calls
    assert saliency_title == similarity_title == f"{NAME}@prod (v1) on Synthetic digits"
    # The figure: the first 6 test examples beside each method's top and bottom example.
    ((shown, labels, columns, title),) = top_bottom_calls
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


def test_the_command_line_requires_the_model_and_data_set_and_names_the_choices() -> None:
    parser = _parser()
    for missing in (["--dataset", "mnist"], ["--model_uri", "models:/m@a"]):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_known_args(missing)
        assert exit_.value.code == EXIT_BAD_INPUT
    args, extra = parser.parse_known_args(["--model_uri", "m", "--dataset", "d", "--seed", "1"])
    assert (args.profile, extra) == ("quick", ["--seed", "1"])
    text = " ".join(parser.format_help().split())  # unwrapped
    assert text.startswith("usage: entrypoints/explain.py ")
    assert (
        "Label-free explanations of a registered encoder; other --key value pairs override "
        "settings of configs/explain.yaml."
    ) in text
    assert "--model_uri MODEL_URI e.g. models:/<name>@<alias>" in text
    assert f"one of {sorted(DATASETS)}" in text and f"one of {list(PROFILES)}" in text


def test_differences_are_the_settings_off_the_profile_with_both_values() -> None:
    profile = resolve("mnist", "models:/m@a", "smoke", {})[1]
    config = dataclasses.replace(profile, seed=7, n_test=profile.n_test)
    assert differences(config, profile) == {"seed": (7, profile.seed)}
    assert differences(profile, profile) == {}


def test_under_mlflow_run_the_run_moves_to_its_experiment_and_is_named_by_what_differs(
    registered, tmp_path, monkeypatch, capsys
) -> None:
    """As ``mlflow run . -e explain`` starts it: ``MLFLOW_RUN_ID`` names the run it made in
    ``Default``, the command line is ``sys.argv``; a run of the same project that never
    reached our code an hour ago is ended KILLED by this one."""
    data = use_synthetic(monkeypatch, tmp_path)
    client = MlflowClient()
    project = {"mlflow.source.type": "PROJECT", "mlflow.source.name": "file:///work/lfxai"}
    long_ago = int((time.time() - UNCLAIMED_STALE_S - 60) * 1000)
    orphan = client.create_run("0", start_time=long_ago, tags=project).info.run_id
    launcher = client.create_run("0", tags=project).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "0")  # what `mlflow run` sets, not the name
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    argv = ["--model_uri", registered, "--dataset", "synthetic", "--profile", "smoke"]
    argv += ["--data_dir", str(data), "--n_train", "200", "--seed", "42"]  # 42: smoke's own
    argv += ["--feature_methods", "Saliency", "--example_methods", "DKNN"]
    monkeypatch.setattr(sys, "argv", ["entrypoints/explain.py", *argv])
    start = time.perf_counter()
    assert main() == 0
    wall = time.perf_counter() - start
    assert client.get_run(orphan).info.status == "KILLED"
    (run,) = client.search_runs([client.get_experiment_by_name("synthetic-explain").experiment_id])
    assert client.get_run(launcher).data.tags[MOVED_TO_TAG] == run.info.run_id
    name = f"#1 {NAME}@prod smoke n_train=200 feature_methods=Saliency,Random "
    name += "example_methods=DKNN,Random · explain"
    assert run.info.run_name == name  # neither the seed (the profile's) nor data_dir
    note = run.data.tags["mlflow.note.content"]
    assert "run #1: label-free feature and example importance of a registered encoder" in note
    assert "Settings that differ from the `smoke` profile:" in note
    assert "| n_train | 200 | 600 |" in note and "| seed |" not in note
    declared = f"model_uri {registered} --dataset synthetic --profile smoke"
    assert f"Command line: `python -m entrypoints.explain --{declared} --data_dir " in note
    rerun = f"mlflow run . -e explain -P model_uri={registered} -P dataset=synthetic "
    assert f"Rerun with: `{rerun}-P profile=smoke -P data_dir=" in note
    assert "--seed 42" in note  # as given, in the command line and the rerun command
    assert "-P seed=42 -P feature_methods=Saliency -P example_methods=DKNN`" in note
    assert 0 < run.data.metrics["time/total_seconds"] <= wall
    out = capsys.readouterr().out
    assert f"[lfxai] ended KILLED: run {orphan} " in out
    assert f"[lfxai] '{name}' in experiment 'synthetic-explain'\n" in out
    assert f"[lfxai] store: {redact(tracking_uri())}\n" in out


def test_a_stop_before_the_run_is_placed_ends_mlflow_run_s_run_killed(
    mlflow_store, monkeypatch
) -> None:
    launcher = MlflowClient().create_run("0").info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher)

    def stopped(*_args):
        raise Stopped(signal.SIGTERM)

    monkeypatch.setattr(explain_cli, "placed_run", stopped)
    assert main(["--model_uri", "models:/m@a", "--dataset", "mnist"]) == 128 + signal.SIGTERM
    run = MlflowClient().get_run(launcher)
    assert run.info.status == "KILLED" and run.data.tags[STOPPED_TAG].startswith("SIGTERM")


def test_an_unknown_data_set_fails_in_the_default_experiment_naming_the_choices(
    registered, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")  # where it goes is then the command's choice
    assert main(["--model_uri", registered, "--dataset", "nope"]) == EXIT_BAD_INPUT
    client = MlflowClient()
    assert client.get_experiment_by_name("nope-explain") is None  # no experiment for a typo
    (run,) = client.search_runs(["0"], filter_string="attributes.status = 'FAILED'")  # Default
    assert "nope" in run.data.tags["lfxai.error"]
    err = capsys.readouterr().err
    assert all(d in err for d in DATASETS), err


def test_a_model_uri_that_does_not_resolve_fails_naming_it(mlflow_store, tmp_path, monkeypatch):
    code, run = _explain("models:/nobody@prod", use_synthetic(monkeypatch, tmp_path))
    assert code == EXIT_BAD_INPUT and run.info.status == "FAILED"
    assert run.data.tags["lfxai.error"].startswith("ConfigError: ")
    assert "models:/nobody@prod" in run.data.tags["lfxai.error"]


def test_an_encoder_of_other_inputs_is_refused_naming_the_data_set(
    mlflow_store, tmp_path, monkeypatch
) -> None:
    torch.manual_seed(0)
    sprites = build_model("burgess_vae", ModelSpec(3, (1, 32, 32), "reconstruction", "vae"))
    with mlflow.start_run():
        Tracker(mlflow.active_run().info.run_id).log_encoder_model(
            sprites.eval(), torch.rand(2, 1, 32, 32), "sprite-encoder"
        )
    code, run = _explain("models:/sprite-encoder/1", use_synthetic(monkeypatch, tmp_path))
    assert code == EXIT_BAD_INPUT and run.info.status == "FAILED"
    assert run.data.tags["lfxai.error"] == (
        "ConfigError: models:/sprite-encoder/1 takes inputs (N, 1, 32, 32) by its signature, but "
        "dataset 'synthetic' gives (N, 1, 28, 28); explain it on a data set of its input shape"
    )
