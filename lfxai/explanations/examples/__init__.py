"""Label-free example importance: which training examples explain a test example's code.

``EXAMPLE_METHODS`` maps each method's display name (also ``str(explainer)``) to its class.
"""

from __future__ import annotations

from lfxai.explanations.examples.base import ExampleBasedExplainer, register
from lfxai.explanations.examples.dknn import DKNN
from lfxai.explanations.examples.influence_functions import InfluenceFunctions
from lfxai.explanations.examples.simplex import SimplEx
from lfxai.explanations.examples.tracin import TracIn

EXAMPLE_METHODS: dict[str, type[ExampleBasedExplainer]] = {}
for _cls in (InfluenceFunctions, TracIn, SimplEx, DKNN):
    register(EXAMPLE_METHODS, _cls.name, _cls)

# The original library's name of DKNN, which its users import: the same class.
NearestNeighbours = DKNN

__all__ = [
    "EXAMPLE_METHODS",
    "ExampleBasedExplainer",
    "InfluenceFunctions",
    "DKNN",
    "NearestNeighbours",
    "SimplEx",
    "TracIn",
    "register",
]
