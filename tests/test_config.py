"""Settings: profiles, overrides, validation, and every registered experiment's config."""

from __future__ import annotations

import dataclasses

import pytest

import lfxai.experiments  # noqa: F401  (fills the registry)
from lfxai.config import PROFILES, BaseConfig, ConfigError, build_config, load_profile
from lfxai.experiments.registry import EXPERIMENTS, entries, get_experiment, register
from lfxai.plugins import get_dataset


@dataclasses.dataclass(frozen=True)
class _Demo(BaseConfig):
    methods: tuple[str, ...]
    ratio: float
    limit: int | None
    flag: bool


_VALUES = dict(
    seed=1,
    device="cpu",
    data_dir="d",
    batch_size=2,
    n_epochs=1,
    dim_latent=2,
    optimizer="adam",
    lr=1e-3,
    weight_decay=0.0,
    lr_schedule="constant",
    methods=["a"],
    ratio=0.5,
    limit=None,
    flag=False,
)


def test_overrides_are_parsed_with_the_schema_types():
    config = build_config(
        _Demo,
        _VALUES,
        {"methods": "a, b", "ratio": "0.25", "limit": "7", "flag": "true", "seed": "profile"},
    )
    assert config.methods == ("a", "b") and config.ratio == 0.25
    assert config.limit == 7 and config.flag is True and config.seed == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_epoch": "3"}, r"unknown parameter 'n_epoch'.*n_epochs"),
        ({"n_epochs": "three"}, r"n_epochs='three' is not a valid int"),
        ({"n_epochs": "0"}, r"n_epochs must be a positive integer"),
        ({"flag": "maybe"}, r"flag='maybe'"),
        ({"device": "tpu"}, r"device must be"),
        ({"seed": ""}, r"seed='' is not a valid int"),
    ],
)
def test_bad_overrides_name_the_value_and_the_choices(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_config(_Demo, _VALUES, overrides)


def test_profile_values_override_paper():
    paper = load_profile("mnist", "consistency_features", "paper")
    smoke = load_profile("mnist", "consistency_features", "smoke")
    assert paper["n_epochs"] == 100 and smoke["n_epochs"] < paper["n_epochs"]
    assert smoke["dim_latent"] == paper["dim_latent"]


def test_unknown_profile_and_experiment_are_errors():
    with pytest.raises(ConfigError, match=r"unknown profile 'huge'.*paper"):
        load_profile("mnist", "consistency_features", "huge")
    with pytest.raises(ConfigError, match=r"unknown experiment 'nope'.*consistency_features"):
        get_experiment("mnist", "nope")
    with pytest.raises(ConfigError, match=r"unknown dataset 'svhn'.*mnist"):
        get_experiment("svhn", "nope")


@pytest.mark.parametrize("key", entries(), ids="/".join)
@pytest.mark.parametrize("profile", PROFILES)
def test_every_experiment_has_valid_settings_for_every_profile(key, profile):
    """Every (dataset, experiment, profile) a user can run builds a valid config."""
    experiment = get_experiment(*key)
    config = build_config(experiment.schema, load_profile(*key, profile))
    assert isinstance(config, experiment.schema)
    get_dataset(key[0]).check_split(config.split)


def test_registering_a_name_twice_raises():
    name = next(iter(EXPERIMENTS))
    with pytest.raises(KeyError, match="twice"):
        register(name, _Demo)(lambda dataset, config, tracker: {})


def test_an_experiment_not_declared_for_a_dataset_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"'roar_test'.*'ecg5000'.*consistency_examples"):
        get_experiment("ecg5000", "roar_test")


def test_defaults_compose_under_each_experiment_and_profile():
    """defaults.paper < experiment.paper < defaults.<profile> < experiment.<profile>."""
    paper = load_profile("ecg5000", "consistency_examples", "paper")
    quick = load_profile("ecg5000", "consistency_examples", "quick")
    assert paper["batch_size"] == 20 and paper["split"] == "random"  # shared, own
    assert quick["batch_size"] == 50 and quick["n_train"] == 1000  # defaults.quick
    assert quick["hessian_size"] == 100 and quick["split"] == "random"  # own quick, own paper
    with pytest.raises(ConfigError, match=r"no configuration for experiment 'defaults'"):
        load_profile("mnist", "defaults", "paper")
