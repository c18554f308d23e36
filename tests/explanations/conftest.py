"""Fixtures shared by the explanation tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture()
def float64() -> Iterator[None]:
    """Float64 as torch's default dtype for one test (Arnoldi's basis takes the default dtype:
    float64 makes its rounding negligible); the previous default is restored after."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
