"""The explain entry point's settings: every data set and profile resolves, bad input is one
line naming the bad value and the valid choices."""

from __future__ import annotations

import pytest

from lfxai.config import PROFILES, ConfigError
from lfxai.explain.settings import RANDOM, resolve
from lfxai.plugins import DATASETS

URI = "models:/some-encoder@paper"


@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("profile", PROFILES)
def test_every_dataset_and_profile_resolves_with_a_random_baseline(dataset, profile) -> None:
    config, default, plugin = resolve(dataset, URI, profile, {})
    assert plugin.name == dataset and config == default
    assert config.model_uri == URI and config.dataset == dataset
    assert config.split in plugin.splits
    assert config.feature_methods[-1] == RANDOM and config.example_methods[-1] == RANDOM
    assert not {"InfluenceFunctions", "TracIn"} & set(config.example_methods)


def test_random_is_added_once_and_overrides_are_typed() -> None:
    overrides = {"feature_methods": "Saliency", "example_methods": "DKNN", "n_test": "30"}
    config, default, _ = resolve("mnist", URI, "smoke", overrides)
    assert config.feature_methods == ("Saliency", RANDOM)
    assert config.example_methods == ("DKNN", RANDOM)
    assert config.n_test == 30 and default.n_test != 30
    same, _, _ = resolve("mnist", URI, "smoke", {"feature_methods": "Random,Saliency"})
    assert same.feature_methods == (RANDOM, "Saliency")


@pytest.mark.parametrize(
    ("dataset", "profile", "overrides", "message"),
    [
        ("svhn", "smoke", {}, "unknown dataset 'svhn'; valid choices: ['cifar10', 'dsprites'"),
        ("mnist", "huge", {}, "unknown profile 'huge'; valid choices: ['paper', 'quick'"),
        ("mnist", "smoke", {"feature_methods": "Occlusion"}, "unknown feature_methods entry"),
        ("mnist", "smoke", {"example_methods": "KNN"}, "unknown example_methods entry 'KNN'"),
        ("mnist", "smoke", {"example_methods": "DKNN,DKNN"}, "lists ['DKNN'] more than once"),
        ("mnist", "smoke", {"colour": "red"}, "unknown parameter 'colour'; valid choices"),
        ("mnist", "smoke", {"dataset": "ecg5000"}, "dataset is given with --dataset"),
        ("mnist", "smoke", {"model_uri": "x"}, "model_uri is given with --model_uri"),
        ("mnist", "smoke", {"n_test": "20000"}, "n_test=20000 exceeds the 10000 test examples"),
        ("mnist", "smoke", {"n_test_explained": "100"}, "n_test_explained=100 exceeds the 60"),
        ("mnist", "smoke", {"split": "rotated"}, "unknown split 'rotated' for dataset 'mnist'"),
        ("mnist", "smoke", {"perturbation_percentages": "0"}, "entry 0.0 is outside (0, 100]"),
        ("mnist", "smoke", {"device": "tpu"}, "device must be 'auto', 'cpu' or 'cuda[:i]'"),
    ],
)
def test_bad_input_is_one_line_naming_it(dataset, profile, overrides, message) -> None:
    with pytest.raises(ConfigError) as error:
        resolve(dataset, URI, profile, overrides)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_an_empty_model_uri_is_refused() -> None:
    with pytest.raises(ConfigError, match="model_uri is empty"):
        resolve("mnist", " ", "smoke", {})


def test_the_entry_point_declares_only_the_required_values(tmp_path) -> None:
    """`model_uri` and `dataset` are required, `profile` has a real default; every other
    setting reaches the entry point as `--key value` (MLflow appends undeclared -P values)."""
    from mlflow.projects._project_spec import load_project  # MLflow's own MLproject reader

    from tests.helpers import REPO

    entry = load_project(str(REPO)).get_entry_point("explain")
    assert set(entry.parameters) == {"model_uri", "dataset", "profile"}
    params = {"model_uri": URI, "dataset": "mnist", "n_test": "30"}
    command = entry.compute_command(params, str(tmp_path))
    assert command.startswith(
        f"python -m entrypoints.explain --model_uri {URI} --dataset mnist --profile quick"
    )
    assert command.endswith("--n_test 30")
    assert (REPO / "entrypoints" / "explain.py").is_file()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"perturbation_percentages": "5,150"}, "perturbation_percentages entry 150.0 is"),
        ({"similarity_percentages": "0"}, "similarity_percentages entry 0.0 is outside (0, 100]"),
        ({"n_train": "0"}, "n_train must be positive, got 0"),
        ({"n_test": "-2"}, "n_test must be positive, got -2"),
        ({"batch_size": "0"}, "batch_size must be positive, got 0"),
        ({"n_train_explained": "0"}, "n_train_explained must be positive, got 0"),
        ({"n_test_explained": "0"}, "n_test_explained must be positive, got 0"),
        ({"simplex_steps": "-1"}, "simplex_steps must be positive, got -1"),
    ],
)
def test_each_size_and_percentage_list_is_checked_by_name(overrides, message) -> None:
    with pytest.raises(ConfigError) as error:
        resolve("mnist", URI, "smoke", overrides)
    assert str(error.value).startswith(message)


def test_an_empty_model_uri_is_refused_with_an_example() -> None:
    with pytest.raises(ConfigError) as error:
        resolve("mnist", "", "smoke", {})
    assert str(error.value) == "model_uri is empty; e.g. models:/<name>@<alias>"
