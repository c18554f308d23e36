"""Fixtures of the command-line tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch) -> None:
    """argparse wraps help to the terminal's width and splits words longer than a line: a
    fixed, wide terminal keeps the help texts the tests read whole on any machine."""
    monkeypatch.setenv("COLUMNS", "200")
