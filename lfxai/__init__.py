"""Label-free explainability for unsupervised models (Crabbé & van der Schaar, ICML 2022)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Nothing read from an MLflow store may run as code: MLflow refuses to unpickle models (and
# checks that a `pt2` graph holds no pickle) unless this is true. A user's own choice is kept;
# our entry points force it (entrypoints/__init__.py).
os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")

if TYPE_CHECKING:
    from lfxai.tracking import load_encoder

__all__ = ["__version__", "load_encoder"]


def __getattr__(name: str) -> object:
    # `from lfxai import load_encoder` imports MLflow only when asked for (PEP 562): the
    # data and model modules stay importable without it.
    if name == "load_encoder":
        from lfxai.tracking import load_encoder

        return load_encoder
    raise AttributeError(f"module 'lfxai' has no attribute {name!r}")
