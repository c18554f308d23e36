"""`python -m entrypoints.report` and the MLproject's `report` entry point."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from lfxai.cli.report import EXIT_BAD_INPUT, main
from lfxai.tracking.compat import load_mlproject
from tests.helpers import REPO
from tests.report.conftest import feature_evidence, feature_table


def test_the_entry_point_passes_its_settings(tmp_path):
    entry = load_mlproject(REPO).get_entry_point("report")
    assert entry.parameters["profile"].default == "paper"
    command = entry.compute_command({"out": "r", "run_ids": "a,b"}, str(tmp_path))
    assert command == "python -m entrypoints.report --profile paper --out r --run_ids a,b"


def test_the_report_is_logged_as_a_run_listing_its_sources(make_run, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")  # the report goes to experiment `report`
    run_id = make_run(table=feature_table([1.0, 1.5, 2.0], [0.5, 1.0, 2.0]))
    make_run(
        table=feature_table([1.0, 1.5, 2.0], [0.5, 1.0, 2.0]), evidence=feature_evidence(6, 0.5)
    )
    assert main(["--profile", "smoke", "--out", str(tmp_path), "--run_ids", run_id]) == 0
    client = MlflowClient()
    experiment = client.get_experiment_by_name("report")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "report · smoke"
    assert run.data.tags["lfxai.report.sources"] == run_id  # the run given, not the newest
    assert run.data.tags["lfxai.report.source.mnist-consistency_features"] == run_id
    assert "mnist-roar_test" in run.data.tags["lfxai.report.missing"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"index.md", "index.html", "report.json", "figures"} <= artifacts
    assert (tmp_path / "index.html").is_file()


def test_bad_input_is_one_line_exit_2_and_a_failed_run(mlflow_store, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    assert main(["--profile", "final"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err == "error: unknown profile 'final'; valid choices: ['paper', 'quick', 'smoke']\n"
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("report").experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["lfxai.error"].startswith("ConfigError: unknown profile 'final'")
    assert main(["--log", "maybe"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == "error: log='maybe'; valid choices: ['true', 'false']\n"


def test_a_store_that_does_not_exist_is_named_not_created(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nowhere" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{missing}")
    assert main(["--log", "false"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.startswith(f"error: no MLflow store at {missing}")
    assert not missing.parent.exists()
