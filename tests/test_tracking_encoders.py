"""Logged encoders: MLflow's pickle-free pt2 model plus our recipe and state, loaded by
``lfxai.load_encoder`` from any model URI, and nothing from the store ever run as code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from packaging.version import Version

import lfxai
from lfxai.models.registry import ModelSpec, build_model
from lfxai.models.stored import RECIPE_FILE, STATE_FILE
from lfxai.tracking import EncoderRefused, Tracker, load_encoder
from tests.helpers import REPO

NAME = "lfxai-test-encoder"


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("mnist_ae", ModelSpec(3, (1, 28, 28), "denoising", "ae"))


def _log(model: torch.nn.Module, name: str | None = NAME, alias: str | None = None) -> str:
    with mlflow.start_run() as run:
        uri = Tracker(run.info.run_id).log_encoder_model(model, torch.rand(4, 1, 28, 28), name)
    if alias:
        MlflowClient().set_registered_model_alias(name, alias, uri.rsplit("/", 1)[1])
    return uri


def _codes(encoder: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return encoder(x)


def _artifact(store: str, file: str) -> Path:
    """The one stored copy of ``file`` in the store's artifact folder (see make_store)."""
    (path,) = Path(store.removeprefix("sqlite:///")).parent.rglob(file)
    return path


def test_logging_leaves_the_callers_module_as_it_was(mlflow_store):
    model = _model().train()
    model.decoder.eval()  # mixed flags: each submodule's own flag must survive
    params = {name: (p, p.data_ptr()) for name, p in model.named_parameters()}
    uri = _log(model)
    assert uri == f"models:/{NAME}/1"
    assert all(m.training for m in model.encoder.modules()) and model.training
    assert not any(m.training for m in model.decoder.modules())
    with pytest.raises(RuntimeError) as outside:  # the model would land in another run
        Tracker("not-the-active-run").log_encoder_model(model, torch.rand(2, 1, 28, 28))
    assert str(outside.value) == "log_encoder_model needs this tracker's run to be the active run"
    for name, p in model.named_parameters():  # the same tensors, not moved copies
        assert params[name][0] is p and params[name][1] == p.data_ptr()
    loaded = load_encoder(uri)
    assert not loaded.training and all(p.device.type == "cpu" for p in loaded.parameters())
    x = torch.rand(5, 1, 28, 28)
    torch.testing.assert_close(_codes(loaded, x), _codes(model.eval().encoder, x))


def test_the_model_is_pt2_with_signature_and_input_example(mlflow_store, tmp_path, monkeypatch):
    """What the UI shows (signature, input example) and MLflow's own loader with the pickle
    switch off: it validates that the pt2 archive holds no pickle, then loads the graph."""
    model = _model().eval()
    uri = _log(model)
    folder = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path)))
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    flavor = mlmodel["flavors"]["pytorch"]
    assert sorted(p.name for p in (folder / flavor["model_data"]).iterdir()) == ["model.pt2"]
    assert "code" not in flavor or flavor["code"] is None  # no Python code travels along
    assert [e["path"] for e in flavor["extra_files"]] == [
        f"extra_files/{RECIPE_FILE}",
        f"extra_files/{STATE_FILE}",
    ]
    inputs = json.loads(mlmodel["signature"]["inputs"])
    outputs = json.loads(mlmodel["signature"]["outputs"])
    assert inputs[0]["tensor-spec"]["shape"] == [-1, 1, 28, 28]
    assert outputs[0]["tensor-spec"]["shape"] == [-1, 3]
    example = mlmodel["saved_input_example_info"]["artifact_path"]
    assert len(json.loads((folder / example).read_text())) == 2  # a batch of two rows
    assert not list(folder.rglob("*.pth")) and not list(folder.rglob("*.pkl"))
    # The environment it was made in, pinned (not inferred by importing the model).
    requirements = (folder / "requirements.txt").read_text().split()
    assert f"torch=={Version(torch.__version__).public}" in requirements
    assert f"numpy=={np.__version__}" in requirements

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    graph = mlflow.pytorch.load_model(uri)
    for n in (1, 7):  # the exported batch dimension is dynamic
        x = torch.rand(n, 1, 28, 28)
        torch.testing.assert_close(_codes(graph, x), _codes(model.encoder, x))


def test_load_encoder_takes_every_model_uri_form(mlflow_store, tmp_path):
    model = _model().eval()
    with mlflow.start_run() as run:  # one row: the input example repeats it (export needs 2)
        uri = Tracker(run.info.run_id).log_encoder_model(model, torch.rand(1, 1, 28, 28), NAME)
    client = MlflowClient()
    client.set_registered_model_alias(NAME, "smoke", "1")
    model_id = mlflow.last_logged_model().model_id
    local = mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path))
    x = torch.rand(3, 1, 28, 28)
    expected = _codes(model.encoder, x)
    for form in (
        f"models:/{NAME}@smoke",
        f"models:/{NAME}/1",
        f"models:/{model_id}",
        f"runs:/{run.info.run_id}/encoder",
        local,
    ):
        torch.testing.assert_close(_codes(lfxai.load_encoder(form), x), expected, msg=form)
    assert lfxai.load_encoder is load_encoder  # `from lfxai import load_encoder`
    for bad, message in (
        (f"models:/{NAME}@paper", r"@paper: .*alias"),
        (f"models:/{NAME}/9", r"/9: "),
        (f"models:/{NAME}/Production", r"expected models:/<name>@<alias>"),
        (str(tmp_path / "nowhere"), r"nowhere: no MLflow model there"),
    ):
        with pytest.raises(EncoderRefused, match=message):
            load_encoder(bad)


def _marker_payload(marker: Path, original: Path) -> object:
    class Payload:
        """Unpickling it writes ``marker``, then returns the real state: a loader that
        unpickles would go on as if nothing happened."""

        def __reduce__(self):
            code = (
                f"__import__('pathlib').Path({str(marker)!r}).write_text('ran') and "
                f"__import__('torch').load({str(original)!r})"
            )
            return (eval, (code,))

    return Payload()


def test_a_tampered_state_is_refused_and_never_runs(mlflow_store, tmp_path):
    uri = _log(_model(), alias="smoke")
    state = _artifact(mlflow_store, STATE_FILE)
    original = tmp_path / "original.pt"
    original.write_bytes(state.read_bytes())
    marker = tmp_path / "marker"
    torch.save(_marker_payload(marker, original), state)
    for form in (uri, f"models:/{NAME}@smoke"):
        with pytest.raises(EncoderRefused, match="refused unread") as error:
            load_encoder(form)
        assert str(error.value).startswith(f"{uri}: {STATE_FILE} is not a plain tensor state")
        assert re.search(r"Unsupported global: GLOBAL (builtins\.)?eval\b", str(error.value))
        assert "\n" not in str(error.value) and "weights_only" not in str(error.value)
    assert not marker.exists()


def test_a_tampered_recipe_is_refused_naming_the_bad_value(mlflow_store):
    uri = _log(_model())
    recipe = _artifact(mlflow_store, RECIPE_FILE)
    record = json.loads(recipe.read_text())
    for change, message in (
        ({"builder": "evil"}, r"builder 'evil'; valid choices: \[.*'mnist_ae'"),
        ({"spec": {**record["spec"], "dim_latent": "3"}}, r"spec.dim_latent '3' is not an int"),
    ):
        recipe.write_text(json.dumps({**record, **change}))
        with pytest.raises(EncoderRefused, match=message):
            load_encoder(uri)


def test_a_pickle_only_version_is_refused_with_how_to_re_register(mlflow_store):
    """What lfxai logged before its pickle-free format: refused, never unpickled."""
    with mlflow.start_run():
        mlflow.pytorch.log_model(
            _model().encoder, name="encoder", serialization_format="pickle",
            registered_model_name=NAME,
        )  # fmt: skip
    with pytest.raises(EncoderRefused, match=r"pickled model .*never loaded") as error:
        load_encoder(f"models:/{NAME}/1")
    message = str(error.value)
    assert "re-register it: rerun the experiment that logged it with pretrained=false" in message
    assert message.startswith(f"models:/{NAME}/1 has no {RECIPE_FILE}") and "\n" not in message


@pytest.mark.parametrize(
    ("code", "user_value", "expected"),
    [
        ("import lfxai", None, "false"),  # the library's default
        ("import lfxai", "true", "true"),  # ... never overrides the user's choice
        ("import entrypoints", "true", "false"),  # our processes always refuse pickles
    ],
)
def test_pickle_deserialization_is_off_in_our_processes(code, user_value, expected):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"}
    if user_value is not None:
        env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = user_value
    shown = "import os; print(os.environ['MLFLOW_ALLOW_PICKLE_DESERIALIZATION'])"
    result = subprocess.run(
        [sys.executable, "-c", f"{code}; {shown}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == expected
