"""The user's original toy example runs unchanged against our package."""

from __future__ import annotations

import runpy

import pytest

from tests.helpers import REPO

pytestmark = [pytest.mark.slow, pytest.mark.data]


def test_toy_example_runs_unchanged(data_dir, monkeypatch):
    # The example reads Path.cwd() / "data/mnist": run it where the data was provisioned.
    monkeypatch.chdir(data_dir.parent)
    namespace = runpy.run_path(str(REPO / "examples" / "toy_example.py"))
    assert namespace["feature_importance"].shape == (10_000, 1, 28, 28)
    assert tuple(namespace["example_importance"].shape) == (10_000, 500)
    weights = namespace["example_importance"]
    assert (weights >= 0).all() and abs(float(weights.sum(dim=1).mean()) - 1) < 1e-4
