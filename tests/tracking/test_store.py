"""The store: URIs made absolute, artifacts beside the database, experiments created and marked."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlparse

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient

import lfxai.tracking.store
from lfxai.cli.launch import launch, placed_run
from lfxai.tracking import absolute_uri, ensure_experiment
from lfxai.tracking.store import _new_location, ui_command
from lfxai.tracking.tags import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND


def test_absolute_uri_resolves_a_relative_sqlite_path_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert absolute_uri("sqlite:///a/m.db?timeout=5") == f"sqlite:///{tmp_path}/a/m.db?timeout=5"
    for kept in ("sqlite:////abs/mlflow.db", "https://tracking-host:5000", "sqlite:///:memory:"):
        assert absolute_uri(kept) == kept


@pytest.mark.parametrize("uri", ["databricks", "postgresql://mlflow@db/mlflow"])
def test_absolute_uri_keeps_other_stores(uri: str) -> None:
    assert absolute_uri(uri) == uri


EXPERIMENT_NAME = "mnist-roar_test"


@pytest.fixture()
def store(tmp_path: Path, monkeypatch) -> Iterator[tuple[str, Path]]:
    """An absolute SQLite URI in ``tmp_path/store`` (not created); the process runs elsewhere.

    Yields the URI and the working directory, ``tmp_path/elsewhere``.
    """
    folder = tmp_path / "store"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # e.g. the project folder, where `mlflow run` runs our code
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    for key in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(key, raising=False)
    mlflow.set_tracking_uri(uri)
    yield uri, elsewhere
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def tiny_run() -> str:
    """A run of our tracking code in experiment :data:`EXPERIMENT_NAME`, one artifact."""
    ids = []

    def work() -> None:
        with placed_run(EXPERIMENT_NAME, "tiny") as tracker:
            tracker.log_dict({"a": 1}, "where.yaml")
            ids.append(tracker.run_id)

    assert launch(work, None, record_system_metrics=False) == 0
    return ids[0]


def stored_at(run_id: str) -> Path:
    """Where the run's ``where.yaml`` lies on disk."""
    uri = MlflowClient().get_run(run_id).info.artifact_uri
    return Path(unquote(urlparse(uri).path)) / "where.yaml"


def test_a_store_the_suite_creates_keeps_its_artifacts_beside_its_database(store) -> None:
    uri, elsewhere = store
    run_id = tiny_run()  # creates the store: launch -> init_store
    beside = Path(uri.removeprefix("sqlite:///")).parent / "mlruns"
    where = stored_at(run_id)
    assert where.is_file()
    assert where.is_relative_to(beside / EXPERIMENT_NAME)
    client = MlflowClient()
    assert client.get_experiment("0").artifact_location == str(beside / "0")  # Default too
    pointer = client.create_run("0")  # what `mlflow run` leaves in Default
    client.log_text(pointer.info.run_id, "x", "x.txt")
    client.set_terminated(pointer.info.run_id)
    assert (beside / "0" / pointer.info.run_id / "artifacts" / "x.txt").is_file()
    assert not (elsewhere / "mlruns").exists()


def test_a_store_mlflow_run_created_elsewhere_still_gets_our_artifacts_beside_it(
    store, tmp_path: Path, monkeypatch
) -> None:
    """`mlflow run` opens a new store first: Default in ./mlruns of where it was started."""
    uri, elsewhere = store
    launcher = tmp_path / "launcher"
    launcher.mkdir()
    monkeypatch.chdir(launcher)
    MlflowClient(tracking_uri=uri).search_experiments()  # MLflow creates it, as `mlflow run`
    monkeypatch.chdir(elsewhere)
    where = stored_at(tiny_run())
    beside = Path(uri.removeprefix("sqlite:///")).parent / "mlruns"
    assert where.is_file() and where.is_relative_to(beside / EXPERIMENT_NAME)
    assert not (elsewhere / "mlruns").exists()


def test_a_root_or_location_the_user_chose_is_kept(store, tmp_path: Path) -> None:
    uri, elsewhere = store
    chosen = tmp_path / "chosen"  # as `mlflow server --default-artifact-root` would set it
    SqlAlchemyStore(uri, str(chosen)).engine.dispose()
    client = MlflowClient()
    own = (tmp_path / "own").as_uri()
    client.create_experiment(EXPERIMENT_NAME, artifact_location=own)
    where = stored_at(tiny_run())
    assert where.is_file() and where.is_relative_to(tmp_path / "own")
    assert client.get_experiment_by_name(EXPERIMENT_NAME).artifact_location == own
    new = client.get_experiment(ensure_experiment("mnist-pretext"))
    assert new.artifact_location == str(chosen / "mnist-pretext")
    assert client.get_experiment("0").artifact_location == str(chosen / "0")
    assert not (elsewhere / "mlruns").exists()


def test_the_ui_command_opens_the_store_with_its_artifact_root(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'a b' / 'mlflow.db'}"
    assert shlex.split(ui_command(uri)) == [
        *("mlflow", "ui", "--backend-store-uri", uri),
        *("--default-artifact-root", str(tmp_path / "a b" / "mlruns")),
        *("--host", "127.0.0.1"),
    ]
    server = ui_command("https://user:s3cret@tracking-host:5000")
    assert "s3cret" not in server and "--default-artifact-root" not in server


class _Client:
    """What ``_new_location`` asks of a client: ``Default``'s artifact location."""

    def __init__(self, default: str | None | Exception) -> None:
        self.default = default

    def get_experiment_by_name(self, name: str):
        assert name == "Default"
        if isinstance(self.default, Exception):
            raise self.default
        return None if self.default is None else SimpleNamespace(artifact_location=self.default)


@pytest.mark.parametrize(
    ("default", "expected"),
    [
        # a folder the user chose, as a URI (quoted) or a plain path: the new one beside Default
        ("file:///data/my%20runs/0", "file:///data/my%20runs/mnist-pretext"),
        ("/data/my runs/0", "/data/my runs/mnist-pretext"),
        # MLflow's implicit <somewhere>/mlruns/0: beside the database instead
        ("/somewhere/mlruns/0", "/db/mlruns/mnist-pretext"),
        ("file:///somewhere/mlruns/0", "file:///db/mlruns/mnist-pretext"),
        # relative, remote, or no Default at all: the store's own default
        ("mlruns/0", None),
        ("s3://bucket/0", None),
        (None, None),
        (MlflowException("unreachable"), None),
    ],
)
def test_a_new_experiment_s_folder_follows_default_s_form(monkeypatch, default, expected):
    monkeypatch.setattr(lfxai.tracking.store, "tracking_uri", lambda: "sqlite:////db/mlflow.db")
    assert _new_location(_Client(default), "mnist/pretext") == expected


def test_an_experiment_is_created_marked_or_found_even_when_another_worker_wins(
    mlflow_store, monkeypatch
):
    client = MlflowClient()
    new = ensure_experiment("mnist-new")
    assert client.get_experiment(new).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    assert ensure_experiment("mnist-new") == new
    mine = client.create_experiment("mine", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    assert ensure_experiment("mine") == mine
    assert client.get_experiment(mine).tags[EXPERIMENT_KIND_TAG] == "genai_development"
    bare = client.create_experiment("bare")  # e.g. made beforehand by a test: marked now
    assert ensure_experiment("bare") == bare
    assert client.get_experiment(bare).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    # Another worker creates "raced" between our look-up and our create.
    raced = client.create_experiment("raced")
    real_get = MlflowClient.get_experiment_by_name
    looks = []

    def late_get(self, name):
        looks.append(name)
        return None if len(looks) == 1 else real_get(self, name)

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", late_get)
    assert ensure_experiment("raced") == raced
    assert looks[0] == looks[-1] == "raced"
    assert client.get_experiment(raced).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
