"""Reading runs back from a store (the report): plain records, tables, text and arrays."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lfxai.tracking.store import tracking_uri
from lfxai.tracking.tags import PARENT_TAG


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What the report needs of one run (a plain copy: no MLflow object leaves this module).

    Attributes:
        run_id: the run.
        experiment: the name of its MLflow experiment.
        experiment_id: that experiment's id.
        status: ``FINISHED``, ``FAILED``, ``RUNNING``, ...
        start_time, end_time: milliseconds since the epoch (end None while running).
        tags, params: as logged.
        metrics: the latest value of each metric.
    """

    run_id: str
    experiment: str
    experiment_id: str
    status: str
    start_time: int
    end_time: int | None
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]

    @property
    def parent(self) -> str | None:
        """The run this one is nested under (None: a top-level run)."""
        return self.tags.get(PARENT_TAG)


class StoreReader:
    """Reads runs and their artifacts from a store, through MLflow's client only.

    Anything MLflow can serve works (SQLite, a database, a tracking server); reads never run code
    from the store (tables, text and arrays only; arrays without pickle).

    Args:
        uri: the store; default: the one runs go to (:func:`tracking_uri`).
    """

    def __init__(self, uri: str | None = None) -> None:
        self.uri = uri or tracking_uri()
        self.client = MlflowClient(tracking_uri=self.uri)
        self._names: dict[str, str] = {}

    def experiment_names(self) -> list[str]:
        """The names of the store's active experiments."""
        return sorted(e.name for e in self.client.search_experiments())

    def _record(self, run: Run) -> RunRecord:
        experiment_id = run.info.experiment_id
        if experiment_id not in self._names:
            self._names[experiment_id] = self.client.get_experiment(experiment_id).name
        return RunRecord(
            run.info.run_id,
            self._names[experiment_id],
            experiment_id,
            run.info.status,
            int(run.info.start_time or 0),
            run.info.end_time,
            dict(run.data.tags),
            dict(run.data.params),
            dict(run.data.metrics),
        )

    def runs(self, experiment: str, filter_string: str = "") -> list[RunRecord]:
        """The runs of experiment ``experiment`` matching ``filter_string``, newest first.

        Empty when the experiment does not exist.
        """
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return []
        runs = self.client.search_runs(
            [found.experiment_id],
            filter_string=filter_string,
            order_by=["attributes.start_time DESC"],
            max_results=5000,
        )
        return [self._record(r) for r in runs]

    def run(self, run_id: str) -> RunRecord:
        """One run by id.

        Raises:
            LookupError: no such run in this store.
        """
        try:
            return self._record(self.client.get_run(run_id))
        except MlflowException:
            raise LookupError(f"no run {run_id!r} in the store {self.uri}") from None

    def children(self, run_id: str) -> list[RunRecord]:
        """The runs nested under ``run_id`` (any status), oldest first."""
        run = self.client.get_run(run_id)
        runs = self.client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
            order_by=["attributes.start_time ASC"],
            max_results=5000,
        )
        return [self._record(r) for r in runs]

    def artifact_paths(self, run_id: str, path: str = "") -> list[str]:
        """The artifact files and folders directly under ``path`` (empty if none)."""
        try:
            return [a.path for a in self.client.list_artifacts(run_id, path or None)]
        except (MlflowException, OSError):
            return []

    def _download(self, run_id: str, path: str, folder: str) -> Path | None:
        try:
            return Path(self.client.download_artifacts(run_id, path, folder))
        except (MlflowException, OSError):
            return None

    def read_text(self, run_id: str, path: str) -> str | None:
        """A text artifact, or None when the run has no such file."""
        with tempfile.TemporaryDirectory() as tmp:
            local = self._download(run_id, path, tmp)
            return local.read_text() if local is not None and local.is_file() else None

    def read_table(self, run_id: str, path: str) -> pd.DataFrame | None:
        """A CSV artifact as a DataFrame, or None when the run has no such file."""
        with tempfile.TemporaryDirectory() as tmp:
            local = self._download(run_id, path, tmp)
            return pd.read_csv(local) if local is not None and local.is_file() else None

    def read_arrays(self, run_id: str, path: str) -> dict[str, np.ndarray] | None:
        """An ``.npy`` (as ``{"": array}``) or ``.npz`` artifact, never unpickled.

        None when the run has no such file.
        """
        with tempfile.TemporaryDirectory() as tmp:
            local = self._download(run_id, path, tmp)
            if local is None or not local.is_file():
                return None
            loaded = np.load(local, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return {"": loaded}
            with loaded:
                return {key: loaded[key] for key in loaded.files}

    def read_bytes(self, run_id: str, path: str) -> bytes | None:
        """A binary artifact (e.g. a PNG), or None when the run has no such file."""
        with tempfile.TemporaryDirectory() as tmp:
            local = self._download(run_id, path, tmp)
            return local.read_bytes() if local is not None and local.is_file() else None

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """``(step, value)`` of one metric, by step."""
        history = self.client.get_metric_history(run_id, key)
        return sorted((m.step, m.value) for m in history)
