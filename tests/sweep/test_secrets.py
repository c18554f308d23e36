"""No credential of a sweep's storage URL reaches the MLflow store, the Optuna storage, an
artifact or the output, whatever its form: the URL is refused with a redacted message."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from lfxai.cli.sweep import main
from lfxai.tracking import ERROR_TAG
from tests.helpers import EXPERIMENT
from tests.sweep.fakes import FakeTrain, fake_backend

SECRET = "s3cret"
URLS = {
    "userinfo": f"postgresql+psycopg://user:{SECRET}@127.0.0.1:5432/optuna",
    "unparsable": f"postgresql+psycopg://user:{SECRET}@127.0.0.1:notaport/db",
    "query password": f"postgresql+psycopg://user@127.0.0.1/db?password={SECRET}",
    "query pass": f"sqlite:////tmp/lfxai-optuna.db?pass={SECRET}",
    "query token": f"postgresql+psycopg://127.0.0.1/db?sslmode=require&token={SECRET}",
}


def run_sweep(*extra: str, train: FakeTrain | None = None) -> int:
    argv = ["--dataset", "mnist", "--n_trials", "1", "--profile", "smoke", *extra]
    return main(argv, backend=fake_backend(train))


def secret_hits(folder: Path, secret: str = SECRET) -> list[str]:
    """Where ``secret`` is stored under ``folder``: database rows (table: row) and files."""
    hits = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix == ".db":
            with closing(sqlite3.connect(path)) as db:
                tables = [
                    r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
                ]
                for table in tables:
                    for row in db.execute(f'SELECT * FROM "{table}"'):
                        if secret in repr(row):
                            hits.append(f"{path.name}:{table}: {row!r}")
        if secret.encode() in path.read_bytes() and path.suffix not in (".db", ".db-wal"):
            hits.append(str(path.relative_to(folder)))
    return hits


def the_run(client: MlflowClient):
    """The sweep's parent run."""
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    (run,) = client.search_runs([experiment], "tags.`mlflow.parentRunId` IS NULL")
    return run


@pytest.mark.parametrize("form", sorted(URLS))
def test_a_storage_url_with_a_credential_is_refused_and_never_stored(
    form, sweep_env, tmp_path, capsys
):
    assert run_sweep("--storage", URLS[form]) == 2
    out = capsys.readouterr()
    (line,) = out.err.strip().splitlines()  # one line
    assert "carries a credential: refused" in line and "***" in line
    assert "PGPASSWORD or ~/.pgpass" in line and "MLFLOW_TRACKING_PASSWORD" in line
    assert SECRET not in out.out + out.err
    run = the_run(MlflowClient())
    assert run.info.status == "FAILED" and "***" in run.data.tags[ERROR_TAG]
    assert secret_hits(tmp_path) == []  # the MLflow store, its artifacts, any Optuna db


def test_a_secret_in_optuna_storage_is_refused_too(sweep_env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPTUNA_STORAGE", URLS["userinfo"])
    assert run_sweep() == 2
    err = capsys.readouterr().err
    assert "OPTUNA_STORAGE 'postgresql+psycopg://user:***@127.0.0.1:5432/optuna'" in err
    assert SECRET not in err and secret_hits(tmp_path) == []


def test_optuna_storage_keeps_the_url_off_the_command_line(sweep_env, monkeypatch):
    monkeypatch.setenv("OPTUNA_STORAGE", sweep_env)
    assert run_sweep() == 0
    assert len(optuna.load_study(study_name="mnist-pareto", storage=sweep_env).trials) == 1
    run = the_run(MlflowClient())
    assert run.data.tags["lfxai.storage"] == sweep_env
    assert "config.storage" not in run.data.params  # null: the variable was used


def test_a_value_mlflow_run_logged_is_named_with_how_to_purge_it(
    sweep_env, tmp_path, monkeypatch, capsys
):
    client = MlflowClient()
    # What `mlflow run -P storage=...` leaves before our code starts: its run, the -P value
    # as a param.
    default = client.get_experiment_by_name("Default").experiment_id
    launched = client.create_run(default).info.run_id
    client.log_param(launched, "storage", URLS["userinfo"])
    monkeypatch.setenv("MLFLOW_RUN_ID", launched)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    assert run_sweep("--storage", URLS["userinfo"]) == 2
    err = capsys.readouterr().err
    assert f"in the param `storage` of its run {launched}" in err
    assert f"mlflow runs delete --run-id {launched}" in err
    assert f"--run-ids {launched}" in err and "OPTUNA_STORAGE" in err
    assert SECRET not in err
    # the search finds what `mlflow run` stored, and nothing else holds it
    (hit,) = secret_hits(tmp_path)
    assert hit.startswith("mlflow.db:params: ('storage'") and launched in hit


def test_an_error_holding_a_credential_is_redacted_everywhere(sweep_env, tmp_path, capsys):
    train = FakeTrain()
    train.raise_at = (0, RuntimeError(f"cannot reach postgresql://user:{SECRET}@db/x"))
    assert run_sweep("--storage", sweep_env, train=train) == 1  # every trial failed
    out = capsys.readouterr()
    assert "postgresql://user:***@db/x" in out.err
    assert SECRET not in out.out + out.err
    assert secret_hits(tmp_path) == []  # the trial's run, the parent, trials.csv, Optuna
