"""The registry of experiments: ``name -> Experiment``, each written once for every data set.

Experiment modules register themselves with :func:`register`; ``lfxai.experiments`` imports
each of them once. Which experiments a data set has is declared by its plugin
(``lfxai.plugins``), so adding a data set touches no experiment module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lfxai.config import BaseConfig, ConfigError
from lfxai.plugins import DATASETS, DatasetPlugin, get_dataset
from lfxai.tracking import Tracker

ExperimentFn = Callable[[DatasetPlugin, BaseConfig, Tracker], dict[str, float]]


@dataclass(frozen=True)
class Experiment:
    """One experiment: its settings schema and its function ``(dataset, config, tracker)``.

    ``resumable``: the function continues a reopened run where it stopped without logging,
    training or registering anything twice (``-P resume_run_id`` is refused otherwise).
    """

    name: str
    schema: type[BaseConfig]
    run: ExperimentFn
    resumable: bool = False


EXPERIMENTS: dict[str, Experiment] = {}


def register(
    name: str, schema: type[BaseConfig], resumable: bool = False
) -> Callable[[ExperimentFn], ExperimentFn]:
    """Decorator adding an experiment function to :data:`EXPERIMENTS` (duplicates raise)."""

    def decorator(fn: ExperimentFn) -> ExperimentFn:
        if name in EXPERIMENTS:
            raise KeyError(f"experiment {name} is registered twice")
        EXPERIMENTS[name] = Experiment(name, schema, fn, resumable)
        return fn

    return decorator


def datasets() -> list[str]:
    """The registered data sets, sorted."""
    return sorted(DATASETS)


def names(dataset: str) -> list[str]:
    """The experiments declared for ``dataset`` (its entry point's valid ``name`` values)."""
    return sorted(get_dataset(dataset).experiments)


def entries() -> list[tuple[str, str]]:
    """Every ``(dataset, experiment)`` pair a user can run."""
    return [(d, n) for d in datasets() for n in names(d)]


def get_experiment(dataset: str, name: str) -> Experiment:
    """The experiment ``name`` of ``dataset``, or a :class:`ConfigError` listing the choices."""
    plugin = get_dataset(dataset)
    if name not in plugin.experiments:
        raise ConfigError(
            f"unknown experiment {name!r} for dataset {dataset!r}; valid choices: {names(dataset)}"
        )
    if name not in EXPERIMENTS:  # a plugin declared an experiment nobody wrote
        raise ConfigError(f"experiment {name!r} of dataset {dataset!r} is not implemented")
    return EXPERIMENTS[name]
