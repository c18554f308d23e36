"""``load_explained_model`` and ``model_location`` without a store: local model folders, a
stand-in registry client and stand-in loaders pin what is read, resolved, refused and returned."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import mlflow
import mlflow.pytorch  # the module itself: patching MLflow's lazy proxy would not stick
import numpy as np
import pytest
import torch
import yaml
from mlflow.exceptions import MlflowException
from mlflow.models.signature import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec
from torch import nn

from lfxai.models.exported import ExportedEncoder
from lfxai.models.stored import RECIPE_FILE, STATE_FILE
from lfxai.tracking import LFXAI_MODEL, PT2_MODEL, EncoderRefused, explained, registry
from lfxai.tracking.explained import _signature_input_shape, load_explained_model
from lfxai.tracking.registry import model_location

OUR_FILES = [{"path": f"extra_files/{RECIPE_FILE}"}, {"path": f"extra_files/{STATE_FILE}"}]
SIGNATURE = {
    "inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 1, 4, 4]}}]',
    "outputs": None,
}


def _folder(tmp_path: Path, pytorch: dict | None, archive: str | None = None, **meta) -> Path:
    """A model folder: an ``MLmodel`` with ``pytorch`` as its flavor (None: sklearn's) and,
    when ``archive`` names a folder, an (empty) ``model.pt2`` inside it."""
    folder = tmp_path / "model"
    folder.mkdir()
    flavors = {"sklearn": {}} if pytorch is None else {"pytorch": pytorch}
    (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": flavors, **meta}))
    if archive is not None:
        (folder / archive).mkdir()
        (folder / archive / "model.pt2").write_bytes(b"")
    return folder


def _refusal(folder: Path) -> str:
    """The one-line message ``load_explained_model`` refuses ``folder`` with."""
    with pytest.raises(EncoderRefused) as refused:
        load_explained_model(str(folder))
    return str(refused.value)


@pytest.fixture()
def graph_loader(monkeypatch) -> list[str]:
    """``mlflow.pytorch.load_model`` replaced: records the folder and returns a linear graph."""
    calls: list[str] = []

    def load(path: str) -> nn.Module:
        calls.append(path)
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))

    monkeypatch.setattr(mlflow.pytorch, "load_model", load)
    return calls


def test_a_pt2_folder_is_wrapped_with_its_lineage(tmp_path, graph_loader) -> None:
    folder = _folder(
        tmp_path,
        {"model_data": "data"},
        archive="data",
        run_id="run-7",
        model_id="m-42",
        signature=SIGNATURE,
    )
    module, found = load_explained_model(str(folder))
    assert isinstance(module, ExportedEncoder)
    assert len(graph_loader) == 1 and Path(graph_loader[0]).name == "model"
    assert module(torch.ones(2, 1, 4, 4)).shape == (2, 3)
    assert found == explained.ExplainedModel(
        str(folder), str(folder), PT2_MODEL, None, None, None, "m-42", "run-7", (1, 4, 4)
    )


def test_the_graph_goes_to_the_device_and_no_download_is_left_behind(
    tmp_path, graph_loader, temp_leftovers, monkeypatch
) -> None:
    download = mlflow.artifacts.download_artifacts
    folders: list[str | None] = []

    def recorded(uri: str, dst_path: str | None = None) -> str:
        folders.append(dst_path)
        return download(uri, dst_path=dst_path)

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", recorded)
    module, _ = load_explained_model(str(_folder(tmp_path, {}, archive="data")), device="meta")
    assert {p.device.type for p in module.parameters()} == {"meta"}
    assert len(folders) == 2 and len(set(folders)) == 1  # the MLmodel, then the whole model
    assert Path(folders[0]).parent == temp_leftovers  # one temporary folder, removed after
    assert list(temp_leftovers.iterdir()) == []


def test_the_archive_is_looked_for_under_the_flavors_model_data(tmp_path, graph_loader) -> None:
    folder = _folder(tmp_path, {"model_data": "weights"}, archive="weights")
    load_explained_model(str(folder))
    assert len(graph_loader) == 1
    (tmp_path / "other").mkdir()
    folder = _folder(tmp_path / "other", {}, archive="data")  # without model_data: data/
    assert load_explained_model(str(folder))[1].input_shape is None
    assert len(graph_loader) == 2


def test_a_registered_version_is_named_and_its_alias_kept(
    tmp_path, graph_loader, monkeypatch
) -> None:
    folder = _folder(tmp_path, {}, archive="data")
    asked: list[str] = []

    def location(uri: str) -> tuple[str, str]:
        asked.append(uri)
        return "models:/enc/3", str(folder)

    monkeypatch.setattr(explained, "model_location", location)
    _, found = load_explained_model("models:/enc@prod/")
    assert asked == ["models:/enc@prod/"]
    assert (found.uri, found.resolved, found.name, found.version, found.alias) == (
        "models:/enc@prod/",
        "models:/enc/3",
        "enc",
        "3",
        "prod",
    )
    _, found = load_explained_model("models:/enc/3")
    assert (found.name, found.version, found.alias) == ("enc", "3", None)
    monkeypatch.setattr(explained, "model_location", lambda uri: ("models:/t@enc/5", str(folder)))
    _, found = load_explained_model("models:/t@enc/5")  # "@" may be part of a model's name
    assert (found.name, found.version, found.alias) == ("t@enc", "5", None)
    _, found = load_explained_model("models:/t@enc@prod-X/")
    assert (found.name, found.version, found.alias) == ("t@enc", "5", "prod-X")
    monkeypatch.setattr(explained, "model_location", lambda uri: (uri, str(folder)))
    _, found = load_explained_model("models:/m-0123")  # a logged model's id: no name
    assert (found.name, found.version, found.alias) == (None, None, None)


def test_an_lfxai_folder_is_rebuilt_by_load_encoder(tmp_path, monkeypatch) -> None:
    folder = _folder(tmp_path, {"extra_files": OUR_FILES, "code": "code"}, run_id="r1")
    built: list[tuple[str, str]] = []
    encoder = nn.Linear(2, 2)

    def rebuild(uri: str, device: str) -> nn.Module:
        built.append((uri, device))
        return encoder

    monkeypatch.setattr(explained, "load_encoder", rebuild)
    monkeypatch.setattr(explained, "model_location", lambda uri: ("models:/enc/2", str(folder)))
    module, found = load_explained_model("models:/enc@paper", device="meta")
    assert module is encoder and built == [("models:/enc/2", "meta")]  # the resolved version
    assert found.kind == LFXAI_MODEL and found.source_run == "r1" and found.alias == "paper"


def test_only_our_two_files_make_an_lfxai_model(tmp_path, graph_loader, monkeypatch) -> None:
    monkeypatch.setattr(explained, "load_encoder", lambda *a: pytest.fail("not ours"))
    folder = _folder(tmp_path, {"extra_files": OUR_FILES[:1]}, archive="data")
    assert load_explained_model(str(folder))[1].kind == PT2_MODEL


def test_a_folder_that_is_not_pytorch_is_refused(tmp_path) -> None:
    folder = _folder(tmp_path, None)
    assert _refusal(folder) == (
        f"{folder} is not a PyTorch model (flavors ['sklearn']); log the encoder with "
        "mlflow.pytorch.log_model(..., serialization_format='pt2')"
    )


def test_code_is_refused_before_anything_is_unpickled(tmp_path, graph_loader) -> None:
    folder = _folder(tmp_path, {"code": "helpers"}, archive="data")
    assert _refusal(folder) == (
        f"{folder} carries code (helpers) that loading would put on sys.path: refused; log "
        "the encoder without code_paths"
    )
    assert graph_loader == []


@pytest.mark.parametrize(
    ("value", "refused"), [("true", True), ("1", True), ("false", False), ("0", False)]
)
def test_a_session_that_allows_unpickling_is_refused(
    tmp_path, graph_loader, monkeypatch, value, refused
) -> None:
    folder = _folder(tmp_path, {}, archive="data")
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", value)
    if not refused:
        load_explained_model(str(folder))
        return
    assert _refusal(folder) == (
        f"{folder}: MLFLOW_ALLOW_PICKLE_DESERIALIZATION is true, so MLflow would load the "
        "model without checking it for pickled code; unset it (or set it to false)"
    )
    assert graph_loader == []


def test_a_folder_without_a_pt2_archive_is_refused_as_pickled(tmp_path, graph_loader) -> None:
    folder = _folder(tmp_path, {"model_data": "data"}, archive="elsewhere")
    assert _refusal(folder) == (
        f"{folder} is a pickled PyTorch model, never loaded because unpickling runs code; "
        "register it with mlflow.pytorch.log_model(..., serialization_format='pt2')"
    )
    assert graph_loader == []


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (MlflowException("not pickle-free\ntrace"), "{folder}: not pickle-free"),
        (
            RuntimeError("\n  unknown operator foo  \nmore"),
            "{folder}: its pt2 graph does not load (RuntimeError: unknown operator foo)",
        ),
    ],
)
def test_a_graph_that_does_not_load_is_refused_in_one_line(
    tmp_path, monkeypatch, error, message
) -> None:
    folder = _folder(tmp_path, {}, archive="data")

    def fail(path: str) -> None:
        raise error

    monkeypatch.setattr(mlflow.pytorch, "load_model", fail)
    assert _refusal(folder) == message.format(folder=folder)


def test_files_that_do_not_download_are_refused(tmp_path, monkeypatch) -> None:
    folder = _folder(tmp_path, {}, archive="data")
    download = mlflow.artifacts.download_artifacts

    def only_mlmodel(uri: str, dst_path: str) -> str:
        if uri.endswith("/MLmodel"):
            return download(uri, dst_path=dst_path)
        raise MlflowException("connection reset\ntrace")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", only_mlmodel)
    assert _refusal(folder) == f"{folder}: the model's files do not download (connection reset)"


def test_a_path_that_is_no_folder_is_refused(tmp_path) -> None:
    missing = tmp_path / "nowhere"
    assert _refusal(missing) == (
        f"{missing}: no such model folder; expected models:/<name>@<alias>, "
        "models:/<name>/<version>, runs:/<run id>/<path> or a downloaded model folder"
    )


class _Client:
    """A stand-in registry: one model ``enc`` whose alias ``prod`` is version 4."""

    calls: list[tuple] = []  # set afresh by the fixture

    def get_model_version_by_alias(self, name: str, alias: str):
        _Client.calls.append(("alias", name, alias))
        if (name, alias) not in {("enc", "prod"), ("t@enc", "prodX")}:
            raise MlflowException(f"Registered model alias {alias} not found.\ntrace")
        return SimpleNamespace(version=4)

    def get_model_version_download_uri(self, name: str, version: str) -> str:
        _Client.calls.append(("download", name, version))
        return f"store/{name}/v{version}"

    def get_logged_model(self, model_id: str):
        _Client.calls.append(("logged", model_id))
        return SimpleNamespace(artifact_location=f"store/logged/{model_id}")


@pytest.fixture()
def client(monkeypatch) -> type[_Client]:
    monkeypatch.setattr(registry, "MlflowClient", _Client)
    monkeypatch.setattr(_Client, "calls", [])
    return _Client


@pytest.mark.parametrize(
    ("uri", "expected", "calls"),
    [
        ("runs:/abc/encoder/", ("runs:/abc/encoder/", "runs:/abc/encoder"), None),
        ("runs:/abc/modelX/", ("runs:/abc/modelX/", "runs:/abc/modelX"), None),
        ("/some/folder", ("/some/folder", "/some/folder"), None),
        (
            "models:/enc@prod/",
            ("models:/enc/4", "store/enc/v4"),
            [("alias", "enc", "prod"), ("download", "enc", "4")],
        ),
        ("models:/enc/12", ("models:/enc/12", "store/enc/v12"), [("download", "enc", "12")]),
        ("models:/enc/12/", ("models:/enc/12", "store/enc/v12"), [("download", "enc", "12")]),
        (  # "@" may be part of a registered model's name: the alias follows the last one
            "models:/t@enc@prodX/",
            ("models:/t@enc/4", "store/t@enc/v4"),
            [("alias", "t@enc", "prodX"), ("download", "t@enc", "4")],
        ),
        ("models:/m-7", ("models:/m-7", "store/logged/m-7"), [("logged", "m-7")]),
    ],
)
def test_model_location_resolves_an_alias_once(client, uri, expected, calls) -> None:
    assert model_location(uri) == expected
    assert client.calls == (calls or [])


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "models:/enc/latest",
            "models:/enc/latest: expected models:/<name>@<alias>, models:/<name>/<version> or "
            "models:/<model id>",
        ),
        ("models:/enc@paper", "models:/enc@paper: Registered model alias paper not found."),
    ],
)
def test_model_location_refuses_in_one_line(client, uri, message) -> None:
    with pytest.raises(EncoderRefused) as refused:
        model_location(uri)
    assert str(refused.value) == message


class _Recorder:
    """A stand-in tracker and client: records tags and inputs; holds the models ``held``."""

    def __init__(self, *held: str) -> None:
        self.run_id = "consumer"
        self.client = self
        self.held = held
        self.calls: list[tuple] = []

    def set_tags(self, tags: dict[str, str]) -> None:
        self.calls.append(("tags", tags))

    def get_logged_model(self, model_id: str) -> str:
        self.calls.append(("get", model_id))
        if model_id not in self.held:
            raise MlflowException(f"Logged model {model_id} not found")
        return model_id

    def log_inputs(self, run_id: str, models: list) -> None:
        self.calls.append(("inputs", run_id, [m.model_id for m in models]))


def test_the_run_records_a_model_of_its_store_as_an_input() -> None:
    model = explained.ExplainedModel("models:/m/1", "models:/m/1", PT2_MODEL, model_id="m-1")
    tracker = _Recorder("m-1")
    explained.record_explained_model(tracker, model)
    assert tracker.calls == [
        ("tags", model.tags()),
        ("get", "m-1"),
        ("inputs", "consumer", ["m-1"]),
    ]


def test_a_model_from_elsewhere_or_without_an_id_is_recorded_by_its_tags_only() -> None:
    model = explained.ExplainedModel("/m", "/m", PT2_MODEL, model_id="m-9")
    tracker = _Recorder("m-1")
    explained.record_explained_model(tracker, model)
    assert tracker.calls == [("tags", model.tags()), ("get", "m-9")]
    folder = explained.ExplainedModel("/m", "/m", PT2_MODEL)
    tracker = _Recorder("m-1")
    explained.record_explained_model(tracker, folder)
    assert tracker.calls == [("tags", folder.tags())]


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        (Schema([TensorSpec(np.dtype("float32"), (-1, 1, 28, 28))]), (1, 28, 28)),
        (Schema([TensorSpec(np.dtype("float32"), (8, 140))]), None),  # a fixed batch
        (Schema([TensorSpec(np.dtype("float32"), (-1, 3), n) for n in "ab"]), None),  # two
        (Schema([ColSpec("double", "x")]), None),  # columns, not a tensor
        (None, None),
    ],
)
def test_the_input_shape_is_read_from_one_batched_tensor_input(inputs, expected) -> None:
    signature = None if inputs is None else ModelSignature(inputs=inputs)
    assert _signature_input_shape(SimpleNamespace(signature=signature)) == expected
