"""Encoders stored without pickle: a JSON recipe and a tensor-only state, rebuilt from our code.

A logged encoder carries two files of ours (beside MLflow's own ``pt2`` graph of it, which
the UI and MLflow's loader use):

- :data:`RECIPE_FILE`, JSON: what rebuilds the module from lfxai's own code, e.g.
  ``{"format": 1, "builder": "mnist_ae", "spec": {"dim_latent": 4, "input_shape": [1, 28,
  28], "pretext": "denoising", "name": "denoising_ae"}, "module": "encoder",
  "lfxai_version": "0.1.0"}``: the key of the builder in
  :data:`lfxai.models.registry.MODELS`, its :class:`ModelSpec`, and which sub-module of the
  built model the encoder is;
- :data:`STATE_FILE`: the encoder's state dict, CPU tensors (``torch.save``).

Loading (:func:`load_encoder_files`) checks the recipe field by field, builds the model
through the registry, and reads the state with ``torch.load(weights_only=True)``, which
refuses anything but tensors and plain containers: nothing read from the store runs as code.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lfxai import __version__
from lfxai.models.autoencoder import TrainableModel, load_state_strict
from lfxai.models.pretext import PRETEXTS
from lfxai.models.registry import MODELS, build_model
from lfxai.models.spec import ModelRecipe, ModelSpec

RECIPE_FILE = "lfxai-encoder.json"
STATE_FILE = "lfxai-encoder-state.pt"
FORMAT = 1  # of RECIPE_FILE; a reader refuses another
_FIELDS = ("format", "builder", "spec", "module", "lfxai_version")
_SPEC_FIELDS = ("dim_latent", "input_shape", "pretext", "name")
_MODULE_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class EncoderRefused(ValueError):
    """A stored encoder that is not loaded (the message says why, in one line)."""


def write_encoder_files(model: TrainableModel, module: str, folder: Path) -> list[Path]:
    """Writes the recipe and state of ``model``'s sub-module ``module`` into ``folder``.

    The files are read back first (:func:`load_encoder_files`), so that what is stored is
    known to rebuild the module.

    Args:
        model: built by :func:`lfxai.models.registry.build_model` (it has ``model.recipe``).
        module: the encoder's path in ``model``, e.g. ``encoder``.
        folder: an existing folder.

    Returns:
        The two files, recipe first.

    Raises:
        ValueError: ``model`` has no recipe, or its recipe does not rebuild ``module``.
    """
    recipe = model.recipe
    if recipe is None:
        raise ValueError(
            f"{type(model).__name__} was not built by lfxai.models.registry.build_model: "
            "nothing says how to rebuild its encoder"
        )
    spec = recipe.spec
    record = {
        "format": FORMAT,
        "builder": recipe.key,
        "spec": {**{k: getattr(spec, k) for k in _SPEC_FIELDS}, "input_shape": [*spec.input_shape]},
        "module": module,
        "lfxai_version": __version__,
    }
    recipe_file, state_file = folder / RECIPE_FILE, folder / STATE_FILE
    recipe_file.write_text(json.dumps(record, indent=2) + "\n")
    encoder = model.get_submodule(module)
    torch.save({k: v.detach().cpu() for k, v in encoder.state_dict().items()}, state_file)
    try:
        load_encoder_files(recipe_file, state_file, f"the {module} of {type(model).__name__}")
    except EncoderRefused as error:
        raise ValueError(f"the logged encoder would not load: {error}") from None
    return [recipe_file, state_file]


def load_encoder_files(
    recipe_file: Path, state_file: Path, source: str, device: str = "cpu"
) -> nn.Module:
    """The encoder a :data:`RECIPE_FILE` and a :data:`STATE_FILE` describe, in eval mode.

    Args:
        recipe_file: the :data:`RECIPE_FILE` (a local copy).
        state_file: the :data:`STATE_FILE` (a local copy).
        source: where they came from (a model URI), named in every error.
        device: where the module goes.

    Raises:
        EncoderRefused: a file is missing, the recipe is not one this lfxai builds (the bad
            field named), or the state is not plain tensors that fit the module exactly.
    """
    if not recipe_file.is_file():
        raise EncoderRefused(f"{source}: {RECIPE_FILE} is missing")
    recipe, module = read_recipe(recipe_file.read_text(), source)
    try:
        encoder = build_model(recipe.key, recipe.spec).get_submodule(module)
    except (ValueError, AttributeError) as error:  # shapes the builder refuses; no such module
        where = f"{source}: {RECIPE_FILE}"
        raise EncoderRefused(f"{where} does not build an encoder: {error}") from None
    state = read_state(state_file, source)
    try:
        load_state_strict(encoder, state, source)
    except ValueError as error:
        raise EncoderRefused(str(error)) from None
    return encoder.to(device).eval()


def read_recipe(text: str, source: str) -> tuple[ModelRecipe, str]:
    """The recipe and encoder sub-module of a :data:`RECIPE_FILE`, every field checked.

    Raises:
        EncoderRefused: not JSON, another format, a missing or unknown field, a builder that
            is not in :data:`MODELS`, or a value of the wrong type (each named).
    """
    where = f"{source}: {RECIPE_FILE}"
    try:
        record = json.loads(text)
    except ValueError as error:
        raise EncoderRefused(f"{where} is not JSON ({error})") from None
    _check_fields(record, _FIELDS, where)
    if type(record["format"]) is not int or record["format"] != FORMAT:
        raise EncoderRefused(f"{where}: format {record['format']!r}, this lfxai reads {FORMAT}")
    builder = record["builder"]
    if not isinstance(builder, str) or builder not in MODELS:
        raise EncoderRefused(f"{where}: builder {builder!r}; valid choices: {sorted(MODELS)}")
    module = record["module"]
    if not isinstance(module, str) or not _MODULE_PATH.fullmatch(module):
        raise EncoderRefused(f"{where}: module {module!r} is not a sub-module path like 'encoder'")
    if not isinstance(record["lfxai_version"], str):
        raise EncoderRefused(f"{where}: lfxai_version {record['lfxai_version']!r} is not a string")
    return ModelRecipe(builder, _spec(record["spec"], where)), module


def _check_fields(record: Any, fields: tuple[str, ...], where: str) -> None:
    if not isinstance(record, dict):
        raise EncoderRefused(f"{where}: expected an object with {list(fields)}, got {record!r}")
    missing = [k for k in fields if k not in record]
    unknown = sorted(set(record) - set(fields))
    if missing or unknown:
        raise EncoderRefused(f"{where}: missing fields {missing}, unknown fields {unknown}")


def _positive_int(value: Any) -> bool:
    return type(value) is int and value >= 1  # bool is an int subclass: refused by `is`


def _spec(record: Any, where: str) -> ModelSpec:
    _check_fields(record, _SPEC_FIELDS, f"{where} spec")
    dim, shape = record["dim_latent"], record["input_shape"]
    pretext, name = record["pretext"], record["name"]
    if not _positive_int(dim):
        raise EncoderRefused(f"{where}: spec.dim_latent {dim!r} is not an integer >= 1")
    if not (isinstance(shape, list) and 1 <= len(shape) <= 4 and all(map(_positive_int, shape))):
        raise EncoderRefused(
            f"{where}: spec.input_shape {shape!r} is not a list of 1 to 4 integers >= 1"
        )
    if pretext not in PRETEXTS:
        raise EncoderRefused(f"{where}: spec.pretext {pretext!r}; valid choices: {list(PRETEXTS)}")
    if not isinstance(name, str):
        raise EncoderRefused(f"{where}: spec.name {name!r} is not a string")
    return ModelSpec(dim, tuple(shape), pretext, name)


def read_state(path: Path, source: str) -> dict[str, torch.Tensor]:
    """A :data:`STATE_FILE` read with ``torch.load(weights_only=True)``: tensors only.

    Raises:
        EncoderRefused: the file is missing, holds anything but tensors (e.g. a pickle that
            would call a function: refused before it runs), or is not ``{name: tensor}``.
    """
    if not path.is_file():
        raise EncoderRefused(f"{source}: {STATE_FILE} is missing")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": refused anyway
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch's refusals and damaged files alike: never unpickled
        raise EncoderRefused(
            f"{source}: {STATE_FILE} is not a plain tensor state, refused unread "
            f"({type(error).__name__}: {_reason(error)})"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise EncoderRefused(f"{source}: {STATE_FILE} is not a {{name: tensor}} state dict")
    return state


# What torch's weights-only unpickler says it refused ("Unsupported global: GLOBAL eval ...",
# "Trying to load unsupported GLOBAL posix.system ...", "Unsupported operand 149"), without the
# advice around it (which suggests loading the file with the restriction off).
_REFUSED = re.compile(r"(?:Trying to load )?[Uu]nsupported .*?(?=\.\s|\.?$)", re.MULTILINE)


def _reason(error: Exception) -> str:
    """What a ``torch.load`` error says was refused, in one line."""
    found = _REFUSED.search(str(error))
    if found:
        return found.group(0).strip()
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else ""
