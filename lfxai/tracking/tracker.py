"""A :class:`Tracker` logs to one MLflow run: params, tags, curves, artifacts, nested runs.

Experiments receive a tracker bound to their run and never import mlflow. Every value
written here passes through :func:`lfxai.redact.redact`: no credential reaches the store.
"""

from __future__ import annotations

import dataclasses
import io
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
import yaml
from matplotlib.figure import Figure
from mlflow.entities import Metric, Param, Run
from mlflow.tracking import MlflowClient

from lfxai.config import to_flat_dict
from lfxai.redact import redact
from lfxai.tracking.heartbeat import Heartbeat
from lfxai.tracking.inputs import dataset_input
from lfxai.tracking.registry import RegisteredModels
from lfxai.tracking.stops import killed_when_stopped
from lfxai.tracking.store import DEFAULT_EXPERIMENT
from lfxai.tracking.tags import (
    ERROR_TAG,
    IDENTITY_TAGS,
    MOVED_TO_TAG,
    NOTE_TAG,
    PARENT_TAG,
    RUN_NAME_TAG,
    RUN_NUMBER_TAG,
    SOURCE_TAG_PREFIXES,
    STOPPED_TAG,
)

MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit on metrics per call
FIGURE_FORMATS = ("png", "pdf")


class Tracker(RegisteredModels):
    """Logs params, step-metrics, tables, figures, arrays and models to one MLflow run.

    Args:
        run_id: the run to log to.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.client = MlflowClient()
        self.heartbeat: Heartbeat | None = None  # set by tracked_run for a top-level run

    # -- params, tags, metrics -------------------------------------------------------------
    def log_params(self, params: dict[str, Any], prefix: str = "") -> None:
        """Logs ``params`` (``prefix`` before each key) in one request."""
        items = [Param(f"{prefix}{k}", redact(str(v))) for k, v in params.items()]
        if items:
            self.client.log_batch(self.run_id, params=items)

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Sets the run's tags (values as text)."""
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, redact(str(value)))

    def delete_tags(self, *keys: str) -> None:
        """Removes those of ``keys`` the run has (e.g. a resumed run's stale outcome)."""
        present = self.tags()
        for key in keys:
            if key in present:
                self.client.delete_tag(self.run_id, key)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        """Logs several metrics at one step in a single request (never call per batch)."""
        self.log_metric_rows([(k, float(v), step) for k, v in metrics.items()])

    def log_metric_rows(self, rows: list[tuple[str, float, int]]) -> None:
        """Logs ``(key, value, step)`` rows in batches: a whole curve in one request."""
        timestamp = int(time.time() * 1000)  # ms since the epoch, whatever the local zone
        metrics = [Metric(k, float(v), timestamp, int(s)) for k, v, s in rows]
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            batch = metrics[start : start + MAX_METRICS_PER_BATCH]
            self.client.log_batch(self.run_id, metrics=batch)

    def metric_history(self, key: str) -> list[tuple[int, float]]:
        """``(step, value)`` pairs already logged under ``key``."""
        return [(m.step, m.value) for m in self.client.get_metric_history(self.run_id, key)]

    def log_new_points(self, key: str, points: list[tuple[int, float]]) -> None:
        """Logs the ``(step, value)`` points whose step ``key`` lacks (a resumed curve)."""
        have = {step for step, _ in self.metric_history(key)}
        self.log_metric_rows([(key, v, s) for s, v in points if s not in have])

    def tags(self) -> dict[str, str]:
        """The run's current tags (progress markers of a resumed run among them)."""
        return dict(self._run().data.tags)

    def params(self) -> dict[str, str]:
        """The run's params as logged so far."""
        return dict(self._run().data.params)

    def metrics(self) -> dict[str, float]:
        """The latest value of each metric the run logged so far."""
        return dict(self._run().data.metrics)

    def log_config(self, identity: dict[str, str], config: Any) -> None:
        """The run set-up every experiment run gets: identity tags, settings, ``config.yaml``.

        Args:
            identity: values of :data:`IDENTITY_TAGS` without the ``lfxai.`` prefix
                (``dataset``, ``experiment``, ``profile``, ``version``).
            config: the resolved settings (a dataclass), logged as ``config.<key>`` params
                and, with the identity, as the artifact ``config.yaml``.
        """
        tags = {f"lfxai.{k}": v for k, v in identity.items()}
        unknown = sorted(set(tags) - set(IDENTITY_TAGS))
        if unknown:
            raise ValueError(f"unknown identity tags {unknown}; valid: {list(IDENTITY_TAGS)}")
        self.set_tags(tags)
        # Prefixed: `mlflow run` already logged the raw -P values under the bare names, and
        # MLflow refuses to log a param twice with a different value.
        self.log_params(to_flat_dict(config), prefix="config.")
        self.log_dict({**identity, **dataclasses.asdict(config)}, "config.yaml")

    def log_dataset(
        self, name: str, x: torch.Tensor, y: torch.Tensor, source: Path, digest: str, context: str
    ) -> None:
        """Logs a data set the run used as a run input (:func:`dataset_input`)."""
        entry = dataset_input(name, x, y, source, digest, context)
        try:
            self.client.log_inputs(self.run_id, datasets=[entry])
        except mlflow.exceptions.MlflowException:
            # Two workers logging the same new data set race in MLflow's store (select, then
            # insert; the transaction rolls back): the slower insert fails on the data set's
            # key. The row exists now, so a second call only links this run to it; any
            # other failure fails again and is raised.
            self.client.log_inputs(self.run_id, datasets=[entry])

    # -- artifacts -------------------------------------------------------------------------
    def log_text(self, text: str, path: str) -> None:
        """Logs ``text`` (redacted) as the artifact ``path``."""
        self.client.log_text(self.run_id, redact(text), path)

    def log_dict(self, data: dict[str, Any], path: str) -> None:
        """Logs ``data`` as YAML, keys in their order."""
        self.log_text(yaml.safe_dump(data, sort_keys=False), path)

    def log_table(self, frame: pd.DataFrame, path: str) -> None:
        """Logs a table as CSV, without its index."""
        self.log_text(frame.to_csv(index=False), path)

    def log_figure(self, figure: Figure, path: str) -> None:
        """Logs a figure as PNG and PDF (``path`` without extension)."""
        for fmt in FIGURE_FORMATS:
            options = {"format": fmt, "bbox_inches": "tight", "dpi": 150}
            self.client.log_figure(self.run_id, figure, f"{path}.{fmt}", save_kwargs=options)

    def log_array(self, array: np.ndarray | torch.Tensor, path: str) -> None:
        """Logs an array as ``.npy`` (read back without pickle)."""
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().numpy()
        buffer = io.BytesIO()
        np.save(buffer, array)
        self._log_bytes(buffer.getvalue(), path)

    def log_arrays(self, arrays: dict[str, np.ndarray], path: str) -> None:
        """Logs named arrays as one ``.npz`` (read back with :meth:`StoreReader.read_arrays`)."""
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        self._log_bytes(buffer.getvalue(), path)

    def log_state_dict(self, module: torch.nn.Module, path: str) -> None:
        """Logs the module's state dict as CPU tensors, loadable without a GPU."""
        state = {key: value.detach().cpu() for key, value in module.state_dict().items()}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self._log_bytes(buffer.getvalue(), path)

    def _log_bytes(self, data: bytes, path: str) -> None:
        # MLflow logs text, dicts and figures itself, binary files only from disk.
        folder = Path(path).parent.as_posix()
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / Path(path).name
            file.write_bytes(data)
            self.client.log_artifact(self.run_id, str(file), None if folder == "." else folder)

    def log_folder(self, folder: Path, path: str | None = None) -> None:
        """Logs every file under ``folder`` (its tree kept) under artifact ``path``."""
        self.client.log_artifacts(self.run_id, str(folder), path)

    def log_file(self, file: Path, directory: str | None = None) -> None:
        """Logs one file under artifact folder ``directory``."""
        self.client.log_artifact(self.run_id, str(file), directory)

    def load_state_dict(self, path: str) -> dict[str, torch.Tensor]:
        """A state dict this run logged, read as tensors only (``weights_only``)."""
        with tempfile.TemporaryDirectory() as tmp:
            local = self.client.download_artifacts(self.run_id, path, tmp)
            return torch.load(local, map_location="cpu", weights_only=True)

    def load_array(self, path: str) -> np.ndarray:
        """An ``.npy`` array this run logged (never unpickled)."""
        with tempfile.TemporaryDirectory() as tmp:
            return np.load(self.client.download_artifacts(self.run_id, path, tmp))

    # -- nested runs -----------------------------------------------------------------------
    def child_runs(self) -> list[Run]:
        """Runs nested under this one (any status)."""
        return self.find_runs({PARENT_TAG: self.run_id})

    def find_runs(self, tags: dict[str, Any]) -> list[Run]:
        """The runs of this run's experiment whose tags have these values (any status)."""
        condition = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        return self.client.search_runs([self._run().info.experiment_id], condition)

    @contextmanager
    def nested(
        self, run_name: str, run_id: str | None = None, tags: dict[str, Any] | None = None
    ) -> Iterator[Tracker]:
        """A child run: FINISHED on success, FAILED on error, KILLED when stopped.

        The child is created under this run explicitly (never adopted from the fluent API's
        state or ``MLFLOW_RUN_ID``), in this run's experiment, inherits its
        :data:`IDENTITY_TAGS` and source tags, and becomes the active run while the block
        runs. ``run_id`` reopens an earlier child instead. ``tags`` are given in the same
        request that creates the run: a process killed right after it leaves a run that
        still says what it was (e.g. its sweep trial).
        """
        inherited = {
            k: v
            for k, v in self.tags().items()
            if k in IDENTITY_TAGS or k.startswith(SOURCE_TAG_PREFIXES)
        }
        own = {k: redact(str(v)) for k, v in (tags or {}).items()}
        reopened = run_id is not None
        if run_id is None:
            experiment_id = self._run().info.experiment_id
            first = {PARENT_TAG: self.run_id, **inherited, **own}
            run_id = self.client.create_run(
                experiment_id, run_name=run_name, tags=first
            ).info.run_id
        elif own:
            Tracker(run_id).set_tags(own)
        with mlflow.start_run(run_id=run_id, run_name=run_name, nested=True) as run:
            child = (ResumedTracker if reopened else Tracker)(run.info.run_id)
            child.set_tags(inherited)
            child.delete_tags(ERROR_TAG, STOPPED_TAG)  # a reopened child's old outcome
            with killed_when_stopped(child):
                yield child

    # -- what a user reads: names, descriptions --------------------------------------------
    def run_number(self) -> int:
        """This run's number in its experiment (``#7`` in its name), kept when resumed.

        One more than the highest number among the experiment's latest runs; two runs
        started in the same second may share a number (their names still differ by settings).
        """
        tags = self.tags()
        if RUN_NUMBER_TAG in tags:
            return int(tags[RUN_NUMBER_TAG])
        latest = self.client.search_runs(
            [self._run().info.experiment_id],
            filter_string=f"tags.`{RUN_NUMBER_TAG}` IS NOT NULL",
            order_by=["attributes.start_time DESC"],
            max_results=50,
        )
        number = 1 + max((int(r.data.tags[RUN_NUMBER_TAG]) for r in latest), default=0)
        self.set_tags({RUN_NUMBER_TAG: number})
        return number

    def experiment_name(self) -> str:
        """The name of this run's MLflow experiment."""
        return self.client.get_experiment(self._run().info.experiment_id).name

    def set_name(self, name: str) -> None:
        """The run's name in the UI."""
        self.set_tags({RUN_NAME_TAG: name})

    def set_description(self, text: str) -> None:
        """The run's description (Markdown), shown at the top of its page in the UI."""
        self.set_tags({NOTE_TAG: text})

    def append_description(self, text: str) -> None:
        """Adds a paragraph to the run's description."""
        current = self.tags().get(NOTE_TAG, "")
        self.set_description(f"{current}\n\n{text}" if current else text)

    def end_as(self, status: str) -> None:
        """Ends the run (again) with ``status`` (e.g. a pruned trial's run: KILLED)."""
        self.client.set_terminated(self.run_id, status)

    def take_over(self, launched_run_id: str) -> None:
        """Continues here the run `mlflow run` made in ``Default`` (see ``run_location``).

        Its source tags (project, entry point, git commit) and its params (``name``,
        ``profile`` and every ``-P`` that `mlflow run` logged) are copied here, so a run has
        the same params and is found by the same ``params.*`` search however it was
        launched. It stays in ``Default`` as a pointer (`mlflow run` ends it when the
        process exits, and a deleted run would make that fail): named after this run's
        experiment, tagged ``lfxai.moved_to``, with a description linking here.
        """
        launched = self.client.get_run(launched_run_id)
        source = {k: v for k, v in launched.data.tags.items() if k.startswith(SOURCE_TAG_PREFIXES)}
        self.set_tags(source)
        # Redacted: a -P storage URL with a password is on the pointer (mlflow run logged
        # it verbatim, which the README warns about); it is not copied any further.
        self.log_params({k: redact(v) for k, v in launched.data.params.items()})
        experiment = self.experiment_name()
        note = (
            f"`mlflow run` started this run in {DEFAULT_EXPERIMENT}; the work ran as run "
            f"`{self.run_id}` of the experiment `{experiment}`. Pass `--experiment-name "
            f"{experiment}` to `mlflow run` to start there directly."
        )
        tags = {MOVED_TO_TAG: self.run_id, RUN_NAME_TAG: f"-> {experiment}", NOTE_TAG: note}
        Tracker(launched_run_id).set_tags(tags)

    def _run(self) -> Run:
        return self.client.get_run(self.run_id)


class ResumedTracker(Tracker):
    """The tracker of a resumed (or reopened nested) run: earlier values stay, once.

    A param the run has keeps its first value: MLflow refuses to change a logged param, and
    the resumed attempt logs its settings and set-up again (equal settings may print
    differently: ``50`` from YAML, ``50.0`` from the command line; ``check_resumable``
    compared them typed), and e.g. ``device_used`` may change with the machine. A metric
    point whose key and step an earlier attempt logged is not logged again (a curve
    retrained to the same point, a summary logged before the interruption).
    """

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self._earlier_keys = set(self._run().data.metrics)
        self._earlier_steps: dict[str, set[int]] = {}

    def log_params(self, params: dict[str, Any], prefix: str = "") -> None:
        """Logs the params the run does not have yet."""
        have = self._run().data.params
        super().log_params({k: v for k, v in params.items() if f"{prefix}{k}" not in have}, prefix)

    def log_metric_rows(self, rows: list[tuple[str, float, int]]) -> None:
        """Logs the points an earlier attempt did not log."""
        super().log_metric_rows([r for r in rows if not self._logged_before(r[0], int(r[2]))])

    def _logged_before(self, key: str, step: int) -> bool:
        if key not in self._earlier_keys:
            return False
        if key not in self._earlier_steps:  # one request per key an earlier attempt logged
            history = self.client.get_metric_history(self.run_id, key)
            self._earlier_steps[key] = {m.step for m in history}
        return step in self._earlier_steps[key]
