"""The command-line runner: bad input fails clearly, before any work, with a FAILED run."""

from __future__ import annotations

import argparse
import os
import re

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from lfxai.experiments.runner import EXIT_BAD_INPUT, describe, main, run_name


def _last_run():
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    return max(runs, key=lambda r: r.info.start_time)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--name", "nope"], r"unknown experiment 'nope'.*consistency_features"),
        (["--name", "consistency_features", "--profile", "huge"], r"unknown profile 'huge'"),
        (["--name", "consistency_features", "--feature_methods", "Shap"], r"'Shap'.*GradientShap"),
        (
            ["--name", "consistency_features", "--feature_methods", ""],
            r"feature_methods must not be empty",
        ),
        (
            ["--name", "consistency_features", "--perturbation_percentages", "0,50"],
            r"entry 0.0 is outside",
        ),
        (["--name", "consistency_features", "--bogus", "1"], r"unknown parameter 'bogus'"),
        (["--name", "consistency_features", "--n_epochs"], r"--n_epochs has no value"),
    ],
)
def test_bad_input_exits_non_zero_with_a_failed_run(argv, message, mlflow_store, capsys):
    assert main("mnist", argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert re.search(message, err), err
    run = _last_run()
    assert run.info.status == "FAILED"
    assert re.search(message, run.data.tags["lfxai.error"])


def test_an_experiment_the_dataset_lacks_fails_before_any_work(mlflow_store, capsys):
    assert main("ecg5000", ["--name", "roar_test"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert re.search(r"unknown experiment 'roar_test'.*consistency_examples", err), err
    run = _last_run()
    assert run.info.status == "FAILED"
    assert "config.split" not in run.data.params  # nothing was set up, nothing trained


def test_a_run_lands_in_its_experiment_named_by_what_differs(
    mlflow_store, capsys, monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)  # a new experiment keeps its artifacts in ./mlruns
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")  # nobody chose an experiment
    argv = ["--name", "consistency_features", "--profile", "smoke", "--seed", "profile"]
    for methods in ("Saliency,Shap", "Shap"):
        assert main("mnist", [*argv, "--feature_methods", methods]) == EXIT_BAD_INPUT
    client = MlflowClient()
    experiment = client.get_experiment_by_name("mnist-consistency_features")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time"])
    assert [r.info.run_name for r in runs] == [
        "#1 smoke feature_methods=Saliency,Shap · consistency_features",
        "#2 smoke feature_methods=Shap · consistency_features",
    ]  # a value equal to `profile` keeps the profile's setting: not in the name
    assert all(r.info.status == "FAILED" for r in runs)
    note = runs[0].data.tags["mlflow.note.content"]
    assert "-P feature_methods=Saliency,Shap" in note and "python -m entrypoints.mnist" in note


def test_a_run_mlflow_run_made_in_default_moves_to_its_experiment(
    mlflow_store, capsys, monkeypatch
):
    """`mlflow run` without an experiment creates its run in Default before our code starts;
    with `--experiment-name mnist-roar_test` it creates it there, and it is used as it is."""
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    client = MlflowClient()
    ours = client.get_experiment_by_name("mnist-roar_test").experiment_id
    argv = ["--name", "roar_test", "--profile", "smoke", "--remove_percentages", "0"]
    for experiment_id in ("0", ours):
        launched = client.create_run(experiment_id, tags={"mlflow.source.type": "PROJECT"})
        monkeypatch.setenv("MLFLOW_RUN_ID", launched.info.run_id)
        monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
        assert main("mnist", argv) == EXIT_BAD_INPUT
        assert os.environ["MLFLOW_RUN_ID"] == launched.info.run_id  # restored for the caller
    pointer = client.search_runs(["0"])[0]
    first, second = client.search_runs([ours], order_by=["attributes.start_time"])
    assert second.info.run_id == launched.info.run_id  # adopted
    assert client.get_experiment(ours).tags["mlflow.experimentKind"] == "custom_model_development"
    # The Default run points to the run that did the work, which has its source tags.
    assert pointer.data.tags["lfxai.moved_to"] == first.info.run_id
    assert pointer.info.run_name == "-> mnist-roar_test"
    assert first.info.status == "FAILED" and first.data.tags["mlflow.source.type"] == "PROJECT"
    assert first.info.run_name == "#1 smoke remove_percentages=0 · roar_test"
    assert second.info.run_name == "#2 smoke remove_percentages=0 · roar_test"


def test_names_and_descriptions_show_only_what_differs():
    assert run_name("roar_test", "quick", {"data_dir": "/x", "n_epochs": 3}, 2) == (
        "#2 quick n_epochs=3 · roar_test"
    )
    long = run_name("a", "smoke", {"feature_methods": ("IntegratedGradients", "Saliency")}, 1)
    assert long == "#1 smoke feature_methods=IntegratedGradients,Sal… · a"
    args = argparse.Namespace(name="roar_test", profile="quick", argv=["--name", "roar_test"])
    text = describe("mnist", args, {"seed": "3"}, {"seed": (3, 42)}, 2)
    assert "| seed | 3 | 42 |" in text and "mlflow run . -e mnist -P name=roar_test" in text
    assert "All settings" in describe("mnist", args, {}, {}, 1)
