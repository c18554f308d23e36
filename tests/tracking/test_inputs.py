"""A run's data set input: its name, digest, source, dtype and shape, labels and context."""

from __future__ import annotations

import json
import warnings

import torch

from lfxai.tracking.inputs import dataset_input


def test_the_input_describes_the_data_without_its_values(tmp_path):
    x = torch.full((5, 1, 3, 2), 7, dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # MLflow's warning about local sources stays silenced
        found = dataset_input("mnist-standard-train", x, y, tmp_path, "d1", "train")
    data = found.dataset
    assert (data.name, data.digest, data.source_type) == ("mnist-standard-train", "d1", "local")
    assert json.loads(data.source) == {"uri": tmp_path.resolve().as_uri()}
    schema = json.loads(data.schema)["mlflow_tensorspec"]
    features, targets = json.loads(schema["features"])[0], json.loads(schema["targets"])[0]
    assert features["tensor-spec"] == {"dtype": "uint8", "shape": [-1, 1, 3, 2]}
    assert targets["tensor-spec"] == {"dtype": "int64", "shape": [-1]}
    profile = json.loads(data.profile)
    assert profile["features_shape"] == [5, 1, 3, 2] and profile["targets_shape"] == [5]
    assert [(t.key, t.value) for t in found.tags] == [("mlflow.data.context", "train")]


def test_a_float_input_keeps_its_dtype(tmp_path):
    found = dataset_input("ecg", torch.zeros(3, 1, 140), torch.zeros(3), tmp_path, "d", "test")
    features = json.loads(json.loads(found.dataset.schema)["mlflow_tensorspec"]["features"])[0]
    assert features["tensor-spec"] == {"dtype": "float32", "shape": [-1, 1, 140]}
    assert [t.value for t in found.tags] == ["test"]
