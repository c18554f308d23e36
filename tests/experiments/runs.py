"""Running an experiment in-process on generated digits, and reading its runs back."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

SMALL = ["--profile", "smoke", "--n_train", "100", "--n_test", "30", "--dim_latent", "3"]


def small_argv(experiment: str, data: Path, settings: dict[str, str]) -> list[str]:
    """The command line of a small smoke run of ``experiment`` on the generated digits."""
    argv = ["--name", experiment, "--data_dir", str(data), *SMALL]
    return argv + [item for key, value in settings.items() for item in (f"--{key}", value)]


def top_runs(experiment: str) -> list[Run]:
    """The top-level runs of ``experiment``, oldest first."""
    runs = mlflow.search_runs(
        search_all_experiments=True, output_format="list", order_by=["attributes.start_time"]
    )
    return [
        r
        for r in runs
        if r.data.tags.get("lfxai.experiment") == experiment
        and "mlflow.parentRunId" not in r.data.tags
    ]


def logged_array(run: Run, path: str, folder: Path) -> np.ndarray:
    """The array ``run`` logged at ``path``, downloaded to ``folder``."""
    return np.load(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path=path, dst_path=str(folder)
        )
    )


def metric_curve(run: Run, key: str) -> dict[int, float]:
    """``{step: value}`` of the metric ``key`` of ``run``."""
    return {m.step: m.value for m in MlflowClient().get_metric_history(run.info.run_id, key)}
