"""The only library module that talks to MLflow.

Where runs go: wherever ``MLFLOW_TRACKING_URI`` points, else MLflow's own default, which
on our pinned mlflow is ``sqlite:///mlflow.db`` in the working directory with artifacts
under ``./mlruns``. ``mlflow run`` creates its run in that same store before our code
starts, so we never set a URI ourselves; :data:`DEFAULT_TRACKING_URI` only documents it
(and is what the README's ``mlflow ui`` command opens).

Experiments receive a :class:`Tracker` bound to one run and never import mlflow.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import os
import signal
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
import yaml
from matplotlib.figure import Figure
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from lfxai.config import ConfigError, to_flat_dict
from lfxai.models.stored import (
    RECIPE_FILE,
    STATE_FILE,
    EncoderRefused,
    load_encoder_files,
    write_encoder_files,
)
from lfxai.redact import has_secret, redact

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
_MAX_BATCH = 1000  # MLflow's log_batch limit on metrics per call
# The tags that say what a run is; nested runs inherit them from their parent, so a search
# by data set, experiment or profile finds every run of a sweep or grid.
IDENTITY_TAGS = ("lfxai.dataset", "lfxai.experiment", "lfxai.profile", "lfxai.version")
# The identity a resumed run must share with the command that resumes it (not the version:
# a fix of the code may be resumed into a run of the previous one).
RESUME_IDENTITY = ("dataset", "experiment", "profile")
ERROR_TAG = "lfxai.error"  # why a run FAILED
STOPPED_TAG = "lfxai.stopped"  # why a run was KILLED (the signal that stopped it)
RESUMED_INTO_TAG = "lfxai.resumed_into"  # on the run `mlflow run` made for a resume
MOVED_TO_TAG = "lfxai.moved_to"  # on the run `mlflow run` made in Default (see take_over)
# A working top-level run refreshes HEARTBEAT_TAG (UTC, ISO 8601) every HEARTBEAT_S seconds
# (LFXAI_HEARTBEAT_S overrides) and declares in STALE_AFTER_TAG how long a silence means its
# process is dead (SIGKILLed, machine lost): STALE_BEATS beats, 300 s by default; a sweep
# declares its own grace period. Such a RUNNING run may be resumed, and the next invocation
# ends it KILLED (end_stale_runs).
HEARTBEAT_TAG = "lfxai.heartbeat"
STALE_AFTER_TAG = "lfxai.stale_after"
HEARTBEAT_ENV = "LFXAI_HEARTBEAT_S"
HEARTBEAT_S = 30.0
STALE_BEATS = 10
STALE_AFTER_S = STALE_BEATS * HEARTBEAT_S  # for a run that declares no bound of its own
# A `mlflow run` run our code never reached (no heartbeat: its launcher died first, or is
# still building a conda environment) is taken for dead this long after its start.
UNCLAIMED_STALE_S = 3600.0
# Where a run's code came from (`mlflow run`: the project, its entry point and git commit);
# nested runs inherit them too, so the UI shows the project, not the entry point script.
SOURCE_TAG_PREFIXES = ("mlflow.source.", "mlflow.project.", "mlflow.gitRepoURL")
DEFAULT_EXPERIMENT = "Default"  # where `mlflow run` puts a run when nobody chose an experiment
# The UI opens an experiment with this kind in its "Model training" view (runs table, charts),
# not in the GenAI view (traces) MLflow 3 shows by default.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # the run's description in the UI
RUN_NUMBER_TAG = "lfxai.run_number"


class Tracker:
    """Logs params, step-metrics, tables, figures, arrays and models to one MLflow run.

    Args:
        run_id: the run to log to.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.client = MlflowClient()
        self.heartbeat: Heartbeat | None = None  # set by tracked_run for a top-level run

    # -- params, tags, metrics -------------------------------------------------------------
    # Every value written here passes through `redact`: no credential reaches the store.
    def log_params(self, params: dict[str, Any], prefix: str = "") -> None:
        items = [Param(f"{prefix}{k}", redact(str(v))) for k, v in params.items()]
        if items:
            self.client.log_batch(self.run_id, params=items)

    def set_tags(self, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, redact(str(value)))

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        """Logs several metrics at one step in a single request (never call per batch)."""
        self.log_metric_rows([(k, float(v), step) for k, v in metrics.items()])

    def log_metric_rows(self, rows: list[tuple[str, float, int]]) -> None:
        """Logs ``(key, value, step)`` rows in batches: a whole curve in one request."""
        timestamp = int(pd.Timestamp.now().timestamp() * 1000)
        metrics = [Metric(k, float(v), timestamp, int(s)) for k, v, s in rows]
        for start in range(0, len(metrics), _MAX_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[start : start + _MAX_BATCH])

    def metric_history(self, key: str) -> list[tuple[int, float]]:
        """``(step, value)`` pairs already logged under ``key``."""
        return [(m.step, m.value) for m in self.client.get_metric_history(self.run_id, key)]

    def log_new_points(self, key: str, points: list[tuple[int, float]]) -> None:
        """Logs the ``(step, value)`` points whose step ``key`` lacks (a resumed curve)."""
        have = {step for step, _ in self.metric_history(key)}
        self.log_metric_rows([(key, v, s) for s, v in points if s not in have])

    def tags(self) -> dict[str, str]:
        """The run's current tags (progress markers of a resumed run among them)."""
        return dict(self.client.get_run(self.run_id).data.tags)

    def params(self) -> dict[str, str]:
        """The run's params as logged so far."""
        return dict(self.client.get_run(self.run_id).data.params)

    def metrics(self) -> dict[str, float]:
        """The latest value of each metric the run logged so far."""
        return dict(self.client.get_run(self.run_id).data.metrics)

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

    # -- artifacts -------------------------------------------------------------------------
    def _log_bytes(self, data: bytes, path: str) -> None:
        directory, name = os.path.split(path)
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / name
            file.write_bytes(data)
            self.client.log_artifact(self.run_id, str(file), directory or None)

    def log_dict(self, data: dict[str, Any], path: str) -> None:
        self._log_bytes(redact(yaml.safe_dump(data, sort_keys=False)).encode(), path)

    def log_table(self, frame: pd.DataFrame, path: str) -> None:
        self._log_bytes(redact(frame.to_csv(index=False)).encode(), path)

    def log_array(self, array: np.ndarray | torch.Tensor, path: str) -> None:
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

    def log_folder(self, folder: Path, path: str | None = None) -> None:
        """Logs every file under ``folder`` (its tree kept) under artifact ``path``."""
        self.client.log_artifacts(self.run_id, str(folder), path)

    def log_figure(self, figure: Figure, path: str) -> None:
        """Logs a figure as PNG and PDF (``path`` without extension)."""
        for fmt in ("png", "pdf"):
            buffer = io.BytesIO()
            figure.savefig(buffer, format=fmt, bbox_inches="tight", dpi=150)
            self._log_bytes(buffer.getvalue(), f"{path}.{fmt}")

    def log_file(self, file: Path, directory: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(file), directory)

    def log_state_dict(self, module: torch.nn.Module, path: str) -> None:
        """Logs the module's state dict as CPU tensors, loadable without a GPU."""
        state = {key: value.detach().cpu() for key, value in module.state_dict().items()}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self._log_bytes(buffer.getvalue(), path)

    def load_state_dict(self, path: str) -> dict[str, torch.Tensor]:
        with tempfile.TemporaryDirectory() as tmp:
            local = self.client.download_artifacts(self.run_id, path, tmp)
            return torch.load(local, map_location="cpu", weights_only=True)

    def load_array(self, path: str) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            return np.load(self.client.download_artifacts(self.run_id, path, tmp))

    # -- models ----------------------------------------------------------------------------
    def log_encoder_model(
        self,
        model: torch.nn.Module,
        example: torch.Tensor,
        registered_model_name: str | None = None,
        module: str = "encoder",
    ) -> str:
        """Logs ``model``'s encoder as the artifact ``encoder``, without pickle, and
        optionally registers it: the one way lfxai logs a model.

        The artifact is an MLflow PyTorch model in MLflow's pickle-free ``pt2`` format (a
        ``torch.export`` graph, dynamic in the batch size), which the UI shows with its
        signature and input example, plus our recipe and tensor-only state as its extra
        files (:mod:`lfxai.models.stored`), from which :func:`load_encoder` rebuilds the
        module from our own code. A copy of the encoder is exported on the CPU in eval mode;
        the caller's module stays on its device with its own train/eval flags.

        Args:
            model: built by :func:`lfxai.models.registry.build_model` (``model.recipe``).
            example: a batch of inputs; its first two rows are the input example (two:
                ``torch.export`` fixes a batch size of one, and a single row is repeated).
            registered_model_name: registers the model under this name.
            module: the encoder's sub-module of ``model``.

        Returns:
            The model URI (``models:/<name>/<version>`` when registered).
        """
        from mlflow.models import infer_signature

        active = mlflow.active_run()
        if active is None or active.info.run_id != self.run_id:
            raise RuntimeError("log_encoder_model needs this tracker's run to be the active run")
        encoder = copy.deepcopy(model.get_submodule(module)).cpu().eval()
        rows = example[:2].detach().cpu()
        if len(rows) == 1:
            rows = torch.cat([rows, rows])
        with torch.no_grad():
            output = encoder(rows).numpy()
        with tempfile.TemporaryDirectory() as tmp:
            files = write_encoder_files(model, module, Path(tmp))
            info = mlflow.pytorch.log_model(
                encoder,
                name="encoder",
                serialization_format="pt2",
                pip_requirements=[
                    f"torch=={torch.__version__.split('+')[0]}",
                    f"numpy=={np.__version__}",
                ],
                signature=infer_signature(rows.numpy(), output),
                input_example=rows.numpy(),
                registered_model_name=registered_model_name,
                extra_files=[str(file) for file in files],
            )
        if registered_model_name and info.registered_model_version is not None:
            return f"models:/{registered_model_name}/{info.registered_model_version}"
        return info.model_uri

    def load_registered_model(self, name: str, alias: str) -> tuple[torch.nn.Module, str]:
        """The encoder version of ``name`` that ``alias`` points at, on the CPU
        (:func:`load_encoder`: never unpickled).

        Returns:
            The module and its URI with the version resolved (``models:/<name>/<version>``).

        Raises:
            LookupError: no such registered model or alias (the message says which).
            EncoderRefused: the version is not an encoder lfxai loads (see :func:`load_encoder`).
        """
        try:
            version = self.client.get_model_version_by_alias(name, alias).version
        except MlflowException as error:
            raise LookupError(f"models:/{name}@{alias}: {error.message}") from None
        uri = f"models:/{name}/{version}"
        return load_encoder(uri), uri

    # -- nested runs -----------------------------------------------------------------------
    def child_runs(self) -> list[Any]:
        """Runs nested under this one (any status)."""
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        return self.client.search_runs(
            [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'"
        )

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
            experiment_id = self.client.get_run(self.run_id).info.experiment_id
            first = {MLFLOW_PARENT_RUN_ID: self.run_id, **inherited, **own}
            run_id = self.client.create_run(
                experiment_id, run_name=run_name, tags=first
            ).info.run_id
        elif own:
            Tracker(run_id).set_tags(own)
        with mlflow.start_run(run_id=run_id, run_name=run_name, nested=True) as run:
            child = (_ResumedTracker if reopened else Tracker)(run.info.run_id)
            child.set_tags(inherited)
            child.delete_tags(ERROR_TAG, STOPPED_TAG)  # a reopened child's old outcome
            with _ended_as_killed_when_stopped(child):
                yield child

    def delete_tags(self, *keys: str) -> None:
        """Removes those of ``keys`` the run has (e.g. a resumed run's stale outcome)."""
        present = self.tags()
        for key in keys:
            if key in present:
                self.client.delete_tag(self.run_id, key)

    # -- what a user reads: names, descriptions, data sets, registry entries ----------------
    def run_number(self) -> int:
        """This run's number in its experiment (``#7`` in its name), kept when resumed.

        One more than the highest number among the experiment's latest runs; two runs
        started in the same second may share a number (their names still differ by settings).
        """
        tags = self.tags()
        if RUN_NUMBER_TAG in tags:
            return int(tags[RUN_NUMBER_TAG])
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        latest = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{RUN_NUMBER_TAG}` IS NOT NULL",
            order_by=["attributes.start_time DESC"],
            max_results=50,
        )
        number = 1 + max((int(r.data.tags[RUN_NUMBER_TAG]) for r in latest), default=0)
        self.set_tags({RUN_NUMBER_TAG: number})
        return number

    def experiment_name(self) -> str:
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        return self.client.get_experiment(experiment_id).name

    def set_description(self, text: str) -> None:
        """The run's description (Markdown), shown at the top of its page in the UI."""
        self.set_tags({NOTE_TAG: text})

    def append_description(self, text: str) -> None:
        """Adds a paragraph to the run's description."""
        current = self.tags().get(NOTE_TAG, "")
        self.set_description(f"{current}\n\n{text}" if current else text)

    def log_text(self, text: str, path: str) -> None:
        self._log_bytes(redact(text).encode(), path)

    def log_dataset(
        self,
        name: str,
        x: torch.Tensor,
        y: torch.Tensor,
        source: Path,
        digest: str,
        context: str,
    ) -> None:
        """Logs a data set the run used as a run input (the UI's Datasets panel).

        Args:
            name: e.g. ``mnist-standard-train``.
            x: ``(N, ...)`` inputs (a tensor, or dSprites' ``PackedImages``); their dtype and
                shape are logged, never their values.
            y: ``(N,)`` labels.
            source: the folder of the provisioned files the data was read from.
            digest: identifies the data (see :func:`data_digest`).
            context: what the run used it for (``train``, ``test``, ``explain``).
        """
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        with warnings.catch_warnings():
            # MLflow registers its local-file source twice (for "" and "file:"), both the
            # same class, and warns that the path "can be interpreted in multiple ways".
            warnings.filterwarnings(
                "ignore",
                message="The specified dataset source can be interpreted",
                category=UserWarning,
            )
            # Only dtype and shape are logged: a zero-stride stand-in of x's shape and dtype
            # avoids copying the data (or decoding dSprites' packed images) just for that.
            dtype = torch.empty((), dtype=x.dtype).numpy().dtype
            dataset = mlflow.data.from_numpy(
                np.broadcast_to(np.zeros((), dtype=dtype), tuple(x.shape)),
                source=Path(source).resolve().as_uri(),
                targets=y.detach().cpu().numpy(),
                name=name,
                digest=digest,
            )
        entry = DatasetInput(
            dataset._to_mlflow_entity(), [InputTag(MLFLOW_DATASET_CONTEXT, context)]
        )
        try:
            self.client.log_inputs(self.run_id, datasets=[entry])
        except MlflowException:
            # Two workers logging the same new data set race in MLflow's store (select, then
            # insert; the transaction rolls back): the slower insert fails on the data set's
            # key. The row exists now, so a second call only links this run to it; any
            # other failure fails again and is raised.
            self.client.log_inputs(self.run_id, datasets=[entry])

    def annotate_model_version(
        self,
        name: str,
        version: str,
        model_description: str,
        version_description: str,
        tags: dict[str, Any],
        alias: str | None = None,
    ) -> None:
        """Describes a registered model and one of its versions; moves ``alias`` onto it.

        Args:
            name: the registered model.
            version: the version this run registered.
            model_description: what every version of ``name`` is (set when it differs).
            version_description: what this version is (experiment, profile, loss, data).
            tags: set on the version, and those shared by every version on the model too.
            alias: e.g. the profile (``paper``): ``models:/<name>@paper`` then loads this
                version, the newest of that profile.
        """
        model = self.client.get_registered_model(name)
        if model.description != model_description:
            self.client.update_registered_model(name, description=model_description)
        self.client.update_model_version(name, version, description=version_description)
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, str(value))
        if alias:
            self.move_alias(name, alias, version)

    def move_alias(self, name: str, alias: str, version: str, attempts: int = 3) -> None:
        """Points ``alias`` of ``name`` at ``version`` unless a newer version already holds it.

        Workers sharing a tracking server register versions of one model at once. The SQL
        store writes an alias by reading it and then inserting or updating, so when two
        workers set a new alias together the slower insert fails on the alias's unique key
        (PostgreSQL: ``UniqueViolation``). Such a failure is a lost race, not an error: the
        alias is read again and, if it still points at an older version, written again.
        The alias ends on the newest version, whichever worker finishes last.
        """
        for attempt in range(1, attempts + 1):
            current = self.model_version_by_alias(name, alias)
            if current is not None and int(current.version) >= int(version):
                return  # this version, or a newer one another worker registered
            try:
                self.client.set_registered_model_alias(name, alias, version)
                return
            except MlflowException:
                lost_race = self.model_version_by_alias(name, alias) is not None
                if current is not None or not lost_race or attempt == attempts:
                    raise

    def take_over(self, launched_run_id: str) -> None:
        """Continues here the run `mlflow run` made in ``Default`` (see :func:`run_location`).

        Its source tags (project, entry point, git commit) are copied here. It stays in
        ``Default`` as a pointer (`mlflow run` ends it when the process exits, and a deleted
        run would make that fail): named after this run's experiment, tagged
        ``lfxai.moved_to``, with a description linking here.
        """
        launched = self.client.get_run(launched_run_id)
        source = {k: v for k, v in launched.data.tags.items() if k.startswith(SOURCE_TAG_PREFIXES)}
        self.set_tags(source)
        experiment = self.experiment_name()
        note = (
            f"`mlflow run` started this run in {DEFAULT_EXPERIMENT}; the work ran as run "
            f"`{self.run_id}` of the experiment `{experiment}`. Pass `--experiment-name "
            f"{experiment}` to `mlflow run` to start there directly."
        )
        tags = {MOVED_TO_TAG: self.run_id, "mlflow.runName": f"-> {experiment}", NOTE_TAG: note}
        Tracker(launched_run_id).set_tags(tags)

    # -- reusing registered models ---------------------------------------------------------
    def model_versions(self, name: str) -> list[Any]:
        """The versions of registered model ``name``, newest first (empty: no such model)."""
        try:
            versions = self.client.search_model_versions(f"name = '{name}'")
        except MlflowException:
            return []
        return sorted(versions, key=lambda v: int(v.version), reverse=True)

    def model_version_by_alias(self, name: str, alias: str) -> Any | None:
        """The version of ``name`` that ``alias`` (e.g. ``paper``) points to, or None."""
        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None

    def model_aliases(self, name: str) -> list[str]:
        """The aliases of registered model ``name`` (empty when it has none or is missing)."""
        try:
            return sorted(self.client.get_registered_model(name).aliases)
        except MlflowException:
            return []

    def registered_models(self, prefix: str = "") -> list[str]:
        """Names of the registered models starting with ``prefix``."""
        return sorted(
            m.name for m in self.client.search_registered_models() if m.name.startswith(prefix)
        )


class _ResumedTracker(Tracker):
    """The tracker of a resumed (or reopened nested) run: what an earlier attempt logged
    stays, once.

    A param the run has keeps its first value: MLflow refuses to change a logged param, and
    the resumed attempt logs its settings and set-up again (equal settings may print
    differently: ``50`` from YAML, ``50.0`` from the command line; :func:`check_resumable`
    compared them typed), and e.g. ``device_used`` may change with the machine. A metric
    point whose key and step an earlier attempt logged is not logged again (a curve
    retrained to the same point, a summary logged before the interruption).
    """

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self._earlier_keys = set(self.client.get_run(run_id).data.metrics)
        self._earlier_steps: dict[str, set[int]] = {}

    def log_params(self, params: dict[str, Any], prefix: str = "") -> None:
        have = self.client.get_run(self.run_id).data.params
        super().log_params({k: v for k, v in params.items() if f"{prefix}{k}" not in have}, prefix)

    def log_metric_rows(self, rows: list[tuple[str, float, int]]) -> None:
        super().log_metric_rows([r for r in rows if not self._logged_before(r[0], int(r[2]))])

    def _logged_before(self, key: str, step: int) -> bool:
        if key not in self._earlier_keys:
            return False
        if key not in self._earlier_steps:  # one request per key an earlier attempt logged
            history = self.client.get_metric_history(self.run_id, key)
            self._earlier_steps[key] = {m.step for m in history}
        return step in self._earlier_steps[key]


class Stopped(BaseException):
    """A stop signal (SIGTERM, SIGINT) arrived: the open runs end KILLED, the process exits.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` of the
    experiments swallows it.

    Args:
        signum: the signal received.
    """

    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum  # what a shell reports for a process killed by it
        self.reason = f"{self.signal_name} received: the run was stopped"  # STOPPED_TAG
        super().__init__(f"stopped by {self.signal_name}")


class ResumeRefused(ConfigError):
    """The run named by ``resume_run_id`` must not be resumed by this command."""


def _stop_reason(stop: BaseException) -> str:
    return stop.reason if isinstance(stop, Stopped) else "KeyboardInterrupt: the run was stopped"


@contextmanager
def _ended_as_killed_when_stopped(tracker: Tracker) -> Iterator[None]:
    """Ends the active run (``tracker``'s) KILLED, reason tagged, if a stop interrupts it."""
    try:
        yield
    except (Stopped, KeyboardInterrupt) as stop:
        with contextlib.suppress(Exception):  # the store may be what failed
            tracker.set_tags({STOPPED_TAG: _stop_reason(stop)})
        active = mlflow.active_run()
        if active is not None and active.info.run_id == tracker.run_id:
            mlflow.end_run("KILLED")
        raise


def error_text(error: BaseException) -> str:
    """What :data:`ERROR_TAG` says about ``error``: its type and message, redacted, cut short."""
    return redact(f"{type(error).__name__}: {error}")[:5000]


@contextmanager
def tracked_run(run_name: str, run_id: str | None = None) -> Iterator[Tracker]:
    """Opens (or, under ``mlflow run``, adopts) a run; FAILED if the body raises, KILLED if
    a stop (:class:`Stopped`, ``KeyboardInterrupt``) interrupts it.

    While the block runs, a :class:`Heartbeat` (``tracker.heartbeat``) refreshes the run's
    :data:`HEARTBEAT_TAG`, so that a run left RUNNING by a dead process can be told from a
    live one (:func:`check_resumable`, :func:`end_stale_runs`).

    Args:
        run_name: name shown in the MLflow UI.
        run_id: continue this run instead (resume; check it first with
            :func:`check_resumable`): its earlier outcome tags are removed and the params
            it has keep their values. Otherwise ``MLFLOW_RUN_ID`` set by ``mlflow run`` is
            adopted, or a new run is created.
    """
    every = heartbeat_every()
    with mlflow.start_run(run_id=run_id, run_name=run_name) as run:
        tracker = (Tracker if run_id is None else _ResumedTracker)(run.info.run_id)
        tracker.set_tags({"mlflow.runName": run_name})
        if run_id is not None:
            tracker.delete_tags(ERROR_TAG, STOPPED_TAG)
        tracker.heartbeat = Heartbeat(tracker.run_id, every, STALE_BEATS * every)
        with tracker.heartbeat, _ended_as_killed_when_stopped(tracker):
            try:
                yield tracker
            except (Stopped, KeyboardInterrupt):
                raise
            except BaseException as error:
                tracker.set_tags({ERROR_TAG: error_text(error)})
                raise


def _now() -> datetime:
    return datetime.now(UTC)


def heartbeat_every() -> float:
    """Seconds between a run's heartbeats: ``LFXAI_HEARTBEAT_S``, else :data:`HEARTBEAT_S`."""
    raw = os.environ.get(HEARTBEAT_ENV, "").strip()
    try:
        every = float(raw) if raw else HEARTBEAT_S
    except ValueError:
        every = float("nan")
    if not every > 0:
        raise ConfigError(f"{HEARTBEAT_ENV} must be a positive number of seconds, got {raw!r}")
    return every


class Heartbeat:
    """Sets a run's :data:`HEARTBEAT_TAG` now and then every ``every`` seconds (a daemon
    thread), after declaring in :data:`STALE_AFTER_TAG` the silence that means it is dead.

    A context manager: the beats stop when the block ends.

    Args:
        run_id: the beating run.
        every: seconds between beats.
        stale_after: seconds without a beat after which any process may take it for dead.
    """

    def __init__(self, run_id: str, every: float, stale_after: float) -> None:
        self.run_id = run_id
        self.every = every
        self.client = MlflowClient()
        self._done = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.pace(every, stale_after)

    def beat(self) -> None:
        self.client.set_tag(self.run_id, HEARTBEAT_TAG, _now().isoformat(timespec="seconds"))

    def pace(self, every: float, stale_after: float) -> None:
        """Beats every ``every`` s from now on; the run is dead after ``stale_after`` s."""
        self.every = every
        self.client.set_tag(self.run_id, STALE_AFTER_TAG, f"{stale_after:g}")
        self.beat()
        self._wake.set()  # the thread restarts its wait with the new interval

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.every)
            self._wake.clear()
            if self._done.is_set():
                return
            with contextlib.suppress(Exception):  # a busy store: the next beat will do
                self.beat()

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(
            target=self._loop, name=f"lfxai-heartbeat-{self.run_id}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def _last_sign_of_life(run: Any) -> datetime:
    """The latest of a run's start, heartbeat and end."""
    stamps = [run.info.start_time, run.info.end_time]
    last = max(datetime.fromtimestamp(ms / 1000, UTC) for ms in stamps if ms)
    beat = run.data.tags.get(HEARTBEAT_TAG)
    if beat:
        with contextlib.suppress(ValueError):
            last = max(last, datetime.fromisoformat(beat))
    return last


def seconds_since_alive(run: Any, now: datetime | None = None) -> float:
    """Seconds since a run's last sign of life: its heartbeat, start or end."""
    return ((now or _now()) - _last_sign_of_life(run)).total_seconds()


def stale_after(run: Any) -> float:
    """The silence after which ``run`` is taken for dead: its own :data:`STALE_AFTER_TAG`,
    else :data:`STALE_AFTER_S` for a run that beat and :data:`UNCLAIMED_STALE_S` for one that
    never did (a `mlflow run` run our code never reached)."""
    tags = run.data.tags
    with contextlib.suppress(KeyError, ValueError):
        return float(tags[STALE_AFTER_TAG])
    return STALE_AFTER_S if HEARTBEAT_TAG in tags else UNCLAIMED_STALE_S


def _host(run: Any, get: Callable[[str], Any | None]) -> Any:
    """The run whose process ``run`` lives in: the run a `mlflow run` pointer moved or
    resumed into, the top-level ancestor of a nested run, else ``run`` itself."""
    tags = run.data.tags
    target = tags.get(MOVED_TO_TAG) or tags.get(RESUMED_INTO_TAG)
    host = (get(target) if target else None) or run
    for _ in range(8):  # nesting is one or two levels deep; a cycle must not hang
        parent_id = host.data.tags.get(MLFLOW_PARENT_RUN_ID)
        parent = get(parent_id) if parent_id else None
        if parent is None:
            break
        host = parent
    return host


def end_stale_runs(tracker: Tracker, launched_run: str | None = None) -> list[str]:
    """Ends KILLED the runs a dead process left RUNNING, in ``tracker``'s experiment and in
    ``Default`` (where `mlflow run` leaves its pointer runs).

    A run lives in the process of its host (:func:`_host`); it is dead when its host has
    shown no sign of life for longer than the host's :func:`stale_after`. Only lfxai's runs
    are touched: those with an ``lfxai.*`` tag, and `mlflow run` runs of the same project as
    ``launched_run`` that never reached our code. Each gets :data:`STOPPED_TAG` saying why.

    Args:
        tracker: the invocation's own run (left alone, as is ``launched_run``).
        launched_run: the run `mlflow run` made for this invocation (None: not launched so).

    Returns:
        One line per run ended: its id, name and why.
    """
    client, now = tracker.client, _now()
    keep = {tracker.run_id, launched_run}
    source = None
    if launched_run:
        source = client.get_run(launched_run).data.tags.get("mlflow.source.name")
    experiments = {client.get_run(tracker.run_id).info.experiment_id}
    default = client.get_experiment_by_name(DEFAULT_EXPERIMENT)
    if default is not None:
        experiments.add(default.experiment_id)
    running = client.search_runs(
        sorted(experiments), "attributes.status = 'RUNNING'", max_results=1000
    )
    cache = {run.info.run_id: run for run in running}

    def get(run_id: str) -> Any | None:
        if run_id not in cache:
            try:
                cache[run_id] = client.get_run(run_id)
            except MlflowException:
                cache[run_id] = None
        return cache[run_id]

    def ours(run: Any) -> bool:
        tags = run.data.tags
        return any(k.startswith("lfxai.") for k in tags) or (
            source is not None
            and tags.get("mlflow.source.type") == "PROJECT"
            and tags.get("mlflow.source.name") == source
        )

    ended = []
    for run in running:
        if run.info.run_id in keep or not ours(run):
            continue
        host = _host(run, get)
        bound = stale_after(host)
        if seconds_since_alive(host, now) <= bound:
            continue
        last = _last_sign_of_life(host)
        reason = (
            f"its process died: no sign of life from run {host.info.run_id} since "
            f"{last:%Y-%m-%d %H:%M:%S} UTC (dead after {bound:g} s); ended by run "
            f"{tracker.run_id}"
        )
        terminate_run(run.info.run_id, "KILLED", {STOPPED_TAG: reason})
        ended.append(f"{run.info.run_id} '{run.info.run_name}': {reason}")
    return ended


def check_resumable(
    run_id: str,
    identity: dict[str, str],
    settings_differ: Callable[[dict[str, str]], list[str]],
    now: datetime | None = None,
) -> str:
    """Checks, without changing anything, that this command may resume ``run_id``.

    Args:
        run_id: the run to resume (a top-level experiment run).
        identity: the command's ``dataset``, ``experiment`` and ``profile``.
        settings_differ: given the run's logged settings (``config.*`` params without the
            prefix), one line per setting the command would change (see
            :func:`lfxai.config.setting_differences`).
        now: the current time (tests).

    Returns:
        The run's status: ``FINISHED`` (nothing to do), or ``FAILED``, ``KILLED`` or a stale
        ``RUNNING`` (to be continued).

    Raises:
        ResumeRefused: no such run, a nested run, another data set / experiment / profile,
            other settings (each difference named), or a RUNNING run whose heartbeat is
            fresh (its process is still working on it).
    """
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ResumeRefused(
            f"resume_run_id {run_id!r}: no such run in the store {redact(tracking_uri())}"
        ) from None
    tags = run.data.tags
    if run.info.lifecycle_stage == "deleted":
        raise ResumeRefused(f"resume_run_id {run_id}: the run is deleted")
    if MLFLOW_PARENT_RUN_ID in tags:
        raise ResumeRefused(
            f"resume_run_id {run_id} is a nested run of {tags[MLFLOW_PARENT_RUN_ID]}: "
            "resume that parent run instead"
        )
    differ = [
        f"{key}: the run is {tags.get(f'lfxai.{key}')!r}, this command {identity[key]!r}"
        for key in RESUME_IDENTITY
        if tags.get(f"lfxai.{key}") != identity[key]
    ]
    if differ:
        raise ResumeRefused(
            f"resume_run_id {run_id} is a run of another kind, not resumed: " + "; ".join(differ)
        )
    prefix = "config."  # how Tracker.log_config logs the settings
    logged = {k[len(prefix) :]: v for k, v in run.data.params.items() if k.startswith(prefix)}
    if logged:  # empty: the first attempt stopped before it logged its settings
        differ = settings_differ(logged)
        if differ:
            raise ResumeRefused(
                f"resume_run_id {run_id} was started with other settings, not resumed "
                "(resume with the run's settings, or start a new run): " + "; ".join(differ)
            )
    status = run.info.status
    if status == "RUNNING":
        quiet, bound = seconds_since_alive(run, now), stale_after(run)
        if quiet <= bound:
            raise ResumeRefused(
                f"resume_run_id {run_id} is RUNNING and alive (last heartbeat {quiet:.0f} s "
                f"ago; a run is taken for dead after {bound:.0f} s without one): "
                "let it finish, or stop it (SIGTERM / Ctrl-C), then resume"
            )
    return status


def terminate_run(run_id: str, status: str, tags: dict[str, Any] | None = None) -> None:
    """Ends a RUNNING run that is not the active one: ``tags``, then ``status`` (a run that
    has ended already is left as it is)."""
    tracker = Tracker(run_id)
    if tracker.client.get_run(run_id).info.status == "RUNNING":
        tracker.set_tags(tags or {})
        tracker.client.set_terminated(run_id, status)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for any other store (or in-memory)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def init_store(uri: str | None = None) -> str:
    """Creates or migrates a SQLite store once, under a file lock, before any run uses it.

    MLflow creates and migrates a SQLite database the first time a client opens it, without
    a lock: several processes doing so at once break it ("table _alembic_tmp_... already
    exists") and leave a file no client opens. Call this before starting concurrent workers
    (``make store``, ``python -m lfxai.tracking``); the entry points call it too. Other
    stores (a tracking server, PostgreSQL) are left to their owner.

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
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        with contextlib.suppress(ImportError):  # POSIX; elsewhere: unlocked, as MLflow does
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # creates / migrates the tables
        client.search_registered_models(max_results=1)
    return uri


# -- loading a logged encoder ---------------------------------------------------------------
def load_encoder(uri: str, device: str = "cpu") -> torch.nn.Module:
    """An encoder logged by lfxai, rebuilt from our own code; nothing from the store runs.

    Only the model's ``MLmodel`` (YAML, read as data) and our two files are downloaded: the
    recipe is checked field by field, the module built through the model registry, and the
    weights read with ``torch.load(weights_only=True)`` and loaded strictly
    (:mod:`lfxai.models.stored`). MLflow's pickled or ``pt2`` model beside them is never read.

    Args:
        uri: ``models:/<name>@<alias>``, ``models:/<name>/<version>``, ``runs:/<run id>/encoder``
            or a local model folder.
        device: where the module goes.

    Returns:
        The encoder, in eval mode.

    Raises:
        EncoderRefused: no model there, a model without our files (a pickled model logged by an
            older lfxai: the message says how to re-register it), or files that are not a
            valid recipe and tensor state (the bad value named).
    """
    from mlflow.models import Model

    uri, location = _model_location(uri)
    with tempfile.TemporaryDirectory() as tmp:

        def download(path: str) -> Path:
            return Path(mlflow.artifacts.download_artifacts(f"{location}/{path}", dst_path=tmp))

        try:
            pytorch = Model.load(download("MLmodel")).flavors.get("pytorch", {})
        except (MlflowException, OSError) as error:
            reason = _first_line(error) if isinstance(error, MlflowException) else error
            raise EncoderRefused(f"{uri}: no MLflow model there ({reason})") from None
        stored = {entry.get("path") for entry in pytorch.get("extra_files", [])}
        wanted = [f"extra_files/{file}" for file in (RECIPE_FILE, STATE_FILE)]
        if not set(wanted) <= stored:
            raise EncoderRefused(
                f"{uri} has no {RECIPE_FILE} and {STATE_FILE}: it is a pickled model (logged by "
                "an lfxai older than its pickle-free format, or not by lfxai), never loaded "
                "because unpickling runs code; re-register it: rerun the experiment that "
                "logged it with pretrained=false (and register_model=true)"
            )
        recipe, state = (download(path) for path in wanted)
        return load_encoder_files(recipe, state, uri, device)


def _model_location(uri: str) -> tuple[str, str]:
    """A model URI as ``(uri with an alias resolved to its version, artifact location)``.

    Registry URIs are resolved once, so that both files come from one version even while
    another worker moves the alias; ``runs:/`` URIs and local folders are their own location.

    Raises:
        EncoderRefused: no such registered model, alias, version or logged model.
    """
    if not uri.startswith("models:/"):
        return uri, uri.rstrip("/")
    client = MlflowClient()
    name, _, rest = uri.removeprefix("models:/").rstrip("/").partition("/")
    try:
        if "@" in name and not rest:
            name, alias = name.rsplit("@", 1)
            rest = str(client.get_model_version_by_alias(name, alias).version)
        elif not rest:  # models:/<model id>: a logged model, registered or not
            return uri, client.get_logged_model(name).artifact_location
        if not rest.isdigit():
            raise EncoderRefused(
                f"{uri}: expected models:/<name>@<alias>, models:/<name>/<version> or "
                "models:/<model id>"
            )
        return f"models:/{name}/{rest}", client.get_model_version_download_uri(name, rest)
    except MlflowException as error:
        raise EncoderRefused(f"{uri}: {_first_line(error)}") from None


def _first_line(error: MlflowException) -> str:
    return (error.message.strip().splitlines() or [""])[0]


def tracking_uri() -> str:
    """The store runs go to (the user's MLFLOW_TRACKING_URI wins)."""
    return mlflow.get_tracking_uri()


# -- where runs go -------------------------------------------------------------------------
def experiment_name(dataset: str, experiment: str) -> str:
    """The MLflow experiment of one experiment of one data set: ``mnist-roar_test``.

    One per (data set, experiment): its runs share their metrics and settings, so the runs
    table, the charts and Compare line them up; runs of another experiment would only add
    empty columns and charts.
    """
    return f"{dataset}-{experiment}"


def ensure_experiment(name: str) -> str:
    """The id of experiment ``name``, created if needed, marked as a model-training experiment."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(
                name,
                artifact_location=_beside_default(client, name),
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


def _beside_default(client: MlflowClient, name: str) -> str | None:
    """A local artifact folder for a new experiment next to ``Default``'s (``<root>/<name>``).

    A SQLite store without a server puts a new experiment's artifacts under ``./mlruns`` of
    the process that creates it, and ``mlflow run`` runs our code in the project folder: in
    the container that is the read-only ``/opt/lfxai``, not the store's volume. ``Default``
    was created where the user started, so its folder's parent is the store's artifact root.
    None (the store's own default) for a tracking server or remote artifact stores.
    """
    with contextlib.suppress(MlflowException):
        default = client.get_experiment_by_name(DEFAULT_EXPERIMENT)
        location = default.artifact_location if default is not None else ""
        folder = name.replace("/", "-")
        if location.startswith("file://"):
            return (Path(location.removeprefix("file://")).parent / folder).as_uri()
        if location.startswith("/"):  # the same form as Default's (a plain path)
            return str(Path(location).parent / folder)
    return None


_RUN_ENV = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")


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
    """Inside, every run that starts logs CPU, memory, disk, network and (with an NVIDIA GPU
    and nvidia-ml-py) GPU utilisation as ``system/*`` metrics, every 10 s by default
    (``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL``). ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false``
    turns it off."""
    key = "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"
    if key in os.environ:
        yield
        return
    os.environ[key] = "true"
    try:
        yield
    finally:
        os.environ.pop(key, None)


# -- reading runs back (the report) ----------------------------------------------------------
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
        return self.tags.get(MLFLOW_PARENT_RUN_ID)


class StoreReader:
    """Reads runs and their artifacts from a store (SQLite, a database, a tracking server)
    through MLflow's client only, so anything MLflow can serve works; reads never run code
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

    def _record(self, run: Any) -> RunRecord:
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
        """The runs of experiment ``experiment`` matching ``filter_string``, newest first
        (empty when the experiment does not exist)."""
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
        """An ``.npy`` (as ``{"": array}``) or ``.npz`` artifact, never unpickled; None when
        the run has no such file."""
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


# ===========================================================================================
# -- explaining a registered model (the `explain` entry point, lfxai.explain) ---------------
# Kept in one block: loading any registered encoder without running code from the store, and
# recording which model version a run consumed.
LFXAI_MODEL = "lfxai"  # logged by lfxai: rebuilt from its recipe and tensor state
PT2_MODEL = "pt2"  # anyone's nn.Module in MLflow's pickle-free pt2 format (a torch.export graph)
PT2_FILE = "model.pt2"  # MLflow's name for the archive, under the flavor's model_data folder
MODEL_TAG = "lfxai.model"  # prefix of the lineage tags (lfxai.model.name, ...)


@dataclasses.dataclass(frozen=True)
class ExplainedModel:
    """Which model a run explains, resolved once when it starts.

    Attributes:
        uri: as given (``models:/<name>@<alias>``, ``models:/<name>/<version>``,
            ``models:/<model id>``, ``runs:/<run id>/<path>`` or a local model folder).
        resolved: the URI that was loaded, an alias replaced by its version.
        kind: :data:`LFXAI_MODEL` or :data:`PT2_MODEL`.
        name, version, alias: the registered model, when the URI names one.
        model_id: MLflow's logged model id (from the model's ``MLmodel``).
        source_run: the run that logged the model.
        input_shape: one input's shape as the model's signature declares it (``-1``: any
            size), or None without a tensor signature.
    """

    uri: str
    resolved: str
    kind: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    model_id: str | None = None
    source_run: str | None = None
    input_shape: tuple[int, ...] | None = None

    def tags(self) -> dict[str, str]:
        """The run's lineage tags ``lfxai.model.<field>`` (fields that are set)."""
        fields = ("uri", "resolved", "kind", "name", "version", "alias", "model_id", "source_run")
        values = {field: getattr(self, field) for field in fields}
        return {f"{MODEL_TAG}.{k}": str(v) for k, v in values.items() if v is not None}


def load_explained_model(uri: str, device: str = "cpu") -> tuple[torch.nn.Module, ExplainedModel]:
    """Any registered encoder, loaded without running code from the store.

    An encoder lfxai logged (its model holds our recipe and tensor state) is rebuilt by
    :func:`load_encoder`. Any other model must be MLflow's pickle-free ``pt2`` format (what
    ``mlflow.pytorch.log_model(module, ..., serialization_format="pt2")`` writes): it is
    loaded by :func:`mlflow.pytorch.load_model`, which with
    ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` false first checks that every record of the
    archive is JSON, plain text or accepted by ``torch.load(weights_only=True)``, and is
    wrapped as an :class:`~lfxai.models.exported.ExportedEncoder`. A pickled model, a model
    that carries code (``code_paths``: loading would put it on ``sys.path``) or a session
    that allows unpickling is refused.

    Args:
        uri: see :attr:`ExplainedModel.uri`; a registry alias is resolved once, so the
            files all come from the version recorded.
        device: where the module goes.

    Raises:
        EncoderRefused: the URI does not resolve (no such model, alias, version or run), or
            the model is refused (the message says why, in one line).
    """
    from urllib.parse import urlparse

    from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION
    from mlflow.models import Model

    from lfxai.models.exported import ExportedEncoder

    if not urlparse(uri).scheme and not Path(uri).is_dir():  # a path, not a URI
        raise EncoderRefused(
            f"{uri}: no such model folder; expected models:/<name>@<alias>, "
            "models:/<name>/<version>, runs:/<run id>/<path> or a downloaded model folder"
        )
    resolved, location = _model_location(uri)
    name = version = alias = None
    if resolved.startswith("models:/") and resolved.count("/") == 2:
        name, version = resolved.removeprefix("models:/").split("/")
        alias = uri.rstrip("/").rsplit("@", 1)[1] if "@" in uri else None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            meta = mlflow.artifacts.download_artifacts(f"{location}/MLmodel", dst_path=tmp)
            model = Model.load(meta)
        except (MlflowException, OSError) as error:
            reason = _first_line(error) if isinstance(error, MlflowException) else error
            raise EncoderRefused(f"{uri}: no MLflow model there ({reason})") from None
        flavor = model.flavors.get("pytorch")
        if flavor is None:
            raise EncoderRefused(
                f"{uri} is not a PyTorch model (flavors {sorted(model.flavors)}); log the "
                "encoder with mlflow.pytorch.log_model(..., serialization_format='pt2')"
            )
        found = ExplainedModel(
            uri,
            resolved,
            PT2_MODEL,
            name,
            version,
            alias,
            getattr(model, "model_id", None),
            model.run_id,
            _signature_input_shape(model),
        )
        ours = {f"extra_files/{f}" for f in (RECIPE_FILE, STATE_FILE)}
        if ours <= {entry.get("path") for entry in flavor.get("extra_files") or []}:
            found = dataclasses.replace(found, kind=LFXAI_MODEL)
            return load_encoder(resolved, device), found
        if flavor.get("code"):
            raise EncoderRefused(
                f"{uri} carries code ({flavor['code']}) that loading would put on sys.path: "
                "refused; log the encoder without code_paths"
            )
        if MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get():
            raise EncoderRefused(
                f"{uri}: MLFLOW_ALLOW_PICKLE_DESERIALIZATION is true, so MLflow would load the "
                "model without checking it for pickled code; unset it (or set it to false)"
            )
        try:
            local = Path(mlflow.artifacts.download_artifacts(location, dst_path=tmp))
        except (MlflowException, OSError) as error:
            reason = _first_line(error) if isinstance(error, MlflowException) else error
            raise EncoderRefused(f"{uri}: the model's files do not download ({reason})") from None
        archive = local / str(flavor.get("model_data", "data")) / PT2_FILE
        if not archive.is_file():
            raise EncoderRefused(
                f"{uri} is a pickled PyTorch model, never loaded because unpickling runs code; "
                "register it with mlflow.pytorch.log_model(..., serialization_format='pt2')"
            )
        try:
            graph = mlflow.pytorch.load_model(str(local))
        except MlflowException as error:  # e.g. a record that is not pickle-free
            raise EncoderRefused(f"{uri}: {_first_line(error)}") from None
        except Exception as error:  # torch.export.load: an operator this torch does not have
            raise EncoderRefused(
                f"{uri}: its pt2 graph does not load ({type(error).__name__}: {_one_line(error)})"
            ) from None
    return ExportedEncoder(graph).to(device), found


def _signature_input_shape(model: Any) -> tuple[int, ...] | None:
    """One input's shape from a model's signature: one tensor input ``(-1, ...)``, or None."""
    signature = model.signature
    if signature is None or signature.inputs is None or not signature.inputs.is_tensor_spec():
        return None
    specs = signature.inputs.inputs
    if len(specs) != 1 or not specs[0].shape or specs[0].shape[0] != -1:
        return None
    return tuple(int(n) for n in specs[0].shape[1:])


def _one_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), "")


def record_explained_model(tracker: Tracker, model: ExplainedModel) -> None:
    """Records on ``tracker``'s run which model it explains: the tags
    ``lfxai.model.<field>`` (:meth:`ExplainedModel.tags`) and, when the logged model is in
    this store, MLflow's own model input (:class:`mlflow.entities.LoggedModelInput`: the run
    page lists the model among its logged models, as an input)."""
    from mlflow.entities import LoggedModelInput

    tracker.set_tags(model.tags())
    if model.model_id is None:
        return
    try:
        tracker.client.get_logged_model(model.model_id)
    except MlflowException:
        return  # a model folder from another store: the tags say what it was
    tracker.client.log_inputs(tracker.run_id, models=[LoggedModelInput(model.model_id)])


if __name__ == "__main__":  # python -m lfxai.tracking: create / migrate the default store
    print(f"MLflow store ready: {init_store()}")
