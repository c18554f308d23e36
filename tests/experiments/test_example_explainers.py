"""The example explainers' settings block, declared once, and the explainers built from it."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from lfxai.config import ConfigError, build_config, load_profile, to_flat_dict
from lfxai.data.splits import Split
from lfxai.experiments.consistency_examples import ConsistencyExamplesConfig
from lfxai.experiments.example_explainers import (
    OPTIONS,
    ExampleExplainerSettings,
    build_explainer,
    influence_loader,
)
from lfxai.experiments.pretext import PretextConfig
from lfxai.explanations.examples import EXAMPLE_METHODS, InfluenceFunctions, SimplEx

BLOCK = [f.name for f in dataclasses.fields(ExampleExplainerSettings)]
SCHEMAS = {"consistency_examples": ConsistencyExamplesConfig, "pretext": PretextConfig}


def _settings(**changes) -> ExampleExplainerSettings:
    values = dict(
        influence_method="arnoldi",
        recursion_depth=3,
        hvp_batch_size=4,
        damping=0.2,
        scale=7.0,
        hessian_size=9,
        arnoldi_iter=5,
        arnoldi_rank=2,
        simplex_steps=11,
    )
    return ExampleExplainerSettings(**{**values, **changes})


class _AE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder, self.decoder = nn.Linear(3, 2), nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return nn.functional.mse_loss(self(x), x)


def test_the_block_holds_the_nine_settings_by_their_names() -> None:
    assert BLOCK == [
        "influence_method",
        "recursion_depth",
        "hvp_batch_size",
        "damping",
        "scale",
        "hessian_size",
        "arnoldi_iter",
        "arnoldi_rank",
        "simplex_steps",
    ]


@pytest.mark.parametrize("experiment", sorted(SCHEMAS))
@pytest.mark.parametrize("profile", ["paper", "quick", "smoke"])
def test_both_experiments_compose_the_block_as_their_own_flat_settings(experiment, profile):
    """The same ``-P`` keys and MLflow params as before the block existed."""
    schema = SCHEMAS[experiment]
    assert issubclass(schema, ExampleExplainerSettings)
    values = load_profile("mnist", experiment, profile)
    config = build_config(schema, values, {"recursion_depth": "7"})
    flat = to_flat_dict(config)
    assert config.recursion_depth == 7 and flat["recursion_depth"] == "7"
    assert set(BLOCK) - {"hessian_size"} <= set(flat)  # None settings are not logged
    assert flat.get("hessian_size") == (None if values["hessian_size"] is None else "1000")


@pytest.mark.parametrize("profile", ["paper", "quick", "smoke"])
def test_mnist_yaml_gives_both_experiments_the_same_explainer_settings(profile) -> None:
    examples = load_profile("mnist", "consistency_examples", profile)
    pretext = load_profile("mnist", "pretext", profile)
    assert {k: examples[k] for k in BLOCK} == {k: pretext[k] for k in BLOCK}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"influence_method": "newton"}, r"unknown influence_method entry 'newton'"),
        ({"recursion_depth": 0}, r"^recursion_depth must be positive, got 0$"),
        ({"hessian_size": -1}, r"^hessian_size must be positive, got -1$"),
        ({"simplex_steps": 0}, r"^simplex_steps must be positive, got 0$"),
        ({"hvp_batch_size": 0}, r"^hvp_batch_size must be positive, got 0$"),
        ({"arnoldi_iter": -2}, r"^arnoldi_iter must be positive, got -2$"),
    ],
)
def test_the_block_validates_itself(changes, message) -> None:
    _settings().validate()
    with pytest.raises(ConfigError, match=message):
        _settings(**changes).validate()


@pytest.mark.parametrize("experiment", sorted(SCHEMAS))
def test_each_experiment_runs_the_blocks_checks(experiment) -> None:
    values = load_profile("mnist", experiment, "smoke")
    with pytest.raises(ConfigError, match=r"^arnoldi_rank must be positive, got 0$"):
        build_config(SCHEMAS[experiment], values, {"arnoldi_rank": "0"})


def test_options_name_only_registered_methods() -> None:
    assert set(OPTIONS) <= set(EXAMPLE_METHODS)


def test_build_explainer_hands_each_method_its_own_options() -> None:
    train = Split(torch.rand(30, 3), torch.zeros(30, dtype=torch.long))
    settings = _settings()
    influence = build_explainer("InfluenceFunctions", _AE(), settings, train, seed=5)
    assert isinstance(influence, InfluenceFunctions)
    assert influence.estimator.name == "arnoldi"
    options = influence.estimator.options
    assert (options.recursion_depth, options.hvp_batch_size, options.damping) == (3, 4, 0.2)
    assert (options.scale, options.hessian_size, options.seed) == (7.0, 9, 5)
    assert (options.arnoldi_iter, options.arnoldi_rank) == (5, 2)
    simplex = build_explainer("SimplEx", _AE(), settings, train, seed=5)
    assert isinstance(simplex, SimplEx) and simplex.simplex_steps == 11
    for method in ("TracIn", "DKNN"):
        assert type(build_explainer(method, _AE(), settings, train, 5)) is EXAMPLE_METHODS[method]


def test_influence_loader_draws_depth_batches_with_replacement_from_the_seed() -> None:
    train = Split(torch.arange(30.0)[:, None], torch.arange(30))
    settings = _settings(recursion_depth=3, hvp_batch_size=4)
    batches = list(influence_loader(train, settings, seed=2))
    assert [len(x) for x, _ in batches] == [4, 4, 4]
    again = list(influence_loader(train, settings, seed=2))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again, strict=True))
    assert all(torch.equal(x[:, 0].long(), y) for x, y in batches)  # examples keep their labels
    # with replacement: more draws than examples (3 x 4 = 12 of 5) are possible
    few = Split(torch.arange(5.0)[:, None], torch.arange(5))
    loader = influence_loader(few, settings, seed=2)
    drawn = torch.cat([y for _, y in loader])
    assert len(drawn) == 12 and set(drawn.tolist()) <= set(range(5))
    assert loader.sampler.replacement


def test_influence_functions_get_the_seeded_loader_of_the_training_split() -> None:
    train = Split(torch.arange(30.0)[:, None].repeat(1, 3), torch.arange(30))
    settings = _settings(recursion_depth=2, hvp_batch_size=4)
    options = OPTIONS["InfluenceFunctions"](settings, train, 7)
    batches = [y for _, y in options["train_loader_replacement"]]
    expected = [y for _, y in influence_loader(train, settings, seed=7)]
    assert len(batches) == 2 and all(
        torch.equal(a, b) for a, b in zip(batches, expected, strict=True)
    )
