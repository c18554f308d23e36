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
import os
import tempfile
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
from mlflow.tracking import MlflowClient

import lfxai
from lfxai.config import to_flat_dict

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
_MAX_BATCH = 1000  # MLflow's log_batch limit on metrics per call
# The tags that say what a run is; nested runs inherit them from their parent, so a search
# by data set, experiment or profile finds every run of a sweep or grid.
IDENTITY_TAGS = ("lfxai.dataset", "lfxai.experiment", "lfxai.profile", "lfxai.version")


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

        The child inherits the parent's :data:`IDENTITY_TAGS`.
        """
        inherited = {k: v for k, v in self.tags().items() if k in IDENTITY_TAGS}
        with mlflow.start_run(run_id=run_id, run_name=run_name, nested=True) as run:
            child = Tracker(run.info.run_id)
            child.set_tags(inherited)
            yield child


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
