"""The command-line runner: bad input fails clearly, before any work, with a FAILED run; a
stop signal ends the run KILLED; resume refuses, changing nothing, a run it must not continue."""

from __future__ import annotations

import logging
import os
import re
import signal
from datetime import UTC, datetime

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from lfxai.cli import experiment as experiment_cli
from lfxai.cli import launch
from lfxai.cli.experiment import main
from lfxai.cli.launch import EXIT_BAD_INPUT
from lfxai.cli.naming import Request, describe, run_name
from lfxai.config import build_config, load_profile
from lfxai.experiments import consistency_features
from lfxai.experiments.registry import get_experiment
from lfxai.tracking import (
    ERROR_TAG,
    HEARTBEAT_TAG,
    RESUMED_INTO_TAG,
    STOPPED_TAG,
    Tracker,
)
from tests.helpers import EXPERIMENT


def _all_experiments(client: MlflowClient) -> list[str]:
    return [e.experiment_id for e in client.search_experiments()]


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


SETTINGS = [
    (["--feature_methods", "Saliency,Saliency"], r"feature_methods lists \['Saliency'\] more than"),
    (["--perturbation_percentages", "10,10.4"], r"entry 10.4 is not a whole percent"),
    (["--perturbation_percentages", "50,20,50"], r"lists \[50.0\] more than once"),
    (["--device", "cuda"], r"device 'cuda' asked for, but .*; use device=auto or device=cpu"),
    (["--device", "cuda:x"], r"device must be 'auto', 'cpu' or 'cuda\[:i\]'"),
    (["--data_dir", "{missing}"], r"data_dir '.*nonexistent' does not exist.*provision mnist"),
]


def test_settings_that_make_no_sense_fail_before_any_work(
    mlflow_store, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a SQLite store's artifacts go to ./mlruns
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # any machine, GPU or not
    missing = tmp_path / "nonexistent"
    client = MlflowClient()
    for override, message in SETTINGS:  # one store for all cases: a new one costs seconds
        before = {r.info.run_id for r in client.search_runs(_all_experiments(client))}
        argv = ["--name", "consistency_features", "--profile", "smoke"]
        argv += [a.format(missing=missing) for a in override]
        assert main("mnist", argv) == EXIT_BAD_INPUT, override
        err = capsys.readouterr().err
        assert re.search(message, err), (override, err)
        (run,) = [
            r for r in client.search_runs(_all_experiments(client)) if r.info.run_id not in before
        ]  # the new run, by id (start times tie at the millisecond)
        assert run.info.status == "FAILED", override
        assert re.search(message, run.data.tags["lfxai.error"]), override
    assert not missing.exists()  # a typo in data_dir provisions nothing anywhere


def test_sigint_ends_the_run_killed_with_the_reason(mlflow_store, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def interrupted(*_args, **_kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends; raises before returning
        raise AssertionError("the signal did not stop the run")

    monkeypatch.setattr(consistency_features, "load_splits", interrupted)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    argv = ["--name", "consistency_features", "--profile", "smoke"]
    assert main("mnist", argv) == 128 + signal.SIGINT
    assert "stopped by SIGINT" in capsys.readouterr().err
    run = _last_run()
    assert run.info.status == "KILLED"
    assert run.data.tags[STOPPED_TAG].startswith("SIGINT")
    assert ERROR_TAG not in run.data.tags
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_stop_before_the_run_is_adopted_still_ends_the_launchers_run(
    mlflow_store, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    client = MlflowClient()
    launcher = _launcher(client, monkeypatch)

    def stopped(*_args, **_kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the signal did not stop the run")

    monkeypatch.setattr(launch, "init_store", stopped)
    assert main("mnist", ["--name", "consistency_features"]) == 128 + signal.SIGTERM
    run = client.get_run(launcher)
    assert run.info.status == "KILLED"
    assert run.data.tags[STOPPED_TAG] == "SIGTERM received: the run was stopped"


# -- resume ------------------------------------------------------------------------------
def _experiment_id(client: MlflowClient) -> str:
    return client.get_experiment_by_name(EXPERIMENT).experiment_id


def _fake_run(client: MlflowClient, name: str, status: str, tags: dict | None = None) -> str:
    """A top-level run as `name` (smoke profile) logs it, ended with `status`; no work done."""
    schema = get_experiment("mnist", name).schema
    config = build_config(schema, load_profile("mnist", name, "smoke"))
    run_id = client.create_run(_experiment_id(client), run_name=f"mnist-{name}-smoke").info.run_id
    identity = {"dataset": "mnist", "experiment": name, "profile": "smoke", "version": "0.1.0"}
    tracker = Tracker(run_id)
    tracker.log_config(identity, config)
    tracker.set_tags(tags or {})
    if status != "RUNNING":
        client.set_terminated(run_id, status)
    return run_id


def _launcher(client: MlflowClient, monkeypatch) -> str:
    """The run `mlflow run` creates before the entry point starts (MLFLOW_RUN_ID)."""
    run_id = client.create_run(_experiment_id(client)).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", run_id)
    return run_id


def _snapshot(client: MlflowClient, run_id: str) -> tuple:
    run = client.get_run(run_id)
    return run.info.status, run.info.end_time, dict(run.data.tags), dict(run.data.params)


def _children(client: MlflowClient, run_id: str) -> list:
    return client.search_runs(
        [_experiment_id(client)], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )


def test_resume_refuses_a_wrong_or_live_run_and_changes_nothing(
    mlflow_store, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    client = MlflowClient()
    features = _fake_run(client, "consistency_features", "FINISHED")
    roar = _fake_run(client, "roar_test", "FINISHED")
    fresh = datetime.now(UTC).isoformat(timespec="seconds")
    live = _fake_run(client, "roar_test", "RUNNING", tags={HEARTBEAT_TAG: fresh})
    nested = client.create_run(
        _experiment_id(client), tags={"mlflow.parentRunId": roar, "lfxai.experiment": "roar_test"}
    ).info.run_id
    cases = [
        (features, [], r"another kind.*experiment: the run is 'consistency_features', this co"),
        (
            roar,
            ["--remove_percentages", "10,50"],
            r"other settings.*remove_percentages: the run has '50,100', this command '10.0,50.0'",
        ),
        (roar, ["--profile", "quick"], r"another kind.*profile: the run is 'smoke', this comma"),
        (live, [], r"RUNNING and alive \(last heartbeat \d+ s ago.*after 300 s"),
        (nested, [], rf"nested run of {roar}: resume that parent"),
        ("0" * 32, [], r"no such run"),
    ]
    for run_id, override, message in cases:
        before = _snapshot(client, run_id) if run_id != "0" * 32 else None
        launcher = _launcher(client, monkeypatch)
        argv = ["--name", "roar_test", "--profile", "smoke", "--resume_run_id", run_id, *override]
        assert main("mnist", argv) == EXIT_BAD_INPUT, message
        err = capsys.readouterr().err
        assert re.search(message, err), (message, err)
        if before is not None:
            assert _snapshot(client, run_id) == before  # status, name, tags, params untouched
        launched = client.get_run(launcher)
        assert launched.info.status == "FAILED"  # the launcher's run ends, with the reason
        assert launched.data.tags[RESUMED_INTO_TAG] == run_id
        assert re.search(message, launched.data.tags[ERROR_TAG])
        assert _children(client, launcher) == []


def test_resuming_a_finished_run_has_nothing_to_do(mlflow_store, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = MlflowClient()
    roar = _fake_run(client, "roar_test", "FINISHED")
    before = _snapshot(client, roar)
    launcher = _launcher(client, monkeypatch)
    # The same settings, one of them spelled out (50.0 for the profile's 50): still the same.
    argv = ["--name", "roar_test", "--profile", "smoke", "--resume_run_id", roar]
    argv += ["--remove_percentages", "50,100.0"]
    assert main("mnist", argv) == 0
    assert f"run {roar} is already FINISHED: nothing to resume" in capsys.readouterr().out
    assert _snapshot(client, roar) == before
    launched = client.get_run(launcher)
    assert launched.info.status == "FINISHED"
    assert launched.data.tags[RESUMED_INTO_TAG] == roar
    assert ERROR_TAG not in launched.data.tags


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
    given = {"name": "roar_test", "profile": "smoke", "remove_percentages": "0"}
    for experiment_id in ("0", ours):
        launched = client.create_run(experiment_id, tags={"mlflow.source.type": "PROJECT"})
        secret = {"storage": "postgresql+psycopg://u:s3cret@127.0.0.1/db"}  # as a sweep's
        for key, value in (given | secret).items():
            client.log_param(launched.info.run_id, key, value)  # as `mlflow run` logs -P
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
    # Same params as the adopted run: a search by the user's -P finds the run that worked.
    assert {k: first.data.params[k] for k in given} == given
    assert first.data.params["storage"] == "postgresql+psycopg://u:***@127.0.0.1/db"
    found = client.search_runs([ours], filter_string="params.remove_percentages = '0'")
    assert {r.info.run_id for r in found} == {first.info.run_id, second.info.run_id}
    assert second.info.run_name == "#2 smoke remove_percentages=0 · roar_test"


def test_names_and_descriptions_show_only_what_differs():
    assert run_name("roar_test", "quick", {"data_dir": "/x", "n_epochs": 3}, 2) == (
        "#2 quick n_epochs=3 · roar_test"
    )
    long = run_name("a", "smoke", {"feature_methods": ("IntegratedGradients", "Saliency")}, 1)
    assert long == "#1 smoke feature_methods=IntegratedGradients,Sal… · a"
    declared = {"name": "roar_test", "profile": "quick"}
    request = Request("mnist", "roar_test", "quick", declared, ["--name", "roar_test"])
    text = describe(request, "**roar_test**", {"seed": "3"}, {"seed": (3, 42)})
    assert "| seed | 3 | 42 |" in text
    assert "mlflow run . -e mnist -P name=roar_test -P profile=quick -P seed=3" in text
    assert "python -m entrypoints.mnist --name roar_test" in text
    assert "All settings" in describe(request, "**roar_test**", {}, {})
    assert "not resolved" in describe(request, "**roar_test**", {"seed": "x"}, None)


@pytest.mark.parametrize(
    ("verbose", "env", "chatty"),
    [(None, None, False), (True, None, True), (None, "1", True), (False, "1", False)],
)
def test_mlflow_chatter_is_off_unless_asked_for(verbose, env, chatty, monkeypatch):
    monitor = logging.getLogger("mlflow.system_metrics.system_metrics_monitor")
    before = logging.getLogger("mlflow.system_metrics").level
    if env is None:
        monkeypatch.delenv(launch.VERBOSE_ENV, raising=False)
    else:
        monkeypatch.setenv(launch.VERBOSE_ENV, env)
    seen: list[bool] = []

    def work() -> None:
        seen.append(monitor.isEnabledFor(logging.INFO))
        assert logging.getLogger("mlflow").isEnabledFor(logging.WARNING)  # warnings stay

    code = launch.launch(
        work, None, create_store=False, record_system_metrics=False, verbose=verbose
    )
    assert code == 0 and seen == [chatty]
    assert logging.getLogger("mlflow.system_metrics").level == before  # restored


def test_the_end_of_a_run_prints_its_verdicts_and_a_few_numbers(mlflow_store, capsys):
    with mlflow.start_run(run_name="r") as run:
        tracker = Tracker(run.info.run_id)
        tracker.log_metrics(
            {
                "claims/verdict/shift_above_random/Saliency": 1.0,
                "claims/verdict/shift_above_random/GradientShap": 0.0,
                "claims/verdict/shift_above_random/Random": -1.0,
                "claims/holds/shift_above_random/Saliency": 1.0,
            }
        )
        summary = {f"metric/{i}": float(i) for i in range(experiment_cli.SUMMARY_LINES + 3)}
        experiment_cli.print_summary(tracker, "mnist/x (smoke) finished", "r", summary)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"[lfxai] mnist/x (smoke) finished: run {run.info.run_id}")
    assert "1 holds, 1 inconclusive, 1 fails" in out[1]
    assert out[2:5] == [
        "  inconclusive shift_above_random/GradientShap",
        "  fails        shift_above_random/Random",
        "  holds        shift_above_random/Saliency",
    ]
    numbers = [line for line in out if line.startswith("  metric/")]
    assert numbers == [f"  metric/{i}: {i}" for i in range(experiment_cli.SUMMARY_LINES)]
    assert "  ... and 3 more in the run's metrics" in out
    assert out[-1].startswith("[lfxai] store: ")
