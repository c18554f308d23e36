"""The registry of experiments: ``(dataset, name) -> Experiment``.

Experiment modules register themselves with :func:`register`; ``lfxai.experiments``
imports each of them once, so the registry is complete after ``import lfxai.experiments``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lfxai.config import BaseConfig, ConfigError
from lfxai.tracking import Tracker

ExperimentFn = Callable[[BaseConfig, Tracker], dict[str, float]]


@dataclass(frozen=True)
class Experiment:
    """One experiment of one dataset: its settings schema and its function."""

    dataset: str
    name: str
    schema: type[BaseConfig]
    run: ExperimentFn


EXPERIMENTS: dict[tuple[str, str], Experiment] = {}


def register(
    dataset: str, name: str, schema: type[BaseConfig]
) -> Callable[[ExperimentFn], ExperimentFn]:
    """Decorator adding an experiment function to :data:`EXPERIMENTS` (duplicates raise)."""

    def decorator(fn: ExperimentFn) -> ExperimentFn:
        key = (dataset, name)
        if key in EXPERIMENTS:
            raise KeyError(f"experiment {dataset}/{name} is registered twice")
        EXPERIMENTS[key] = Experiment(dataset, name, schema, fn)
        return fn

    return decorator


def datasets() -> list[str]:
    return sorted({dataset for dataset, _ in EXPERIMENTS})


def names(dataset: str) -> list[str]:
    return sorted(name for ds, name in EXPERIMENTS if ds == dataset)


def get_experiment(dataset: str, name: str) -> Experiment:
    """The registered experiment, or a :class:`ConfigError` listing the valid choices."""
    if dataset not in datasets():
        raise ConfigError(f"unknown dataset {dataset!r}; valid choices: {datasets()}")
    if (dataset, name) not in EXPERIMENTS:
        raise ConfigError(
            f"unknown experiment {name!r} for dataset {dataset!r}; valid choices: {names(dataset)}"
        )
    return EXPERIMENTS[(dataset, name)]
