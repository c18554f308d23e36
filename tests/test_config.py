"""Settings: profiles, overrides, validation, and every registered experiment's config."""

from __future__ import annotations

import dataclasses

import pytest

import lfxai
import lfxai.experiments  # noqa: F401  (fills the registry)
from lfxai.config import (
    PROFILES,
    BaseConfig,
    ConfigError,
    build_config,
    check_choices,
    check_percentages,
    check_positive,
    load_profile,
    parse_setting,
    to_flat_dict,
)
from lfxai.experiments.registry import EXPERIMENTS, entries, get_experiment, register
from lfxai.plugins import get_dataset
from tests.config_cases import VALUES, Demo, raised


def test_overrides_are_parsed_with_the_schema_types():
    config = build_config(
        Demo,
        VALUES,
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
        build_config(Demo, VALUES, overrides)


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
        register(name, Demo)(lambda dataset, config, tracker: {})


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


# -- building and validating settings -------------------------------------------------------


def test_unknown_and_missing_settings_in_the_file_are_errors():
    with pytest.raises(ConfigError, match=r"unknown settings \['bogus', 'zeta'\] in the config"):
        build_config(Demo, {**VALUES, "zeta": 1, "bogus": 2})
    partial = {k: v for k, v in VALUES.items() if k not in ("flag", "lr")}
    with pytest.raises(ConfigError, match=r"missing settings \['flag', 'lr'\] for Demo"):
        build_config(Demo, partial)
    # An override supplies a setting the file lacks.
    assert build_config(Demo, partial, {"flag": "no", "lr": "0.5"}).lr == 0.5


@pytest.mark.parametrize(
    ("raw", "value"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True)]
    + [("false", False), ("0", False), ("No", False)],
)
def test_booleans_accept_the_usual_spellings(raw, value):
    assert build_config(Demo, VALUES, {"flag": raw}).flag is value


def test_optional_lists_and_floats_are_parsed_by_their_annotation():
    config = build_config(Demo, VALUES, {"limit": "None", "methods": "x,,y ,", "ratio": "1e-3"})
    assert config.limit is None and config.methods == ("x", "y") and config.ratio == 1e-3
    assert build_config(Demo, VALUES, {"limit": "null"}).limit is None
    assert build_config(Demo, VALUES, {"methods": ""}).methods == ()
    with pytest.raises(ConfigError, match=r"ratio='half' is not a valid float"):
        build_config(Demo, VALUES, {"ratio": "half"})
    with pytest.raises(ConfigError, match=r"limit='7.5' is not a valid int"):
        build_config(Demo, VALUES, {"limit": "7.5"})
    # A list from the file becomes a tuple: the frozen config stays hashable.
    assert isinstance(build_config(Demo, VALUES).methods, tuple)
    hash(build_config(Demo, VALUES))


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        ("batch_size", "0", r"batch_size must be a positive integer, got 0"),
        ("dim_latent", "-2", r"dim_latent must be a positive integer, got -2"),
        ("lr", "0", r"lr must be positive, got 0.0"),
        ("lr", "-1e-3", r"lr must be positive, got -0.001"),
        ("lr", "nan", r"lr must be positive, got nan"),
        ("weight_decay", "-1e-05", r"weight_decay must be >= 0, got -1e-05"),
        (
            "optimizer",
            "adagrad",
            r"unknown optimizer entry 'adagrad'; valid choices: "
            r"\['adam', 'rmsprop', 'sgd'\]",
        ),
        (
            "lr_schedule",
            "step",
            r"unknown lr_schedule entry 'step'; valid choices: "
            r"\['constant', 'cosine'\]",
        ),
        ("device", "gpu", r"device must be 'auto', 'cpu' or 'cuda\[:i\]', got 'gpu'"),
    ],
)
def test_base_settings_reject_values_no_experiment_accepts(key, raw, message):
    with pytest.raises(ConfigError, match=message):
        build_config(Demo, VALUES, {key: raw})


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_device_names_are_accepted_when_cuda_is_there(device, monkeypatch):
    """The names are valid; whether CUDA exists is checked too (see tests/test_runner.py)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert build_config(Demo, VALUES, {"device": device}).device == device


def test_zero_weight_decay_and_the_edges_of_percentages_are_valid():
    assert build_config(Demo, VALUES, {"weight_decay": "0"}).weight_decay == 0
    check_percentages("p", [100, 1])
    for bad, message in (
        ([], "p must not be empty"),
        ([0], "entry 0 is outside"),
        ([100.5], "entry 100.5 is outside"),
        ([-5], "entry -5 is outside"),
    ):
        with pytest.raises(ConfigError, match=message):
            check_percentages("p", bad)


def test_check_choices_and_check_positive_name_the_setting():
    check_choices("m", ["a", "b"], {"b", "a"})
    with pytest.raises(ConfigError, match=r"m must not be empty; valid choices: \['a', 'b'\]"):
        check_choices("m", [], {"b", "a"})
    with pytest.raises(ConfigError, match=r"unknown m entry 'c'; valid choices: \['a', 'b'\]"):
        check_choices("m", ["a", "c"], ["b", "a"])
    config = build_config(Demo, VALUES, {"limit": "3"})
    check_positive(config, "limit", "ratio")
    check_positive(build_config(Demo, VALUES), "limit")  # None means "no limit"
    for raw, shown in (("0", "0"), ("-4", "-4")):
        with pytest.raises(ConfigError, match=rf"^limit must be positive, got {shown}$"):
            check_positive(build_config(Demo, VALUES, {"limit": raw}), "ratio", "limit")


def test_flat_dict_is_what_mlflow_params_get():
    config = build_config(Demo, VALUES, {"methods": "a,b", "limit": "none", "flag": "1"})
    flat = to_flat_dict(config)
    assert flat["methods"] == "a,b" and "limit" not in flat and flat["flag"] == "True"
    assert flat["lr"] == "0.001" and flat["seed"] == "1"
    # Every setting but the None ones: MLflow params are strings, 'None' would read as a value.
    assert set(flat) == {f.name for f in dataclasses.fields(Demo)} - {"limit"}
    assert all(isinstance(v, str) for v in flat.values())


# Each experiment's own rules, from its smoke profile with one override.
EXPERIMENT_RULES = [
    ("mnist", "consistency_features", {"patience": "-1"}, r"patience must be >= 0, got -1"),
    ("mnist", "consistency_features", {"patience": "0"}, None),  # 0 disables early stopping
    ("mnist", "consistency_features", {"pretext": "colour"}, r"unknown pretext entry 'colour'"),
    ("mnist", "consistency_features", {"n_train": "0"}, r"n_train must be positive, got 0"),
    ("mnist", "consistency_features", {"n_test": "-1"}, r"n_test must be positive, got -1"),
    (
        "mnist",
        "consistency_features",
        {"attribution_batch_size": "0"},
        r"attribution_batch_size must be positive, got 0",
    ),
    (
        "mnist",
        "consistency_examples",
        {"influence_method": "newton"},
        r"unknown influence_method entry 'newton'; valid choices: "
        r"\['arnoldi', 'exact', 'lissa', 'lissa_arnoldi'\]",
    ),
    (
        "mnist",
        "consistency_examples",
        {"example_methods": "SimplEx,TracIn", "checkpoint_every": "0"},
        r"TracIn needs a checkpoint saved while training: checkpoint_every=0 with "
        r"n_epochs=(\d+) saves none; valid checkpoint_every: 1\.\.\1$",
    ),
    (  # a shortened run keeping the profile's checkpoint_every would save no checkpoint
        "ecg5000",
        "consistency_examples",
        {"n_epochs": "2", "checkpoint_every": "10"},
        r"checkpoint_every=10 with n_epochs=2 saves none; valid checkpoint_every: 1\.\.2$",
    ),
    ("ecg5000", "consistency_examples", {"n_epochs": "2", "checkpoint_every": "2"}, None),
    (
        "mnist",
        "consistency_examples",
        {"example_methods": "SimplEx", "checkpoint_every": "0"},
        None,
    ),
    ("mnist", "consistency_examples", {"hessian_size": "0"}, r"hessian_size must be positive"),
    ("mnist", "consistency_examples", {"simplex_steps": "0"}, r"simplex_steps must be positive"),
    (
        "mnist",
        "roar_test",
        {"feature_methods": "Saliency,Random,Saliency"},
        r"feature_methods lists \['Saliency'\] more than once: "
        r"\['Saliency', 'Random', 'Saliency'\]",
    ),
]


@pytest.mark.parametrize(("dataset", "experiment", "overrides", "message"), EXPERIMENT_RULES)
def test_each_experiment_validates_its_own_settings(dataset, experiment, overrides, message):
    schema = get_experiment(dataset, experiment).schema
    values = load_profile(dataset, experiment, "smoke")
    if message is None:  # the edge of the rule is valid
        assert isinstance(build_config(schema, values, overrides), schema)
    else:
        with pytest.raises(ConfigError, match=message):
            build_config(schema, values, overrides)


@dataclasses.dataclass(frozen=True)
class _Sizes(BaseConfig):
    sizes: tuple[int, ...]


def _base_values() -> dict:
    """The settings of VALUES every experiment has (those of BaseConfig)."""
    return {
        k: v for k, v in VALUES.items() if k in {f.name for f in dataclasses.fields(BaseConfig)}
    }


def test_a_bad_list_item_names_the_setting():
    values = _base_values()
    assert build_config(_Sizes, {**values, "sizes": [1]}, {"sizes": "3, 4"}).sizes == (3, 4)
    with pytest.raises(ConfigError, match=r"^sizes='x' is not a valid int$"):
        build_config(_Sizes, {**values, "sizes": [1]}, {"sizes": "3,x"})


# -- messages of the remaining rules --------------------------------------------------------


def test_repeated_entries_are_named_in_the_order_they_first_appear():
    assert raised(check_choices, "m", ["c", "a", "b", "a", "c"], "abc") == (
        "m lists ['c', 'a'] more than once: ['c', 'a', 'b', 'a', 'c']"
    )
    assert raised(check_percentages, "p", [50, 10, 50]) == (
        "p lists [50] more than once: [50, 10, 50]"
    )


def test_a_fractional_percentage_says_why_it_must_be_whole():
    assert raised(check_percentages, "p", [10, 10.5]) == (
        "p entry 10.5 is not a whole percent: curves use the percentage as their MLflow step, "
        "an integer (a fraction would be rounded into another point)"
    )


def test_a_cuda_device_torch_cannot_use_fails_with_the_loop_s_reason(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert raised(build_config, Demo, VALUES, {"device": "cuda:2"}) == (
        "device 'cuda:2' asked for, but only 2 CUDA device(s) are visible; "
        "use device=auto or device=cpu"
    )


class _Hex:
    """A converter annotation without a ``__name__``."""

    def __call__(self, value: str) -> int:
        return int(value, 16)

    def __repr__(self) -> str:
        return "hex"


_HEX = _Hex()


@dataclasses.dataclass(frozen=True)
class _Coded(BaseConfig):
    code: _HEX  # type: ignore[valid-type]


def test_a_bad_value_of_a_nameless_type_names_the_type_by_its_text():
    assert build_config(_Coded, _base_values(), {"code": "ff"}).code == 255
    assert raised(build_config, _Coded, _base_values(), {"code": "zz"}) == (
        "code='zz' is not a valid hex"
    )


@pytest.mark.parametrize(
    ("key", "value", "parsed"),
    [
        ("ratio", "50", 50.0),
        ("limit", "7", 7),
        ("limit", "None", None),
        ("flag", "False", False),
        ("methods", "a, b", ["a", "b"]),
        ("n_epochs", "3", 3),  # a setting every config has
    ],
)
def test_a_logged_setting_is_parsed_into_its_type(key, value, parsed):
    assert parse_setting(Demo, key, value) == parsed


def test_parsing_an_unknown_or_malformed_setting_names_it():
    with pytest.raises(ConfigError) as unknown:
        parse_setting(Demo, "ratios", "1")
    assert str(unknown.value) == "unknown setting 'ratios' of Demo"
    with pytest.raises(ConfigError) as malformed:
        parse_setting(Demo, "limit", "seven")
    assert str(malformed.value) == "limit='seven' is not a valid int"
