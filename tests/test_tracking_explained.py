"""Any registered encoder loaded for ``explain`` without running code from the store: an
lfxai encoder from its recipe and state, anyone's module from MLflow's pt2 graph; pickled,
code-carrying and tampered models refused in one line; the run records what it consumed."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from lfxai.models.exported import ExportedEncoder
from lfxai.models.images import EncoderMnist
from lfxai.models.registry import ModelSpec, build_model
from lfxai.tracking import (
    LFXAI_MODEL,
    PT2_MODEL,
    EncoderRefused,
    Tracker,
    load_explained_model,
    record_explained_model,
)

USER = "user-encoder"  # registered by "the user's own code": not an lfxai model


def _user_module() -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(4 * 14 * 14, 5)).eval()


def _register_user(module: nn.Module, **options) -> str:
    """What the README tells a user to do: log the encoder in the pt2 format, registered."""
    with mlflow.start_run():
        info = mlflow.pytorch.log_model(
            module,
            name="encoder",
            input_example=torch.rand(2, 1, 28, 28).numpy(),
            registered_model_name=USER,
            **options,
        )
    return f"models:/{USER}/{info.registered_model_version}"


def _payload(marker: Path) -> bytes:
    """A pickle that writes ``marker`` when unpickled (as torch.save writes one)."""

    class Payload:
        def __reduce__(self):
            return (eval, (f"__import__('pathlib').Path({str(marker)!r}).write_text('ran')",))

    buffer = io.BytesIO()
    torch.save(Payload(), buffer)
    return buffer.getvalue()


def test_a_users_pt2_module_loads_as_a_differentiable_encoder(mlflow_store) -> None:
    module = _user_module()
    uri = _register_user(module, serialization_format="pt2")
    MlflowClient().set_registered_model_alias(USER, "prod", "1")
    assert load_explained_model(f"models:/{USER}@prod/")[1].alias == "prod"
    loaded, found = load_explained_model(f"models:/{USER}@prod")
    assert isinstance(loaded, ExportedEncoder)
    assert (found.kind, found.resolved, found.name, found.version, found.alias) == (
        PT2_MODEL,
        uri,
        USER,
        "1",
        "prod",
    )
    assert found.input_shape == (1, 28, 28) and found.model_id and found.source_run
    loaded.eval()  # the graph itself refuses eval(): the wrapper keeps the call harmless
    assert not loaded.training
    x = torch.rand(7, 1, 28, 28, requires_grad=True)
    codes = loaded(x)
    torch.testing.assert_close(codes, module(x), rtol=1e-5, atol=1e-6)
    codes.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_an_lfxai_encoder_is_rebuilt_from_its_recipe(mlflow_store) -> None:
    model = build_model("mnist_ae", ModelSpec(3, (1, 28, 28), "denoising", "ae")).eval()
    with mlflow.start_run() as run:
        uri = Tracker(run.info.run_id).log_encoder_model(model, torch.rand(2, 1, 28, 28), USER)
    loaded, found = load_explained_model(uri)
    assert isinstance(loaded, EncoderMnist) and found.kind == LFXAI_MODEL
    assert found.alias is None and found.input_shape == (1, 28, 28)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.encoder(x))


def test_the_run_records_the_version_it_consumes(mlflow_store) -> None:
    _register_user(_user_module(), serialization_format="pt2")
    _, found = load_explained_model(f"models:/{USER}/1")
    with mlflow.start_run() as run:
        record_explained_model(Tracker(run.info.run_id), found)
    consumer = MlflowClient().get_run(run.info.run_id)
    tags = consumer.data.tags
    assert tags["lfxai.model.name"] == USER and tags["lfxai.model.version"] == "1"
    assert tags["lfxai.model.resolved"] == f"models:/{USER}/1"
    assert tags["lfxai.model.kind"] == PT2_MODEL and "lfxai.model.alias" not in tags
    assert [m.model_id for m in consumer.inputs.model_inputs] == [found.model_id]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (f"models:/{USER}/7", f"models:/{USER}/7: Registered Model with name={USER} not found"),
        (f"models:/{USER}@paper", f"models:/{USER}@paper: Registered Model with name={USER}"),
        (
            "runs:/0123456789abcdef/encoder",
            "runs:/0123456789abcdef/encoder: no MLflow model there (Run with id=0123456789abcdef "
            "not found)",
        ),
        (
            "/no/such/folder",
            "/no/such/folder: no such model folder; expected models:/<name>@<alias>, "
            "models:/<name>/<version>, runs:/<run id>/<path> or a downloaded model folder",
        ),
    ],
)
def test_a_uri_that_does_not_resolve_is_one_line(mlflow_store, uri, message) -> None:
    with pytest.raises(EncoderRefused) as error:
        load_explained_model(uri)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.slow  # its store-free twin (tests/tracking/test_explained_loading.py) is fast
def test_a_missing_alias_is_one_line(mlflow_store) -> None:
    _register_user(_user_module(), serialization_format="pt2")
    with pytest.raises(EncoderRefused) as error:
        load_explained_model(f"models:/{USER}@prod")
    assert str(error.value) == f"models:/{USER}@prod: Registered model alias prod not found."


@pytest.mark.slow  # its store-free twin (tests/tracking/test_explained_loading.py) is fast
def test_a_pickled_model_is_refused_unread(mlflow_store) -> None:
    uri = _register_user(_user_module(), serialization_format="pickle")
    with pytest.raises(EncoderRefused) as error:
        load_explained_model(uri)
    assert str(error.value) == (
        f"{uri} is a pickled PyTorch model, never loaded because unpickling runs code; "
        "register it with mlflow.pytorch.log_model(..., serialization_format='pt2')"
    )


@pytest.mark.slow  # its store-free twin (tests/tracking/test_explained_loading.py) is fast
def test_a_model_carrying_code_is_refused(mlflow_store, tmp_path) -> None:
    code = tmp_path / "helpers.py"
    code.write_text("VALUE = 1\n")
    uri = _register_user(_user_module(), serialization_format="pt2", code_paths=[str(code)])
    with pytest.raises(EncoderRefused, match=r"carries code \(code\) that loading would put on"):
        load_explained_model(uri)


@pytest.mark.slow  # its store-free twin (tests/tracking/test_explained_loading.py) is fast
def test_unpickling_allowed_by_the_environment_is_refused(mlflow_store, monkeypatch) -> None:
    uri = _register_user(_user_module(), serialization_format="pt2")
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    with pytest.raises(EncoderRefused, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION is true"):
        load_explained_model(uri)


def test_a_pickle_slipped_into_the_pt2_archive_never_runs(mlflow_store, tmp_path) -> None:
    """``torch.export.load`` unpickles an archive's sample inputs without restriction: MLflow's
    check (pickle deserialization off) refuses the archive before it is read."""
    uri = _register_user(_user_module(), serialization_format="pt2")
    (archive,) = Path(mlflow_store.removeprefix("sqlite:///")).parent.rglob("model.pt2")
    marker = tmp_path / "marker"
    with zipfile.ZipFile(archive) as original:
        records = {info.filename: original.read(info) for info in original.infolist()}
    (inputs,) = [name for name in records if name.endswith("sample_inputs/model.pt")]
    records[inputs] = _payload(marker)
    with zipfile.ZipFile(archive, "w") as tampered:
        for name, content in records.items():
            tampered.writestr(name, content)
    with pytest.raises(EncoderRefused) as error:
        load_explained_model(uri)
    assert str(error.value).startswith(
        f"{uri}: Deserializing model using pickle is disallowed, but record '{inputs}'"
    )
    assert "\n" not in str(error.value) and not marker.exists()


def test_a_graph_this_torch_cannot_load_is_refused_in_one_line(mlflow_store, monkeypatch) -> None:
    uri = _register_user(_user_module(), serialization_format="pt2")

    def newer_torch(path: str) -> None:  # as torch.export.load fails on an unknown operator
        raise RuntimeError("\n  unknown operator aten::future_op  \nwhile reading the graph")

    monkeypatch.setattr(mlflow.pytorch, "load_model", newer_torch)
    with pytest.raises(EncoderRefused) as error:
        load_explained_model(uri)
    assert str(error.value) == (
        f"{uri}: its pt2 graph does not load (RuntimeError: unknown operator aten::future_op)"
    )
