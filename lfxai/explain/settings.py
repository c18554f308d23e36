"""Settings of the ``explain`` entry point, versioned in ``configs/explain.yaml``.

The file has a ``defaults`` section and one per data set (its split, batch size, sizes);
profiles compose as the experiments' do: ``defaults.paper`` < ``<dataset>.paper`` <
``defaults.<profile>`` < ``<dataset>.<profile>``. ``--dataset`` and ``--model_uri`` are given
on the command line, every other setting with ``-P key=value``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lfxai.config import (
    KEEP,
    PROFILES,
    ConfigError,
    build_config,
    check_choices,
    check_device,
    check_percentages,
    check_positive,
    load_profile,
)
from lfxai.explanations.examples import EXAMPLE_METHODS
from lfxai.explanations.examples.random import RandomExamples
from lfxai.explanations.features import FEATURE_METHODS
from lfxai.plugins import DATASETS, DatasetPlugin, get_dataset

EXPLAIN = "explain"  # the entry point, configs/explain.yaml, the runs' lfxai.experiment tag
RANDOM = "Random"  # the baseline of both families, always explained
LOSS_METHODS = ("InfluenceFunctions", "TracIn")  # differentiate the model's training loss
EXAMPLE_CHOICES = (*EXAMPLE_METHODS, RandomExamples.name)


@dataclass(frozen=True)
class ExplainConfig:
    """Settings of one ``explain`` run.

    Attributes:
        model_uri: the encoder (see :class:`lfxai.tracking.ExplainedModel`).
        dataset: the data set plugin whose examples are explained.
        split: one of the plugin's splits; ``n_train`` / ``n_test`` keep prefixes of its
            training and explained splits (None: all).
        batch_size: examples per attribution batch (and per loader batch of the example
            methods, which re-batch internally).
        feature_methods: label-free feature importance methods (Random is always added).
        perturbation_percentages: k of the representation-shift sanity check.
        example_methods: example importance methods (Random is always added).
        n_train_explained: class-balanced training examples scored by the example methods.
        n_test_explained: random explained examples whose training examples are scored.
        similarity_percentages: k of the similarity rates.
        simplex_steps: Adam steps of SimplEx.
    """

    model_uri: str
    dataset: str
    seed: int
    device: str
    data_dir: str
    split: str
    n_train: int | None
    n_test: int | None
    batch_size: int
    feature_methods: tuple[str, ...]
    perturbation_percentages: tuple[float, ...]
    example_methods: tuple[str, ...]
    n_train_explained: int
    n_test_explained: int
    similarity_percentages: tuple[float, ...]
    simplex_steps: int

    def validate(self) -> None:
        """Raises :class:`ConfigError` naming the bad value and the valid choices."""
        if not self.model_uri.strip():
            raise ConfigError("model_uri is empty; e.g. models:/<name>@<alias>")
        check_device(self.device)
        check_choices("feature_methods", self.feature_methods, FEATURE_METHODS)
        check_choices("example_methods", self.example_methods, EXAMPLE_CHOICES)
        check_percentages("perturbation_percentages", self.perturbation_percentages)
        check_percentages("similarity_percentages", self.similarity_percentages)
        check_positive(
            self,
            "n_train",
            "n_test",
            "batch_size",
            "n_train_explained",
            "n_test_explained",
            "simplex_steps",
        )


def with_random(methods: tuple[str, ...]) -> tuple[str, ...]:
    """``methods`` with the Random baseline last (added when missing)."""
    return methods if RANDOM in methods else (*methods, RANDOM)


def resolve(
    dataset: str, model_uri: str, profile: str, overrides: dict[str, str]
) -> tuple[ExplainConfig, ExplainConfig, DatasetPlugin]:
    """The validated settings of a run, the profile's own, and the data set (no side effect).

    Raises:
        ConfigError: an unknown data set, profile, setting or method, a bad value, or sizes
            beyond the data set's (each named, with the valid choices or limit).
    """
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; valid choices: {sorted(DATASETS)}")
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid choices: {list(PROFILES)}")
    for key in ("dataset", "model_uri"):
        if key in overrides:
            raise ConfigError(f"{key} is given with --{key}, not as a setting override")
    values = {**load_profile(EXPLAIN, dataset, profile), "dataset": dataset}
    values["model_uri"] = model_uri
    given = {k: v for k, v in overrides.items() if v != KEEP}
    configs = [build_config(ExplainConfig, values, o) for o in (given, {})]  # type: ignore[arg-type]
    config, default = (
        dataclasses.replace(
            c,
            feature_methods=with_random(c.feature_methods),
            example_methods=with_random(c.example_methods),
        )
        for c in configs
    )
    plugin = get_dataset(dataset)
    plugin.check_split(config.split)
    plugin.check_sizes(config)
    return config, default, plugin
