"""``load_encoder`` on a model folder of our two files, without exporting a graph: what it
reads, what it leaves behind, and each refusal in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from lfxai.models.registry import ModelSpec, build_model
from lfxai.models.stored import RECIPE_FILE, STATE_FILE, write_encoder_files
from lfxai.tracking import EncoderRefused, load_encoder
from lfxai.tracking.explained import load_explained_model
from tests.helpers import open_run

OUR_FILES = [{"path": f"extra_files/{RECIPE_FILE}"}, {"path": f"extra_files/{STATE_FILE}"}]


def _model_folder(folder: Path, flavors: dict) -> tuple[Path, torch.nn.Module]:
    """An MLflow model folder: ``MLmodel`` with ``flavors`` and an encoder's recipe and state."""
    torch.manual_seed(0)
    model = build_model("mnist_ae", ModelSpec(3, (1, 28, 28))).eval()
    (folder / "extra_files").mkdir(parents=True)
    write_encoder_files(model, "encoder", folder / "extra_files")
    meta = {"artifact_path": "encoder", "flavors": flavors}
    (folder / "MLmodel").write_text(yaml.safe_dump(meta))
    return folder, model


def test_a_logged_encoder_is_rebuilt_and_nothing_is_left_behind(
    mlflow_store, tmp_path, temp_leftovers
):
    folder, model = _model_folder(tmp_path / "model", {"pytorch": {"extra_files": OUR_FILES}})
    run_id = open_run().info.run_id
    MlflowClient().log_artifacts(run_id, str(folder), "encoder")
    loaded = load_encoder(f"runs:/{run_id}/encoder")
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.encoder(x))
    assert list(temp_leftovers.iterdir()) == []  # every download went to its own temp folder


@pytest.mark.parametrize(
    "flavors",
    [
        {"python_function": {"loader_module": "mlflow.sklearn"}},  # not a PyTorch model
        {"pytorch": {"pytorch_version": "2.0"}},  # a pickled one: no extra files
        {"pytorch": {"extra_files": OUR_FILES[:1]}},  # the recipe without the state
    ],
)
def test_a_model_without_both_our_files_is_refused_as_pickled(tmp_path, flavors):
    folder, _ = _model_folder(tmp_path / "model", flavors)
    with pytest.raises(EncoderRefused) as refused:
        load_encoder(str(folder))
    assert str(refused.value) == (
        f"{folder} has no {RECIPE_FILE} and {STATE_FILE}: it is a pickled model (logged by an "
        "lfxai older than its pickle-free format, or not by lfxai), never loaded because "
        "unpickling runs code; re-register it: rerun the experiment that logged it with "
        "pretrained=false (and register_model=true)"
    )


def test_no_model_there_is_refused_in_one_line_saying_why(mlflow_store, tmp_path):
    with pytest.raises(EncoderRefused) as refused:
        load_encoder("runs:/0123456789abcdef/encoder")
    assert str(refused.value) == (
        "runs:/0123456789abcdef/encoder: no MLflow model there "
        "(Run with id=0123456789abcdef not found)"
    )
    with pytest.raises(EncoderRefused) as refused:  # MLflow's message runs over lines
        load_encoder(str(tmp_path / "nowhere"))
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'nowhere'}: no MLflow model there (The following")
    assert "\n" not in message
    folder = tmp_path / "odd"
    (folder / "MLmodel").mkdir(parents=True)  # a file system error, not MLflow's
    with pytest.raises(EncoderRefused, match=r"odd: no MLflow model there \(\[Errno 21\] Is a"):
        load_encoder(str(folder))


DAMAGED = [
    ("a: [1\n  b: {\n", "ParserError: while parsing a flow sequence"),  # not YAML
    ("- 1\n- 2\n", "TypeError"),  # YAML, but a list
    ("flavors: 3\n", "AttributeError"),  # a mapping with the wrong shapes
    ("flavors:\n  pytorch: abc\n", "AttributeError"),
    ("flavors:\n  pytorch:\n    extra_files: [3]\n", "TypeError"),
    ("flavors:\n  pytorch:\n    extra_files: [{name: x}]\n", "KeyError"),
    ("flavors:\n  pytorch: {}\nsignature: 5\n", "TypeError: signature of type int"),
    (  # a signature MLflow cannot read: its own error, but the file is there
        'flavors:\n  pytorch: {}\nsignature:\n  inputs: \'[{"type": "tensor"}]\'\n',
        "MlflowException: Missing keys in TensorSpec JSON",
    ),
    ("\udcff\udcfe", "UnicodeDecodeError"),  # not text
]


@pytest.mark.parametrize("loader", [load_encoder, load_explained_model])
@pytest.mark.parametrize(("text", "error"), DAMAGED)
def test_a_damaged_mlmodel_is_refused_in_one_line(tmp_path, text, error, loader):
    folder, _ = _model_folder(tmp_path / "model", {"pytorch": {"extra_files": OUR_FILES}})
    (folder / "MLmodel").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(EncoderRefused) as refused:
        loader(str(folder))
    message = str(refused.value)
    assert message.startswith(f"{folder}: its MLmodel is not an MLflow model file ({error}")
    assert "\n" not in message


def test_the_encoder_goes_to_the_asked_device_and_bad_files_name_the_model(tmp_path) -> None:
    folder, _ = _model_folder(tmp_path / "model", {"pytorch": {"extra_files": OUR_FILES}})
    loaded = load_encoder(str(folder), device="meta")
    assert {p.device.type for p in loaded.parameters()} == {"meta"}
    (folder / "extra_files" / STATE_FILE).write_bytes(b"not a tensor archive")
    with pytest.raises(EncoderRefused) as refused:
        load_encoder(str(folder))
    assert str(refused.value).startswith(
        f"{folder}: {STATE_FILE} is not a plain tensor state, refused unread (UnpicklingError"
    )
