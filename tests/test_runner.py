"""The command-line runner: bad input fails clearly, before any work, with a FAILED run."""

from __future__ import annotations

import re

import mlflow
import pytest

from lfxai.experiments.runner import EXIT_BAD_INPUT, main


def _last_run():
    """The one run of the test's private store (start times tie at the millisecond)."""
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    return run


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
