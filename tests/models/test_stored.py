"""Encoders stored without pickle: every model's encoder round-trips; tampered files are refused."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from lfxai.models.registry import MODELS, ModelRecipe, ModelSpec, build_model
from lfxai.models.stored import (
    RECIPE_FILE,
    STATE_FILE,
    EncoderRefused,
    load_encoder_files,
    read_recipe,
    read_state,
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


def test_code_is_refused_even_where_the_environment_turns_torch_s_default_off(
    tmp_path, monkeypatch
) -> None:
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 makes torch.load unpickle freely unless the caller
    passes ``weights_only`` itself: ours does, so a hostile state still never runs."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    recipe, state = write_encoder_files(_trained("mnist_ae"), "encoder", tmp_path)
    marker = tmp_path / "marker"
    torch.save({"weight": _marker_pickle(marker)()}, state)
    with pytest.raises(EncoderRefused, match=r"refused unread \(UnpicklingError: "):
        load_encoder_files(recipe, state, source="s")
    assert not marker.exists()


@pytest.mark.parametrize(
    "state", [{1: torch.zeros(1)}, {"weight": 3}, {"weight": [torch.zeros(1)]}]
)
def test_a_state_of_other_keys_or_values_is_refused(state, tmp_path) -> None:
    path = tmp_path / STATE_FILE
    torch.save(state, path)
    with pytest.raises(EncoderRefused, match=r"s: lfxai-encoder-state.pt is not a \{name: tensor"):
        read_state(path, "s")


def test_a_damaged_state_file_is_refused_with_torch_s_first_line(tmp_path) -> None:
    """A damaged file's error is named by torch's first line (its advice left out); an empty
    file's error has no text."""
    path = tmp_path / STATE_FILE
    path.write_bytes(b"PK\x03\x04 a damaged zip archive")
    with pytest.raises(EncoderRefused) as error:
        read_state(path, "models:/x/3")
    message = str(error.value)
    assert message.startswith("models:/x/3: lfxai-encoder-state.pt is not a plain tensor state")
    assert "(RuntimeError: PytorchStreamReader failed reading zip archive" in message
    assert "\n" not in message
    path.write_bytes(b"")
    with pytest.raises(EncoderRefused, match=r"refused unread \(EOFError: \)$"):
        read_state(path, "s")


def test_every_refusal_names_its_source(tmp_path) -> None:
    recipe, state = write_encoder_files(_trained("mnist_ae"), "encoder", tmp_path)
    source = "models:/encoders/7"
    recipe.write_text(json.dumps({**_record(), "builder": "nope"}))
    with pytest.raises(EncoderRefused, match=f"^{source}: {RECIPE_FILE}: builder 'nope'"):
        load_encoder_files(recipe, state, source=source)
    recipe.write_text(json.dumps({**_record(), "module": "head"}))
    with pytest.raises(EncoderRefused, match=f"^{source}: {RECIPE_FILE} does not build"):
        load_encoder_files(recipe, state, source=source)
    recipe.write_text(json.dumps({**_record(), "module": "decoder"}))
    with pytest.raises(EncoderRefused, match=f"^the state from {source} does not fit Decoder"):
        load_encoder_files(recipe, state, source=source)
    recipe.unlink()
    with pytest.raises(EncoderRefused, match=f"^{source}: {RECIPE_FILE} is missing$"):
        load_encoder_files(recipe, state, source=source)


def test_the_encoder_goes_to_the_asked_device(tmp_path) -> None:
    files = write_encoder_files(_trained("mnist_ae"), "encoder", tmp_path)
    loaded = load_encoder_files(*files, source="s", device="meta")  # no GPU needed
    assert {p.device.type for p in loaded.parameters()} == {"meta"}


def test_the_recipe_file_is_indented_json_and_keeps_the_spec(tmp_path) -> None:
    model = _trained("mnist_ae")
    recipe, _ = write_encoder_files(model, "encoder", tmp_path)
    text = recipe.read_text()
    assert text == json.dumps(json.loads(text), indent=2) + "\n"  # readable in the MLflow UI
    spec = {"dim_latent": 3, "input_shape": [1, 28, 28], "pretext": "denoising", "name": "m"}
    assert json.loads(text)["spec"] == spec
    parsed, module = read_recipe(text, "s")
    assert parsed.spec == ModelSpec(3, (1, 28, 28), "denoising", "m") and module == "encoder"


@pytest.mark.parametrize(("shape", "ok"), [([5], True), ([1, 2, 3, 4], True), ([1] * 5, False)])
def test_a_recipe_s_input_shape_has_one_to_four_sides(shape, ok) -> None:
    record = _record()
    record["spec"]["input_shape"] = shape
    if ok:
        assert read_recipe(json.dumps(record), "s")[0].spec.input_shape == tuple(shape)
    else:
        with pytest.raises(EncoderRefused, match="is not a list of 1 to 4 integers"):
            read_recipe(json.dumps(record), "s")


def test_a_recipe_that_does_not_rebuild_its_model_is_not_logged(tmp_path) -> None:
    model = _trained("mnist_ae")
    model.recipe = ModelRecipe("mnist_ae", ModelSpec(5, (1, 28, 28)))  # a code size of 5, not 3
    with pytest.raises(
        ValueError,
        match=r"^the logged encoder would not load: the state from the "
        r"encoder of AutoEncoderMnist does not fit EncoderMnist",
    ):
        write_encoder_files(model, "encoder", tmp_path)
    model.recipe = None
    with pytest.raises(
        ValueError,
        match=r"^AutoEncoderMnist was not built by lfxai.models.registry"
        r".build_model: nothing says how to rebuild its encoder$",
    ):
        write_encoder_files(model, "encoder", tmp_path)
