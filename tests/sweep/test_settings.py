"""Sweep settings: profiles build, bad values are errors naming the value and the choices."""

from __future__ import annotations

import pytest

from lfxai.config import PROFILES, ConfigError
from lfxai.sweep.settings import (
    check_choices_of,
    load_sweep_config,
    resolve_sweep,
    split_overrides,
)
from lfxai.sweep.study import default_storage
from tests.sweep.fakes import FakeConfig, fake_backend

LOSSES = ("beta_vae", "beta_tc_vae")


@pytest.mark.parametrize("dataset", ["mnist", "dsprites"])
@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_of_the_repo_s_sweep_yaml_builds(dataset, profile):
    config = load_sweep_config(dataset, profile, {"n_trials": "3"})
    check_choices_of(config, [dataset], LOSSES)
    assert config.n_trials == 3
    assert config.latent_range[0] < config.latent_range[1]
    assert config.grace_period > config.heartbeat_interval


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_trials": "0"}, r"n_trials must be a positive integer, got 0"),
        ({"objective": "fast"}, r"unknown objective entry 'fast'; valid choices: \['correlation'"),
        ({"sampler": "grid"}, r"unknown sampler entry 'grid'; valid choices: \['nsga2', 'random'"),
        ({"beta_range": "5,1"}, r"beta_range must have low < high, got \[5.0, 1.0\]"),
        ({"beta_range": "0,1"}, r"beta_range low end must be > 0, got 0.0"),
        (
            {"beta_range": "1,2,3"},
            r"beta_range must be two values 'low,high', got \[1.0, 2.0, 3.0\]",
        ),
        ({"latent_range": "1,4"}, r"latent_range low end must be >= 2, got 1"),
        ({"prune_percentile": "100"}, r"prune_percentile must lie in \(0, 100\), got 100.0"),
        ({"latent_range": "2.5,4"}, r"latent_range='2.5' is not a valid int"),
        ({"n_jobs": "0"}, r"n_jobs must be a positive integer, got 0"),
        ({"timeout": "-1"}, r"timeout must be positive seconds \(or none\), got -1.0"),
        ({"grace_period": "1"}, r"grace_period \(1 s\) must exceed heartbeat_interval \(30 s\)"),
        ({"max_retry": "-1"}, r"max_retry must be >= 0, got -1"),
        ({"study_name": " "}, r"study_name must not be blank"),
        ({"losses": ""}, r"losses must not be empty"),
        ({"n_trials": "many"}, r"n_trials='many' is not a valid int"),
    ],
)
def test_bad_settings_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep_config("mnist", "paper", {"n_trials": "3", **overrides})


def test_unknown_losses_and_datasets_name_the_choices():
    config = load_sweep_config("mnist", "paper", {"n_trials": "3", "losses": "beta_vae,vq"})
    with pytest.raises(ConfigError, match=r"unknown losses entry 'vq'; valid choices: \['beta_tc"):
        check_choices_of(config, ["mnist"], LOSSES)
    with pytest.raises(ConfigError, match=r"unknown dataset entry 'mnist'; valid choices: \['ds"):
        check_choices_of(config, ["dsprites"], LOSSES)


def test_overrides_go_to_the_sweep_or_the_trials_or_are_refused():
    ours, theirs = split_overrides({"n_trials": "3", "n_epochs": "2", "seed": "7"}, FakeConfig)
    assert ours == {"n_trials": "3", "seed": "7"} and theirs == {"n_epochs": "2"}
    with pytest.raises(ConfigError, match=r"unknown parameter 'nope'; valid sweep settings: \["):
        split_overrides({"nope": "1"}, FakeConfig)
    # the latent size is the sweep's to choose, per trial
    for sampled in ("dim_latent", "beta_list"):
        with pytest.raises(ConfigError, match=rf"unknown parameter '{sampled}'"):
            split_overrides({sampled: "4"}, FakeConfig)


def test_resolve_checks_dataset_profile_and_trial_settings(sweep_env):
    backend = fake_backend()
    settings = resolve_sweep("mnist", "smoke", {"n_trials": "2", "n_epochs": "5"}, backend)
    config, base = settings.config, settings.base
    assert (config.dataset, base.n_epochs, base.seed) == ("mnist", 5, config.seed)
    assert settings.changed == {"n_trials": (2, None), "n_epochs": (5, 2)}  # the smoke profile
    with pytest.raises(ConfigError, match=r"unknown dataset 'ecg5000' for a sweep; valid"):
        resolve_sweep("ecg5000", "smoke", {"n_trials": "2"}, backend)
    with pytest.raises(ConfigError, match=r"unknown profile 'huge'; valid choices"):
        resolve_sweep("mnist", "huge", {"n_trials": "2"}, backend)
    with pytest.raises(ConfigError, match=r"unknown split 'odd' for dataset 'mnist'"):
        resolve_sweep("mnist", "smoke", {"n_trials": "2", "split": "odd"}, backend)


def test_default_storage_lies_beside_a_sqlite_mlflow_store(tmp_path, monkeypatch):
    assert default_storage(f"sqlite:///{tmp_path}/mlflow.db") == f"sqlite:///{tmp_path}/optuna.db"
    monkeypatch.chdir(tmp_path)
    assert default_storage("http://127.0.0.1:5000") == f"sqlite:///{tmp_path}/optuna.db"


def test_the_entry_point_declares_dataset_n_trials_and_profile_and_passes_the_rest(tmp_path):
    from lfxai.tracking.compat import load_mlproject
    from tests.helpers import REPO

    entry = load_mlproject(REPO).get_entry_point("sweep")
    assert set(entry.parameters) == {"dataset", "n_trials", "profile"}
    params = {"dataset": "mnist", "n_trials": "4", "n_jobs": "2", "beta_range": "1,8"}
    command = entry.compute_command(params, str(tmp_path))
    assert command.startswith(
        "python -m entrypoints.sweep --dataset mnist --n_trials 4 --profile quick"
    )
    assert "--n_jobs 2" in command and "--beta_range 1,8" in command
