"""The store and where runs go in it: creation, the tracking URI, run placement.

Where runs go: wherever ``MLFLOW_TRACKING_URI`` points, else MLflow's own default, which
on our pinned mlflow is ``sqlite:///mlflow.db`` in the working directory with artifacts
under ``./mlruns``. ``mlflow run`` creates its run in that same store before our code
starts, so we never set a URI ourselves; :data:`DEFAULT_TRACKING_URI` only documents it
(and is what the README's ``mlflow ui`` command opens).

Where artifacts go: a SQLite store keeps them beside its database, in ``mlruns/`` (the
default store's layout, wherever the database lies), so that the database and its artifacts
move and are deleted together: a store :func:`init_store` creates gets that as MLflow's
default artifact root, and an experiment we create in a store whose ``Default`` has MLflow's
implicit ``./mlruns`` of whichever process first opened it goes there too. A root the user
chose (``mlflow server --default-artifact-root``, an experiment's own location) is kept.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lfxai.redact import has_secret, redact
from lfxai.tracking.tags import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "Default"  # where `mlflow run` puts a run when nobody chose an experiment
ARTIFACT_FOLDER = "mlruns"  # a SQLite store's artifact root, beside its database
_RUN_ENV = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")


def tracking_uri() -> str:
    """The store runs go to (the user's MLFLOW_TRACKING_URI wins)."""
    return mlflow.get_tracking_uri()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for any other store (or in-memory)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def absolute_uri(uri: str) -> str:
    """``uri`` with a relative SQLite path made absolute (it would resolve again elsewhere)."""
    path = sqlite_path(uri)
    if path is None or path.is_absolute():
        return uri
    _, sep, query = uri.partition("?")
    return f"sqlite:///{path.resolve()}{sep}{query}"


def artifact_root(uri: str) -> Path | None:
    """``<database folder>/mlruns`` of a SQLite store; None for any other store."""
    path = sqlite_path(uri)
    return None if path is None else path.resolve().parent / ARTIFACT_FOLDER


def ui_command(uri: str) -> str:
    """``mlflow ui`` on store ``uri`` (redacted) with its artifact root, on this machine only.

    ``--default-artifact-root`` matters where the UI creates an experiment, or the store
    itself when it opens a new database first: the folder beside the database, as ours.
    """
    words = ["mlflow", "ui", "--backend-store-uri", redact(uri)]
    root = artifact_root(uri)
    if root is not None:
        words += ["--default-artifact-root", str(root)]
    return shlex.join([*words, "--host", "127.0.0.1"])


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Holds an exclusive lock on ``<path>.lock`` while the block runs.

    POSIX; elsewhere the block runs unlocked.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        with contextlib.suppress(ImportError):
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def init_store(uri: str | None = None) -> str:
    """Creates or migrates a SQLite store once, under a file lock, before any run uses it.

    MLflow creates and migrates a SQLite database the first time a client opens it, without
    a lock: several processes doing so at once break it ("table _alembic_tmp_... already
    exists") and leave a file no client opens. Call this before starting concurrent workers
    (``make store``, ``python -m lfxai.tracking``); the entry points call it too. Other
    stores (a tracking server, PostgreSQL) are left to their owner. A SQLite store created
    here keeps its artifacts beside its database (:func:`artifact_root`): MLflow would root
    them in ``./mlruns`` of this process, wherever it was started.

    A URI that carries a credential (``https://user:password@host``) also stops MLflow from
    printing it in this process (its "View run at <uri>" lines); use
    ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` instead.

    Args:
        uri: the store; default: the one runs go to (:func:`tracking_uri`).

    Returns:
        The store's URI.
    """
    uri = uri or tracking_uri()
    if has_secret(uri):
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    path = sqlite_path(uri)
    if path is None:
        return uri
    with file_lock(path):
        if not path.exists():
            _create_store(uri)
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # creates / migrates the tables
        client.search_registered_models(max_results=1)
    return uri


def _create_store(uri: str) -> None:
    """Creates the SQLite store ``uri`` with its artifact root beside its database.

    MLflow's own mechanism: the store's default artifact root (what ``mlflow server
    --default-artifact-root`` sets), which becomes ``Default``'s folder (``<root>/0``) and
    the root of every experiment created without a location.
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(uri, str(artifact_root(uri)))  # creates the tables and Default
    store.engine.dispose()  # the clients open their own connections


def experiment_name(dataset: str, experiment: str) -> str:
    """The MLflow experiment of one experiment of one data set: ``mnist-roar_test``.

    One per (data set, experiment): its runs share their metrics and settings, so the runs
    table, the charts and Compare line them up; runs of another experiment would only add
    empty columns and charts.
    """
    return f"{dataset}-{experiment}"


def ensure_experiment(name: str) -> str:
    """The id of experiment ``name``, created if needed, marked as a model-training one."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(
                name,
                artifact_location=_new_location(client, name),
                tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND},
            )
        except MlflowException:
            experiment = client.get_experiment_by_name(name)  # another worker created it
            if experiment is None:
                raise
    if experiment.tags.get(EXPERIMENT_KIND_TAG) is None:  # e.g. created beforehand by a test
        client.set_experiment_tag(
            experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND
        )
    return experiment.experiment_id


def _new_location(client: MlflowClient, name: str) -> str | None:
    """Where a new experiment ``name`` keeps its artifacts (None: the store's own default).

    A SQLite store without a server roots a new experiment in ``./mlruns`` of the process
    that creates it, and ``mlflow run`` runs our code in the project folder (in the container
    the read-only ``/opt/lfxai``), so we name the folder ourselves, in ``Default``'s form (a
    plain path or a ``file://`` URI):

    - ``Default`` in MLflow's implicit ``<somewhere>/mlruns/0`` (whoever created the store,
      e.g. ``mlflow run`` started in the project folder): ``<database folder>/mlruns/<name>``.
    - ``Default`` in a folder the user chose: beside it, ``<its parent>/<name>``.
    - a tracking server or remote artifacts: None.
    """
    folder = name.replace("/", "-")
    with contextlib.suppress(MlflowException):
        default = client.get_experiment_by_name(DEFAULT_EXPERIMENT)
        location = default.artifact_location if default is not None else ""
        as_uri = location.startswith("file://")
        path = Path(unquote(urlparse(location).path) if as_uri else location)
        if not path.is_absolute():
            return None
        root = artifact_root(tracking_uri())
        implicit = path.parts[-2:] == (ARTIFACT_FOLDER, "0")
        parent = root if root is not None and implicit else path.parent
        return (parent / folder).as_uri() if as_uri else str(parent / folder)
    return None


@contextmanager
def run_location(name: str | None) -> Iterator[str | None]:
    """Inside, a run that starts goes to experiment ``name`` unless the user chose another.

    - ``MLFLOW_EXPERIMENT_NAME`` / ``MLFLOW_EXPERIMENT_ID`` set by the user: kept.
    - ``mlflow run --experiment-name X`` (its run is not in ``Default``): that run is adopted
      (and when X is ``name``, the experiment is marked as a model-training one).
    - ``mlflow run`` with no experiment: it made its run in ``Default`` before our code
      started. A fresh run starts in ``name`` instead; the id of the run it replaces is
      yielded, for :meth:`Tracker.take_over` (which leaves it there as a pointer).

    Args:
        name: the experiment, or None to change nothing (e.g. a resumed run).

    Yields:
        The id of the replaced `mlflow run` run, or None.
    """
    saved = {key: os.environ.get(key) for key in _RUN_ENV}
    replaced = None
    try:
        launched = saved["MLFLOW_RUN_ID"]
        if name is None:
            pass
        elif launched:
            client = MlflowClient()
            experiment_id = client.get_run(launched).info.experiment_id
            chosen = client.get_experiment(experiment_id).name
            if chosen == DEFAULT_EXPERIMENT:
                replaced = launched
                os.environ.pop("MLFLOW_RUN_ID")
                os.environ["MLFLOW_EXPERIMENT_ID"] = ensure_experiment(name)
            elif chosen == name:  # `mlflow run --experiment-name <ours>` created it
                ensure_experiment(name)
        elif not (os.environ.get("MLFLOW_EXPERIMENT_NAME") or saved["MLFLOW_EXPERIMENT_ID"]):
            os.environ["MLFLOW_EXPERIMENT_ID"] = ensure_experiment(name)
        yield replaced
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def system_metrics() -> Iterator[None]:
    """Inside, every run that starts logs system metrics (``system/*``).

    CPU, memory, disk, network and (with an NVIDIA GPU and nvidia-ml-py) GPU utilisation,
    every 10 s by default (``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL``).
    ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false`` turns it off.
    """
    key = "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"
    if key in os.environ:
        yield
        return
    os.environ[key] = "true"
    try:
        yield
    finally:
        os.environ.pop(key, None)
