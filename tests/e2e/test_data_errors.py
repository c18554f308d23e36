"""`mlflow run` with data a user lacks or sizes beyond the data: one line, a FAILED run.

As a user would run it, offline for CIFAR-10 (the proxy variables send every download to a
closed loopback port, so the test gives the same result with or without a network).
"""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import make_store, mlflow_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLOSED_PORT = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused


def _failed_with_one_line(result, store: str) -> str:
    """Checks the launch failed with one ``error:`` line and no traceback; returns the line."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs and all(r.info.status == "FAILED" for r in runs)  # none left RUNNING
    errors = [r.data.tags["lfxai.error"] for r in runs if "lfxai.error" in r.data.tags]
    assert errors == [f"ConfigError: {line.removeprefix('error: ')}"]
    return line


def test_n_train_beyond_mnist_is_one_line_before_any_data(tmp_path):
    """Before: a traceback ending in 'ValueError: size must be in 1..60000', after reading
    the whole training split."""
    store = make_store(tmp_path)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    params = {
        "name": "consistency_features",
        "profile": "smoke",
        "n_train": "100000",
        "data_dir": str(data_dir),
    }
    line = _failed_with_one_line(mlflow_run("mnist", params, store, timeout=300), store)
    assert line == (
        "error: n_train=100000 exceeds the 60000 training examples of mnist (split "
        "'standard'); choose n_train <= 60000 (none: all of them)"
    )
    assert list(data_dir.iterdir()) == []  # refused before any data was fetched or read


def test_cifar10_offline_without_files_is_one_line_and_leaves_no_folder(tmp_path):
    """Before: a 15-line traceback after a download error, and an empty ``cifar10/`` left."""
    store = make_store(tmp_path)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    offline = {
        key: CLOSED_PORT for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
    }
    offline |= {"NO_PROXY": "", "no_proxy": ""}
    params = {"name": "consistency_features", "profile": "smoke", "data_dir": str(data_dir)}
    result = mlflow_run("cifar10", params, store, env=offline, timeout=300)
    line = _failed_with_one_line(result, store)
    folder = data_dir / "cifar10" / "cifar-10-batches-py"
    assert line.startswith(f"error: CIFAR-10 is not available under {folder}: missing: ")
    assert "tried: torchvision download of https://www.cs.toronto.edu/" in line
    assert f"extract its cifar-10-batches-py/ folder into {data_dir / 'cifar10'}" in line
    assert "download failed" not in result.stderr  # the failure's gist is in the line only
    assert list(data_dir.iterdir()) == []  # no empty cifar10/ left behind
