"""Helpers for tests: private MLflow stores, and `mlflow run` as a user would run it."""

from __future__ import annotations

import atexit
import inspect
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "lfxai-tests"

_template: Path | None = None


def in_ci() -> bool:
    """CI sets ``CI=true``: there, a test whose set-up fails must fail, never be skipped."""
    return os.environ.get("CI", "").strip().lower() == "true"


def _template_store() -> Path:
    """A SQLite store with MLflow's schema and our experiments, made once per process.

    Creating a store runs every Alembic migration (seconds); copying this file costs
    milliseconds. :func:`make_store` points the copy's artifact locations at its own folder.
    """
    global _template
    if _template is None:
        from mlflow.tracking import MlflowClient

        folder = Path(tempfile.mkdtemp(prefix="lfxai-store-template-"))
        atexit.register(_remove_if_owner, folder, os.getpid())
        database = folder / "mlflow.db"
        import lfxai.experiments  # noqa: F401  (fills the registry)
        from lfxai.experiments.registry import entries
        from lfxai.tracking import experiment_name

        client = MlflowClient(tracking_uri=f"sqlite:///{database}")  # makes experiment 0
        for name in [EXPERIMENT, *(experiment_name(*entry) for entry in entries())]:
            client.create_experiment(name, artifact_location=(folder / name).as_uri())
        _template = database
    return _template


def _remove_if_owner(folder: Path, owner: int) -> None:
    # Forked children (pytest plugins, mutmut) share the template: only its creator removes it.
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


def make_store(folder: Path) -> str:
    """A SQLite store in ``folder`` whose experiments keep their artifacts there too.

    A copy of a once-migrated template holding the test experiment, MLflow's ``Default`` and
    every ``<dataset>-<experiment>`` one (where runs go when nobody chooses an experiment);
    each experiment's artifact location is then set to ``folder/artifacts/<name>``, so
    artifacts stay private to the store and never land under ./mlruns of the working
    directory (a bare SQLite store's default: the repo).
    """
    database = folder / "mlflow.db"
    if not database.exists():
        shutil.copyfile(_template_store(), database)
        root = folder / "artifacts"
        with closing(sqlite3.connect(database)) as connection, connection:
            # MLflow's own schema (pinned mlflow): experiments(name, artifact_location, ...).
            names = [row[0] for row in connection.execute("SELECT name FROM experiments")]
            for name in names:
                location = (root / name.replace("/", "-")).as_uri()
                connection.execute(
                    "UPDATE experiments SET artifact_location = ? WHERE name = ?",
                    (location, name),
                )
            assert {EXPERIMENT, "Default"} <= set(names), f"template store lacks {names}"
    return f"sqlite:///{database}"


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
    On timeout the entry point (a child of ``mlflow``) is killed too: see
    :func:`run_in_session`.
    """
    command = [str(Path(sys.executable).parent / "mlflow"), "run", ".", "-e", entry_point]
    if experiment:
        command += ["--experiment-name", experiment]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    command += ["--env-manager", "local"]
    return run_in_session(command, timeout, cwd=REPO, env={**venv_env(store_uri), **(env or {})})


def run_in_session(command: list[str], timeout: float, **popen) -> subprocess.CompletedProcess:
    """``subprocess.run(command, capture_output=True, text=True, timeout=timeout)``, but the
    command leads a session of its own and a timeout kills its whole process group.

    ``subprocess.run`` kills only the process it started: a child of it (the experiment that
    ``mlflow run`` launches) would go on running, and holding the output pipes. Here
    ``subprocess.TimeoutExpired`` is raised once every process of the group has exited.
    """
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **popen,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(process)
            # Returns at end of file: once no process of the group holds the pipes open.
            stdout, stderr = process.communicate()
            raise subprocess.TimeoutExpired(command, timeout, stdout, stderr) from None
        except BaseException:  # e.g. pytest-timeout or Ctrl-C interrupting the wait
            kill_group(process)
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILLs the process group ``process`` leads (started with ``start_new_session``).

    Call it before ``process`` is reaped (``wait``): until then its id, which is the group's,
    cannot be reused by another process.
    """
    with suppress(ProcessLookupError):  # every member of the group has exited already
        os.killpg(process.pid, signal.SIGKILL)


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


def open_run(experiment: str = "Default", **kwargs):
    """A RUNNING run created straight in the current store (no process behind it).

    ``kwargs`` go to ``MlflowClient.create_run`` (``tags``, ``start_time``, ``run_name``).
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    return client.create_run(client.get_experiment_by_name(experiment).experiment_id, **kwargs)


def spy(monkeypatch, owner: object, name: str) -> list[tuple]:
    """Records the positional arguments of each call of ``owner.name``, which still runs."""
    calls: list[tuple] = []
    original = getattr(owner, name)

    def recorded(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(owner, name, recorded)
    return calls


def spy_named(monkeypatch, owner: object, name: str) -> list[dict[str, object]]:
    """As :func:`spy`, each call's arguments by parameter name (keyword arguments too)."""
    calls: list[dict[str, object]] = []
    original = getattr(owner, name)
    signature = inspect.signature(original)

    def recorded(*args, **kwargs):
        calls.append(dict(signature.bind(*args, **kwargs).arguments))
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return calls


@contextmanager
def deliverable_stop_signals() -> Iterator[None]:
    """SIGINT and SIGTERM not blocked in this thread, nor in the threads it starts (they
    inherit its mask): a test runner's worker process may block them."""
    previous = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
