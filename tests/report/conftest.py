"""Runs made without training: what an experiment logs, written straight into a private store."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from lfxai.experiments.verdicts import log_claims
from lfxai.report.collect import profile_settings
from lfxai.report.results import TABLES
from lfxai.tracking import Tracker, ensure_experiment, experiment_name

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def feature_table(saliency: list[float], random: list[float]) -> pd.DataFrame:
    """``consistency_features.csv`` of Saliency and Random at k = 10, 50, 100."""
    rows = [
        {"method": m, "pct_perturbed": k, "representation_shift": v}
        for m, curve in (("Saliency", saliency), ("Random", random))
        for k, v in zip((10, 50, 100), curve, strict=True)
    ]
    return pd.DataFrame(rows)


def feature_evidence(n: int, gap: float) -> dict[str, np.ndarray]:
    """Per-example shifts: Saliency above Random by ``gap`` on each of ``n`` examples."""
    return {
        f"{m}@{k}": np.full(n, base + (gap if m == "Saliency" else 0.0))
        for m in ("Saliency", "Random")
        for k, base in ((10, 0.5), (50, 1.0), (100, 2.0))
    }


@pytest.fixture()
def make_run(mlflow_store):
    """``make_run(dataset, experiment, profile, table, evidence, settings, metrics, status)``
    logs a run as the experiment would (settings as ``config.*`` params, the result table,
    the claims via :func:`log_claims`) and returns its id."""
    client = MlflowClient()
    clock = itertools.count(int(time.time() * 1000))

    def make(
        dataset: str = "mnist",
        experiment: str = "consistency_features",
        profile: str = "smoke",
        table: pd.DataFrame | None = None,
        evidence: dict[str, np.ndarray] | None = None,
        settings: dict[str, str] | None = None,
        metrics: dict[str, float] | None = None,
        status: str = "FINISHED",
    ) -> str:
        experiment_id = ensure_experiment(experiment_name(dataset, experiment))
        tags = {
            "lfxai.dataset": dataset,
            "lfxai.experiment": experiment,
            "lfxai.profile": profile,
            "mlflow.source.git.commit": COMMIT,
            "lfxai.data_digest": "d1g35t",
        }
        started = next(clock)  # distinct start times: "newest" is well defined
        run_id = client.create_run(
            experiment_id, start_time=started, tags=tags, run_name=f"#1 {profile}"
        ).info.run_id
        tracker = Tracker(run_id)
        values = profile_settings(dataset, experiment, profile) | (settings or {})
        tracker.log_params(values, prefix="config.")
        tracker.log_params({"device_used": "cpu"})
        tracker.log_metrics({"fit/epochs": 1.0, "time/total_seconds": 12.0, **(metrics or {})})
        if table is not None:
            tracker.log_table(table, TABLES[experiment])
            log_claims(tracker, experiment, table, "MNIST denoising AE (d=4)", evidence)
        client.set_terminated(run_id, status)
        return run_id

    return make
