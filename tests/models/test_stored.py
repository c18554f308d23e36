"""Encoders stored without pickle: every model's encoder round-trips; tampered files are refused."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from lfxai.models.registry import MODELS, ModelSpec, build_model
from lfxai.models.stored import (
    RECIPE_FILE,
    STATE_FILE,
    EncoderRefused,
    load_encoder_files,
    read_recipe,
    write_encoder_files,
)
from tests.models.test_registry import DIMS, SHAPES


def _trained(key: str) -> torch.nn.Module:
    """A model of ``key`` whose weights and float buffers (BatchNorm statistics) are not
    the builder's: a rebuilt module only matches it if the state was loaded."""
    torch.manual_seed(1)
    model = build_model(key, ModelSpec(DIMS.get(key, 3), SHAPES[key], "denoising", "m"))
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.add_(0.1 * torch.rand_like(tensor))
    return model.eval()


def _files(folder: Path) -> tuple[Path, Path]:
    return folder / RECIPE_FILE, folder / STATE_FILE


@pytest.mark.parametrize("key", sorted(MODELS))
def test_every_model_s_encoder_round_trips(key, tmp_path) -> None:
    model = _trained(key)
    files = write_encoder_files(model, "encoder", tmp_path)
    assert [f.name for f in files] == [RECIPE_FILE, STATE_FILE]
    loaded = load_encoder_files(*files, source="test")
    assert type(loaded) is type(model.encoder) and not loaded.training
    x = torch.rand(3, *SHAPES[key])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.encoder(x), rtol=1e-5, atol=1e-6)
    record = json.loads(files[0].read_text())
    assert record["builder"] == key and record["module"] == "encoder"
    assert record["spec"]["input_shape"] == list(SHAPES[key])


@pytest.mark.parametrize("side", [32, 64])
def test_a_disvae_encoder_round_trips_whatever_its_loss_and_beta(side, tmp_path) -> None:
    torch.manual_seed(2)
    spec = ModelSpec(6, (1, side, side), name="trial")
    vae = build_model("burgess_vae", spec, loss="beta_tc_vae", beta=5.0, dataset_size=100).eval()
    loaded = load_encoder_files(*write_encoder_files(vae, "encoder", tmp_path), source="t")
    x = torch.rand(2, 1, side, side)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), vae.encoder(x), rtol=1e-5, atol=1e-6)


def test_a_model_built_by_hand_is_not_logged(tmp_path) -> None:
    model = build_model("mnist_ae", ModelSpec(4, (1, 28, 28)))
    model.recipe = None
    with pytest.raises(ValueError, match="was not built by lfxai.models.registry.build_model"):
        write_encoder_files(model, "encoder", tmp_path)


def _marker_pickle(marker: Path) -> type:
    class Payload:
        """Unpickling it would call ``os.system``: what a hostile state file holds."""

        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return Payload


@pytest.mark.parametrize("form", ["torch.save", "raw pickle"])
def test_a_state_that_would_run_code_is_refused_unread(form, tmp_path) -> None:
    recipe, state = write_encoder_files(_trained("mnist_ae"), "encoder", tmp_path)
    marker = tmp_path / "marker"
    payload = _marker_pickle(marker)()
    if form == "torch.save":
        torch.save({"encoder_cnn.0.weight": payload}, state)
    else:
        state.write_bytes(pickle.dumps(payload))
    with pytest.raises(EncoderRefused, match="not a plain tensor state, refused unread") as error:
        load_encoder_files(recipe, state, source="models:/x/1")
    assert not marker.exists()
    message = str(error.value)
    assert "\n" not in message and message.startswith("models:/x/1: lfxai-encoder-state.pt")
    if form == "torch.save":
        assert "unsupported GLOBAL posix.system" in message  # says what it refused
    assert "weights_only" not in message  # none of torch's advice to load it anyway


def test_a_state_that_does_not_fit_is_refused(tmp_path) -> None:
    recipe, state = write_encoder_files(_trained("mnist_ae"), "encoder", tmp_path)
    torch.save({"weight": torch.zeros(2)}, state)
    with pytest.raises(EncoderRefused, match=r"does not fit EncoderMnist: missing keys"):
        load_encoder_files(recipe, state, source="s")
    torch.save([torch.zeros(2)], state)
    with pytest.raises(EncoderRefused, match=r"is not a \{name: tensor\} state dict"):
        load_encoder_files(recipe, state, source="s")
    state.unlink()
    with pytest.raises(EncoderRefused, match=f"{STATE_FILE} is missing"):
        load_encoder_files(recipe, state, source="s")


def _record() -> dict:
    return {
        "format": 1,
        "builder": "mnist_ae",
        "spec": {"dim_latent": 4, "input_shape": [1, 28, 28], "pretext": "denoising", "name": "a"},
        "module": "encoder",
        "lfxai_version": "0.1.0",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"builder": "os.system"}, r"builder 'os.system'; valid choices: \['burgess_vae'"),
        ({"builder": ["mnist_ae"]}, r"builder \['mnist_ae'\]; valid choices"),
        ({"format": 2}, r"format 2, this lfxai reads 1"),
        ({"format": True}, r"format True, this lfxai reads 1"),
        ({"module": "__class__.__init__()"}, r"module '__class__.__init__\(\)' is not a sub"),
        ({"module": 3}, r"module 3 is not a sub-module path"),
        ({"lfxai_version": 1}, r"lfxai_version 1 is not a string"),
        ({"extra": 1}, r"missing fields \[\], unknown fields \['extra'\]"),
        ({"spec": [4]}, r"spec: expected an object"),
        ({"spec.dim_latent": "4"}, r"spec.dim_latent '4' is not an integer >= 1"),
        ({"spec.dim_latent": True}, r"spec.dim_latent True is not an integer >= 1"),
        ({"spec.dim_latent": 0}, r"spec.dim_latent 0 is not an integer >= 1"),
        ({"spec.input_shape": [1, 28.0, 28]}, r"spec.input_shape \[1, 28.0, 28\] is not a list"),
        ({"spec.input_shape": "1,28,28"}, r"spec.input_shape '1,28,28' is not a list"),
        ({"spec.pretext": "evil"}, r"spec.pretext 'evil'; valid choices: \["),
        ({"spec.name": None}, r"spec.name None is not a string"),
    ],
)
def test_a_recipe_with_a_bad_field_is_refused_naming_it(change, message) -> None:
    record = _record()
    for key, value in change.items():
        if key.startswith("spec."):
            record["spec"][key.removeprefix("spec.")] = value
        else:
            record[key] = value
    with pytest.raises(EncoderRefused, match=message) as error:
        read_recipe(json.dumps(record), "models:/x/1")
    assert str(error.value).startswith(f"models:/x/1: {RECIPE_FILE}")
    assert "\n" not in str(error.value)


def test_a_recipe_that_is_not_json_or_does_not_build_is_refused(tmp_path) -> None:
    with pytest.raises(EncoderRefused, match=r"is not JSON"):
        read_recipe("{'builder': 1}", "s")
    recipe, state = write_encoder_files(_trained("mnist_ae"), "encoder", tmp_path)
    for changes, message in (
        ({"module": "decoder"}, r"does not fit DecoderMnist"),  # another module: its state
        ({"module": "head"}, r"does not build an encoder: .*has no attribute `head`"),
        ({"spec": {**_record()["spec"], "input_shape": [3, 32, 32]}}, r"takes inputs of shape"),
    ):
        recipe.write_text(json.dumps({**_record(), **changes}))
        with pytest.raises(EncoderRefused, match=message):
            load_encoder_files(recipe, state, source="s")
