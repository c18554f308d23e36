"""Resuming and naming a run: the settings a run logged against a command's, once resolved."""

from __future__ import annotations

import pytest

import lfxai.experiments  # noqa: F401  (fills the registry)
from lfxai.config import build_config, load_profile, resolve, setting_differences, to_flat_dict
from lfxai.experiments.registry import entries, get_experiment
from tests.config_cases import VALUES, Demo


@pytest.mark.parametrize("key", entries(), ids="/".join)
def test_a_run_s_own_logged_settings_differ_in_nothing(key):
    """Resume compares to_flat_dict's strings; a paper profile's null settings (n_train: all
    examples) are not logged, and their absence must not read as a change."""
    config = build_config(get_experiment(*key).schema, load_profile(*key, "paper"))
    assert setting_differences(config, to_flat_dict(config)) == []


def test_resume_names_each_changed_setting_and_ignores_other_spellings_of_a_value():
    """One line per setting that differs or is on one side only, sorted by name, showing both
    logged strings; values are compared parsed, so a respelt value is no change."""
    config = build_config(Demo, VALUES, {"limit": "3", "methods": "a,b"})
    flat = to_flat_dict(config)
    assert setting_differences(config, flat) == []
    logged = {k: v for k, v in flat.items() if k != "limit"}  # a run logged without limit
    logged |= {"ratio": "0.50", "flag": "no", "weight_decay": "0"}  # the same values
    logged |= {"lr": "0.01", "methods": "a", "seed": "one", "old_setting": "x"}  # changes
    assert setting_differences(config, logged) == [
        "limit: the run has None, this command '3'",
        "lr: the run has '0.01', this command '0.001'",
        "methods: the run has 'a', this command 'a,b'",
        "old_setting: the run has 'x', this command None",  # a setting the schema lacks now
        "seed: the run has 'one', this command '1'",  # not an int: compared as written
    ]


def test_a_none_setting_resumes_only_against_a_run_that_logged_none():
    """None settings are not logged, so absent means None; a logged value is a change."""
    config = build_config(Demo, VALUES)  # limit None
    flat = to_flat_dict(config)
    assert "limit" not in flat and setting_differences(config, flat) == []
    # The settings after it are still compared.
    assert setting_differences(config, {**flat, "lr": "0.01"}) == [
        "lr: the run has '0.01', this command '0.001'"
    ]
    for theirs in ("5", "many"):  # a value, or one that does not parse: a change either way
        assert setting_differences(config, {**flat, "limit": theirs}) == [
            f"limit: the run has {theirs!r}, this command None"
        ]


def test_settings_resolve_once_with_what_the_command_changed():
    """Only a given value that differs from the profile's is a change (spellings aside)."""
    resolved = resolve(Demo, VALUES, {"methods": "a,b", "ratio": "0.50", "seed": "profile"})
    assert resolved.config == build_config(Demo, VALUES, {"methods": "a,b"})
    assert resolved.given == {"methods": "a,b", "ratio": "0.50"}  # `profile` keeps the value
    assert resolved.changed == {"methods": (("a", "b"), ("a",))}  # 0.50 is the profile's 0.5
