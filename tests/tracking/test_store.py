"""The store: URIs made absolute, artifacts of a store the suite creates beside its database."""

from __future__ import annotations

from pathlib import Path

import pytest

from lfxai.tracking import absolute_uri


def test_absolute_uri_resolves_a_relative_sqlite_path_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert absolute_uri("sqlite:///a/m.db?timeout=5") == f"sqlite:///{tmp_path}/a/m.db?timeout=5"
    for kept in ("sqlite:////abs/mlflow.db", "https://tracking-host:5000", "sqlite:///:memory:"):
        assert absolute_uri(kept) == kept


@pytest.mark.parametrize("uri", ["databricks", "postgresql://mlflow@db/mlflow"])
def test_absolute_uri_keeps_other_stores(uri: str) -> None:
    assert absolute_uri(uri) == uri
