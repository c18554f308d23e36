"""Experiments of the paper, one module per experiment, all in one registry.

Importing this package imports every experiment module, which registers itself.
"""

from lfxai.experiments import (
    consistency_examples,  # noqa: F401  (registers itself)
    consistency_features,  # noqa: F401
    disvae,  # noqa: F401
    roar_test,  # noqa: F401
)
from lfxai.experiments.registry import EXPERIMENTS, Experiment, get_experiment, register

__all__ = ["EXPERIMENTS", "Experiment", "get_experiment", "register"]
