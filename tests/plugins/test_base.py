"""What every plugin inherits: absent sizes, the errors' wording, models, baselines, registry."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lfxai.config import ConfigError
from lfxai.data import mnist
from lfxai.data.provision import DataUnavailable
from lfxai.models.spec import ModelRecipe, ModelSpec
from lfxai.plugins import base, get_dataset
from lfxai.plugins.base import replacement_for


def test_sizes_a_config_does_not_have_mean_all_of_the_split(tmp_path):
    plugin = get_dataset("mnist")
    plugin.check_config(SimpleNamespace(split="standard", data_dir=str(tmp_path)))
    # Without n_test, a subset of the explained split is measured against all of it.
    config = SimpleNamespace(split="standard", data_dir=str(tmp_path), n_explained=10_001)
    with pytest.raises(ConfigError) as error:
        plugin.check_config(config)
    assert str(error.value) == (
        "n_explained=10001 exceeds the 10000 examples of the explained split (all of mnist's "
        "'standard' explained split); choose n_explained <= 10000"
    )


def test_load_names_the_split_of_a_size_beyond_it(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "ensure_mnist", lambda *_: pytest.fail("data read"))
    with pytest.raises(ConfigError) as error:
        get_dataset("mnist").load(str(tmp_path), "resized32", 0, 60_001, None)
    assert str(error.value) == (
        "n_train=60001 exceeds the 60000 training examples of mnist (split 'resized32'); "
        "choose n_train <= 60000 (none: all of them)"
    )


def test_data_that_cannot_be_provided_is_a_config_error_with_the_same_line(tmp_path, monkeypatch):
    line = "MNIST is not available under x: 4 files missing; tried: nothing; to fix: be online"

    def unavailable(*_args: object, **_kwargs: object) -> None:
        raise DataUnavailable(line)

    monkeypatch.setattr(mnist, "ensure_mnist", unavailable)
    with pytest.raises(ConfigError) as error:
        get_dataset("mnist").load(str(tmp_path), "standard", 0, 3, 2)
    assert str(error.value) == line and error.value.__cause__ is None


def test_build_model_builds_the_plugins_model_with_the_given_spec():
    model = get_dataset("mnist").build_model(3, torch.Size([1, 28, 28]), "denoising", "ae")
    assert model.recipe == ModelRecipe("mnist_ae", ModelSpec(3, (1, 28, 28), "denoising", "ae"))
    assert model.encoder(torch.zeros(2, 1, 28, 28)).shape == (2, 3)


class _Double(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


def test_replacement_is_the_tensor_or_what_the_module_maps_the_inputs_to():
    inputs = torch.arange(6.0).reshape(2, 3).requires_grad_()
    tensor = torch.zeros(1, 3)
    assert replacement_for(tensor, inputs) is tensor
    replaced = replacement_for(_Double(), inputs)
    assert torch.equal(replaced, torch.arange(6.0).reshape(2, 3) * 2)
    assert not replaced.requires_grad  # computed without a graph


class _Fake(base.DatasetPlugin):
    name = "fake"
    title = "Fake"
    model = "mnist_ae"
    experiments = ()
    splits = ("standard",)
    feature_unit = "pixels"

    def provision_root(self, root: Path):
        raise NotImplementedError

    def split_sizes(self, data_dir, split):
        return base.SplitSizes(1, 1, 1)

    def read_splits(self, data_dir, split, seed, n_train, n_test):
        raise NotImplementedError

    def provisioned_files(self, data_dir):
        return {}

    def baseline(self, train):
        return torch.zeros(1)

    def example_figure(self, inputs, maps, methods, title):
        raise NotImplementedError


def test_registering_adds_one_instance_and_a_name_twice_is_refused(monkeypatch):
    monkeypatch.setattr(base, "DATASETS", {"mnist": get_dataset("mnist")})
    assert base.register_dataset(_Fake) is _Fake
    assert isinstance(base.get_dataset("fake"), _Fake)
    with pytest.raises(KeyError, match=r"^\"dataset 'fake' is registered twice\"$"):
        base.register_dataset(_Fake)
    with pytest.raises(
        ConfigError, match=r"^unknown dataset 'x'; valid choices: \['fake', 'mnist'\]$"
    ):
        base.get_dataset("x")
