"""The registry of experiments: registering, listing and finding them per data set."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from lfxai.config import ConfigError
from lfxai.experiments import registry
from lfxai.experiments.registry import Experiment, datasets, entries, get_experiment, names
from tests.config_cases import Demo


def _run(dataset, config, tracker) -> dict[str, float]:
    return {"m": 1.0}


def test_register_keeps_name_schema_function_and_resumable_and_returns_the_function(monkeypatch):
    monkeypatch.setattr(registry, "EXPERIMENTS", {})
    assert registry.register("plain", Demo)(_run) is _run
    assert registry.register("again", Demo, resumable=True)(_run) is _run
    registered = registry.EXPERIMENTS
    assert registered == {
        "plain": Experiment("plain", Demo, _run, False),
        "again": Experiment("again", Demo, _run, True),
    }


def test_a_second_registration_of_a_name_raises_and_keeps_the_first(monkeypatch):
    monkeypatch.setattr(registry, "EXPERIMENTS", {})
    registry.register("x", Demo)(_run)
    with pytest.raises(KeyError, match="^'experiment x is registered twice'$"):
        registry.register("x", Demo, resumable=True)(lambda dataset, config, tracker: {})
    assert registry.EXPERIMENTS["x"] == Experiment("x", Demo, _run, False)


def test_data_sets_names_and_entries_are_sorted_and_come_from_the_plugins(monkeypatch):
    plugins = {
        "zeta": SimpleNamespace(experiments=("b", "a")),
        "alpha": SimpleNamespace(experiments=("c",)),
    }
    monkeypatch.setattr(registry, "DATASETS", plugins)
    monkeypatch.setattr(registry, "get_dataset", plugins.__getitem__)
    assert datasets() == ["alpha", "zeta"]
    assert names("zeta") == ["a", "b"]
    assert entries() == [("alpha", "c"), ("zeta", "a"), ("zeta", "b")]


def test_get_experiment_returns_the_registered_one_for_a_declared_name():
    experiment = get_experiment("mnist", "roar_test")
    assert experiment is registry.EXPERIMENTS["roar_test"] and experiment.name == "roar_test"


def test_an_undeclared_name_lists_the_data_sets_choices():
    message = (
        f"unknown experiment 'roar_test' for dataset 'ecg5000'; valid choices: {names('ecg5000')}"
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        get_experiment("ecg5000", "roar_test")


def test_a_declared_experiment_nobody_registered_is_not_implemented(monkeypatch):
    monkeypatch.setattr(registry, "EXPERIMENTS", {})
    message = "experiment 'roar_test' of dataset 'mnist' is not implemented"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        get_experiment("mnist", "roar_test")
