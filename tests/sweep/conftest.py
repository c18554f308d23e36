"""Fixtures of the sweep's tests: a private MLflow store and Optuna storage, fake configs."""

from __future__ import annotations

import pytest

from lfxai.plugins.mnist import Mnist
from tests.sweep.fakes import write_configs


@pytest.fixture()
def sweep_env(mlflow_store, tmp_path, monkeypatch):
    """MNIST declares ``disvae``, configs come from a fake folder; yields the storage URL."""
    monkeypatch.setenv("LFXAI_CONFIG_DIR", str(write_configs(tmp_path / "configs")))
    if "disvae" not in Mnist.experiments:
        monkeypatch.setattr(Mnist, "experiments", (*Mnist.experiments, "disvae"))
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")  # no thread per run
    return f"sqlite:///{tmp_path / 'optuna.db'}"
