"""A run's data sets as MLflow run inputs (the UI's Datasets panel): what, not the values."""

from __future__ import annotations

import warnings
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT


def dataset_input(
    name: str, x: torch.Tensor, y: torch.Tensor, source: Path, digest: str, context: str
) -> DatasetInput:
    """The run input describing one data set a run used.

    Args:
        name: e.g. ``mnist-standard-train``.
        x: ``(N, ...)`` inputs (a tensor, or dSprites' ``PackedImages``); their dtype and
            shape are logged, never their values.
        y: ``(N,)`` labels.
        source: the folder of the provisioned files the data was read from.
        digest: identifies the data (see :func:`lfxai.data.provision.data_digest`).
        context: what the run used it for (``train``, ``test``, ``explain``).
    """
    with warnings.catch_warnings():
        # MLflow registers its local-file source twice (for "" and "file:"), both the
        # same class, and warns that the path "can be interpreted in multiple ways".
        warnings.filterwarnings(
            "ignore",
            message="The specified dataset source can be interpreted",
            category=UserWarning,
        )
        # Only dtype and shape are logged: a zero-stride stand-in of x's shape and dtype
        # avoids copying the data (or decoding dSprites' packed images) just for that.
        dtype = torch.empty((), dtype=x.dtype).numpy().dtype
        dataset = mlflow.data.from_numpy(
            np.broadcast_to(np.zeros((), dtype=dtype), tuple(x.shape)),
            source=Path(source).resolve().as_uri(),
            targets=y.detach().cpu().numpy(),
            name=name,
            digest=digest,
        )
    # The data set's public dictionary (name, digest, source, schema, profile) is exactly
    # what the store's entity holds.
    entity = Dataset(**dataset.to_dict())
    return DatasetInput(entity, [InputTag(MLFLOW_DATASET_CONTEXT, context)])
