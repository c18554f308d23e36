"""The only library module that talks to MLflow.

Where runs go: wherever ``MLFLOW_TRACKING_URI`` points, else MLflow's own default, which
on our pinned mlflow is ``sqlite:///mlflow.db`` in the working directory with artifacts
under ``./mlruns``. ``mlflow run`` creates its run in that same store before our code
starts, so we never set a URI ourselves; :data:`DEFAULT_TRACKING_URI` only documents it
(and is what the README's ``mlflow ui`` command opens).

Experiments receive a :class:`Tracker` bound to one run and never import mlflow.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import logging
import os
import tempfile
import warnings
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
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import lfxai
from lfxai.config import to_flat_dict

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
_MAX_BATCH = 1000  # MLflow's log_batch limit on metrics per call
# The tags that say what a run is; nested runs inherit them from their parent, so a search
# by data set, experiment or profile finds every run of a sweep or grid.
IDENTITY_TAGS = ("lfxai.dataset", "lfxai.experiment", "lfxai.profile", "lfxai.version")
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


class _DropMessage(logging.Filter):
    """Drops log records whose message starts with ``prefix`` (one known, harmless warning)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


# Logged encoders are pickled on purpose: `mlflow.pytorch.load_model` must return the module
# itself (the explainers differentiate it), with our code travelling beside it; MLflow's pt2
# export gives a graph, not an nn.Module. Its warning about pickle would print on every run.
logging.getLogger("mlflow.pytorch").addFilter(
    _DropMessage("Saving pytorch model by Pickle or CloudPickle format")
)


class Tracker:
    """Logs params, step-metrics, tables, figures, arrays and models to one MLflow run.

    Args:
        run_id: the run to log to.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.client = MlflowClient()

    # -- params, tags, metrics -------------------------------------------------------------
    def log_params(self, params: dict[str, Any], prefix: str = "") -> None:
        items = [Param(f"{prefix}{k}", str(v)) for k, v in params.items()]
        if items:
            self.client.log_batch(self.run_id, params=items)

    def set_tags(self, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

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
        self._log_bytes(yaml.safe_dump(data, sort_keys=False).encode(), path)

    def log_table(self, frame: pd.DataFrame, path: str) -> None:
        self._log_bytes(frame.to_csv(index=False).encode(), path)

    def log_array(self, array: np.ndarray | torch.Tensor, path: str) -> None:
        if isinstance(array, torch.Tensor):
            array = array.detach().cpu().numpy()
        buffer = io.BytesIO()
        np.save(buffer, array)
        self._log_bytes(buffer.getvalue(), path)

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
    def log_model(
        self,
        model: torch.nn.Module,
        name: str,
        input_example: torch.Tensor,
        registered_model_name: str | None = None,
    ) -> str:
        """Logs a PyTorch module (pickle format, with our code) and optionally registers it.

        A deep copy of the module is moved to the CPU and put in eval mode, so the logged
        model loads on any machine, while the caller's module stays on its device with its
        own train/eval flags.

        Returns:
            The model URI (``models:/<name>/<version>`` when registered).
        """
        from mlflow.models import infer_signature

        active = mlflow.active_run()
        if active is None or active.info.run_id != self.run_id:
            raise RuntimeError("log_model needs this tracker's run to be the active run")
        model = copy.deepcopy(model).cpu().eval()
        example = input_example[:1].detach().cpu()
        with torch.no_grad():
            output = model(example).numpy()
        info = mlflow.pytorch.log_model(
            model,
            name=name,
            serialization_format="pickle",
            code_paths=[str(Path(lfxai.__file__).parent)],
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"numpy=={np.__version__}",
            ],
            signature=infer_signature(example.numpy(), output),
            input_example=example.numpy(),
            registered_model_name=registered_model_name,
        )
        if registered_model_name and info.registered_model_version is not None:
            return f"models:/{registered_model_name}/{info.registered_model_version}"
        return info.model_uri

    # -- nested runs -----------------------------------------------------------------------
    def child_runs(self) -> list[Any]:
        """Runs nested under this one (any status)."""
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        return self.client.search_runs(
            [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'"
        )

    @contextmanager
    def nested(self, run_name: str, run_id: str | None = None) -> Iterator[Tracker]:
        """A child run, FINISHED on success and FAILED on error (``run_id`` reopens one).

        The child inherits the parent's :data:`IDENTITY_TAGS` and source tags.
        """
        inherited = {
            k: v
            for k, v in self.tags().items()
            if k in IDENTITY_TAGS or k.startswith(SOURCE_TAG_PREFIXES)
        }
        # In the parent's experiment, whatever MLFLOW_EXPERIMENT_ID says (a resumed parent
        # lives in its own experiment, while `mlflow run` made a new run in another).
        experiment_id = None if run_id else self.client.get_run(self.run_id).info.experiment_id
        with mlflow.start_run(
            run_id=run_id, experiment_id=experiment_id, run_name=run_name, nested=True
        ) as run:
            child = Tracker(run.info.run_id)
            child.set_tags(inherited)
            yield child

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
        self._log_bytes(text.encode(), path)

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
            x: ``(N, ...)`` inputs; their dtype and shape are logged, never their values.
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
            dataset = mlflow.data.from_numpy(
                x.detach().cpu().numpy(),
                source=Path(source).resolve().as_uri(),
                targets=y.detach().cpu().numpy(),
                name=name,
                digest=digest,
            )
        entry = DatasetInput(
            dataset._to_mlflow_entity(), [InputTag(MLFLOW_DATASET_CONTEXT, context)]
        )
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
            self.client.set_registered_model_alias(name, alias, version)

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
        tags = {"lfxai.moved_to": self.run_id, "mlflow.runName": f"-> {experiment}", NOTE_TAG: note}
        Tracker(launched_run_id).set_tags(tags)


@contextmanager
def tracked_run(run_name: str, run_id: str | None = None) -> Iterator[Tracker]:
    """Opens (or, under ``mlflow run``, adopts) a run; it ends FAILED if the body raises.

    Args:
        run_name: name shown in the MLflow UI.
        run_id: continue this run instead (resume); otherwise ``MLFLOW_RUN_ID`` set by
            ``mlflow run`` is adopted, or a new run is created.
    """
    with mlflow.start_run(run_id=run_id, run_name=run_name) as run:
        tracker = Tracker(run.info.run_id)
        tracker.set_tags({"mlflow.runName": run_name})
        try:
            yield tracker
        except BaseException as error:
            tracker.set_tags({"lfxai.error": f"{type(error).__name__}: {error}"[:5000]})
            raise


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
            return client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND})
        except MlflowException:
            experiment = client.get_experiment_by_name(name)  # another worker created it
            if experiment is None:
                raise
    if experiment.tags.get(EXPERIMENT_KIND_TAG) is None:  # e.g. created beforehand by a test
        client.set_experiment_tag(
            experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND
        )
    return experiment.experiment_id


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
