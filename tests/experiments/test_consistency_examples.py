"""consistency_examples: its class-balanced subset and the refusal of each bad setting."""

from __future__ import annotations

import pytest
import torch

from lfxai.config import ConfigError, build_config, load_profile
from lfxai.experiments.consistency_examples import ConsistencyExamplesConfig, balanced_subset


def test_balanced_subset_has_equal_class_counts_and_no_repeats():
    labels = torch.arange(10).repeat_interleave(30)
    idx = balanced_subset(labels, 105, torch.Generator().manual_seed(0))
    assert len(idx) == len(set(idx.tolist())) == 105
    counts = torch.bincount(labels[idx], minlength=10)
    assert counts.max() - counts.min() <= 1


def test_balanced_subset_may_take_every_member_of_a_class():
    labels = torch.tensor([0, 1, 1, 0, 2, 2])
    idx = balanced_subset(labels, 6, torch.Generator().manual_seed(0))
    assert sorted(idx.tolist()) == list(range(6))


def test_balanced_subset_is_seeded():
    labels = torch.arange(4).repeat(50)
    a = balanced_subset(labels, 20, torch.Generator().manual_seed(1))
    b = balanced_subset(labels, 20, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_balanced_subset_too_large_is_an_error():
    labels = torch.tensor([0, 0, 0, 1])
    with pytest.raises(ConfigError, match=r"^class 1 has only 1 examples, 2 needed$"):
        balanced_subset(labels, 4, torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match=r"^cannot draw 5 examples from 4$"):
        balanced_subset(labels, 5, torch.Generator().manual_seed(0))


def _settings(**overrides: str) -> ConsistencyExamplesConfig:
    values = load_profile("mnist", "consistency_examples", "smoke")
    return build_config(ConsistencyExamplesConfig, values, overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"example_methods": "DKNN,KNN"},
            r"^unknown example_methods entry 'KNN'; valid choices: \[.*'DKNN'.*'TracIn'\]$",
        ),
        ({"similarity_percentages": "5,150"}, r"^similarity_percentages entry 150.0 is outside"),
        ({"n_train_explained": "0"}, r"^n_train_explained must be positive, got 0$"),
        ({"n_test_explained": "-5"}, r"^n_test_explained must be positive, got -5$"),
        *(
            (
                {"pretrained": "true", "example_methods": methods},
                rf"^pretrained=true reuses only the registered encoder, but {needs} need the "
                r"whole trained model \(its loss, its checkpoints\); valid example_methods with "
                r"pretrained=true: \['DKNN', 'SimplEx'\]$",
            )
            for methods, needs in (
                ("DKNN,InfluenceFunctions", r"\['InfluenceFunctions'\]"),
                ("TracIn,SimplEx,InfluenceFunctions", r"\['InfluenceFunctions', 'TracIn'\]"),
            )
        ),
        (
            {"example_methods": "TracIn", "checkpoint_every": "3", "n_epochs": "2"},
            r"^TracIn needs a checkpoint saved while training: checkpoint_every=3 with "
            r"n_epochs=2 saves none; valid checkpoint_every: 1..2$",
        ),
    ],
)
def test_bad_settings_name_the_value_and_the_choices(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        _settings(**overrides)


def test_a_pretrained_encoder_is_explained_by_the_representation_methods() -> None:
    config = _settings(pretrained="true", example_methods="DKNN,SimplEx")
    assert config.pretrained and config.example_methods == ("DKNN", "SimplEx")
    assert _settings(example_methods="TracIn", checkpoint_every="1", n_epochs="1").n_epochs == 1
