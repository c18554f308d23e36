"""The tracker's model logging leaves the caller's module alone and stores CPU tensors."""

from __future__ import annotations

import tempfile

import mlflow
import torch
from torch import nn

from lfxai.tracking import Tracker


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2))


def test_log_model_leaves_the_callers_module_as_it_was(mlflow_store):
    model = _model().train()
    model[1].eval()  # mixed flags: each submodule's own flag must survive
    params = {name: (p, p.data_ptr()) for name, p in model.named_parameters()}
    with mlflow.start_run() as run:
        uri = Tracker(run.info.run_id).log_model(model, "net", torch.rand(5, 3))
    assert model.training and not model[1].training and model[2].training
    for name, p in model.named_parameters():  # the same tensors, not moved copies
        assert params[name][0] is p and params[name][1] == p.data_ptr()
    logged = mlflow.pytorch.load_model(uri, map_location="cpu")
    assert not logged.training
    assert all(p.device.type == "cpu" for p in logged.parameters())
    x = torch.rand(4, 3)
    with torch.no_grad():
        torch.testing.assert_close(logged(x), model.eval()(x))


def test_log_state_dict_saves_detached_cpu_tensors(mlflow_store):
    model = _model()
    with mlflow.start_run() as run:
        tracker = Tracker(run.info.run_id)
        tracker.log_state_dict(model, "weights/model.pt")
        with tempfile.TemporaryDirectory() as tmp:
            local = tracker.client.download_artifacts(run.info.run_id, "weights/model.pt", tmp)
            # No map_location: a tensor saved on a GPU would come back on the GPU (or fail).
            state = torch.load(local, weights_only=True)
    assert set(state) == set(model.state_dict())
    assert all(v.device.type == "cpu" and not v.requires_grad for v in state.values())
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value)
