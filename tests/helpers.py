"""Helpers for end-to-end tests that run `mlflow run` as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "lfxai-tests"


def make_store(folder: Path) -> str:
    """A SQLite store in ``folder`` whose experiments keep their artifacts there too.

    The test experiment and every ``<dataset>-<experiment>`` one (where runs go when
    nobody chooses an experiment) are created beforehand, with artifacts under ``folder``: a
    bare SQLite store puts a new experiment's artifacts under ./mlruns of the working
    directory, the repo.
    """
    from mlflow.tracking import MlflowClient

    import lfxai.experiments  # noqa: F401  (fills the registry)
    from lfxai.experiments.registry import entries
    from lfxai.tracking import experiment_name

    uri = f"sqlite:///{folder}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    for name in [EXPERIMENT, *(experiment_name(*entry) for entry in entries())]:
        if client.get_experiment_by_name(name) is None:
            location = (folder / "artifacts" / name.replace("/", "-")).as_uri()
            client.create_experiment(name, artifact_location=location)
    return uri


def venv_env(store_uri: str) -> dict[str, str]:
    """Environment for `mlflow run --env-manager local`: this interpreter's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = store_uri
    env["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = "1"  # smoke runs last seconds, not minutes
    env.pop("MLFLOW_RUN_ID", None)
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    env.pop("MLFLOW_EXPERIMENT_NAME", None)
    return env


def mlflow_run(
    entry_point: str,
    params: dict[str, str],
    store_uri: str,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    experiment: str | None = None,
) -> subprocess.CompletedProcess:
    """Runs `mlflow run . -e <entry_point> -P k=v ... --env-manager local` from the repo root.

    As a user would, without ``--experiment-name``: the run goes to its experiment
    ``<dataset>-<experiment>`` of ``store_uri`` (see :func:`make_store`), or to
    ``experiment`` when given.
    """
    command = [str(Path(sys.executable).parent / "mlflow"), "run", ".", "-e", entry_point]
    if experiment:
        command += ["--experiment-name", experiment]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    command += ["--env-manager", "local"]
    return subprocess.run(
        command,
        cwd=REPO,
        env={**venv_env(store_uri), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_experiment(entry_point: str, params: dict[str, str], store_uri: str):
    """Runs an entry point with `mlflow run`; returns ``(client, run)`` of its top-level run."""
    from mlflow.tracking import MlflowClient

    result = mlflow_run(entry_point, params, store_uri)
    assert result.returncode == 0, result.stderr[-4000:]
    client = MlflowClient(tracking_uri=store_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments,
        f"tags.`lfxai.experiment` = '{params['name']}' and attributes.status = 'FINISHED'",
    )
    top = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(top) == 1, [r.info.run_id for r in top]
    return client, top[0]
