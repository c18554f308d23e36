"""The training block: its checks, and how an experiment's settings build it once."""

from __future__ import annotations

import dataclasses

import pytest

import lfxai.experiments  # noqa: F401  (fills the registry)
from lfxai.config import PROFILES, ConfigError, build_config, load_profile
from lfxai.experiments.pretext import task_settings
from lfxai.experiments.registry import entries, get_experiment
from lfxai.models.registry import training_defaults
from lfxai.plugins import get_dataset
from lfxai.training import TrainingSettings
from tests.config_cases import VALUES, Demo


def test_the_defaults_are_the_paper_autoencoders_training():
    assert TrainingSettings(5) == TrainingSettings(
        n_epochs=5,
        batch_size=None,
        lr=1e-3,
        weight_decay=1e-5,
        optimizer="adam",
        lr_schedule="constant",
        patience=10,
        checkpoint_every=0,
        seed=0,
    )
    TrainingSettings(0, lr=0.0, weight_decay=0.0, patience=0)  # the loop runs these


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"optimizer": "lbfgs"}, r"unknown optimizer 'lbfgs'; valid choices: \['adam', "),
        ({"lr_schedule": "step"}, r"unknown lr_schedule 'step'; valid choices: \['constant', "),
        ({"n_epochs": -1}, r"^n_epochs must be >= 0, got -1$"),
        ({"patience": -2}, r"^patience must be >= 0, got -2$"),
        ({"checkpoint_every": -1}, r"^checkpoint_every must be >= 0, got -1$"),
        ({"batch_size": 0}, r"^batch_size must be a positive integer, got 0$"),
        ({"lr": float("nan")}, r"^lr must be >= 0, got nan$"),
        ({"weight_decay": -1e-5}, r"^weight_decay must be >= 0, got -1e-05$"),
    ],
)
def test_a_member_the_loop_cannot_run_is_refused_by_name(members, message):
    with pytest.raises(ValueError, match=message):
        TrainingSettings(**{"n_epochs": 1, **members})


def test_a_config_builds_the_members_it_declares_and_keeps_the_block_defaults():
    config = build_config(Demo, VALUES)  # no patience nor checkpoint_every
    training = config.training()
    assert training == TrainingSettings(
        n_epochs=1, batch_size=2, lr=1e-3, weight_decay=0.0, seed=1, patience=10
    )
    assert config.training(seed=4, checkpoint_every=1) == dataclasses.replace(
        training, seed=4, checkpoint_every=1
    )
    with pytest.raises(ConfigError, match=r"^checkpoint_every must be >= 0, got -1$"):
        config.training(checkpoint_every=-1)


@pytest.mark.parametrize("key", entries(), ids="/".join)
@pytest.mark.parametrize("profile", PROFILES)
def test_every_experiment_s_block_carries_its_settings(key, profile):
    """The block's members are the experiment's settings of the same names, unchanged."""
    config = build_config(get_experiment(*key).schema, load_profile(*key, profile))
    declared = dataclasses.asdict(config)
    defaults = {field.name: field.default for field in dataclasses.fields(TrainingSettings)}
    for name, value in dataclasses.asdict(config.training()).items():
        assert value == (declared[name] if name in declared else defaults[name]), name


def test_pretext_s_scae_trains_with_its_own_settings_others_with_the_experiment_s():
    config = build_config(
        get_experiment("mnist", "pretext").schema, load_profile("mnist", "pretext", "paper")
    )
    mnist = get_dataset("mnist")
    assert task_settings(mnist, config, "denoising").training() == config.training()
    scae = task_settings(mnist, config, "scae").training()
    assert (scae.optimizer, scae.lr, scae.weight_decay) == ("rmsprop", config.scae_lr, 0.0)
    assert (scae.batch_size, scae.n_epochs) == (config.scae_batch_size, config.scae_n_epochs)
    assert scae.patience == config.scae_patience and scae.seed == config.seed
    # The registry's SCAE defaults apply to the block, the rest of it kept.
    defaults = training_defaults("mnist_scae")
    assert defaults is not None
    applied = defaults.apply(config.training())
    assert isinstance(applied, TrainingSettings) and applied.seed == config.seed
    assert (applied.optimizer, applied.lr, applied.batch_size) == ("rmsprop", 1e-5, 128)
