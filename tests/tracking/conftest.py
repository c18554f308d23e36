"""Fixtures of the tracking tests."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest


@pytest.fixture()
def temp_leftovers(tmp_path, monkeypatch) -> Path:
    """The folder ``tempfile`` now creates its temporary files in: empty after a read that
    cleaned up after itself."""
    folder = tmp_path / "temp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder
