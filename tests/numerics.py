"""Tolerances derived from the float format and the operation, never guessed.

A float computation rounds each intermediate result with a relative error of at most the unit
roundoff ``u`` (half the machine epsilon). A result reached through ``n`` roundings, whose
exact value is a sum of products, differs from that exact value by at most
``gamma(n) * magnitude`` where ``gamma(n) = n u / (1 - n u)`` and ``magnitude`` is the same
sum computed with the absolute value of every operand (e.g. ``|W| @ |x|`` for ``W @ x``):
Higham, *Accuracy and Stability of Numerical Algorithms* (2nd ed., 2002), Lemma 3.1 and
Section 3.1. The bound holds for any summation order, hence on any BLAS path and with any
number of threads; ``n`` counts the roundings along the longest chain (a dot product of
length ``k`` contributes ``k``).
"""

from __future__ import annotations

import torch

U32 = 2.0**-24  # unit roundoff of float32
U64 = 2.0**-53  # unit roundoff of float64


def gamma(n: int, unit: float = U32) -> float:
    """``n u / (1 - n u)``: the relative error bound of ``n`` chained roundings."""
    if n * unit >= 1:
        raise ValueError(f"{n} roundings of {unit} bound nothing")
    return n * unit / (1 - n * unit)


def assert_within_rounding(
    actual: torch.Tensor, exact: torch.Tensor, magnitude: torch.Tensor, n: int, unit: float = U32
) -> None:
    """``|actual - exact| <= gamma(n) * magnitude`` elementwise (``exact`` in float64).

    A bound of zero (all operands zero) demands an exact zero.
    """
    actual, exact, magnitude = (t.detach().double() for t in (actual, exact, magnitude))
    assert actual.shape == exact.shape, (actual.shape, exact.shape)
    error = (actual - exact).abs()
    bound = gamma(n, unit) * magnitude
    worst = int(torch.argmax(error - bound))
    assert bool((error <= bound).all()), (
        f"error {error.flatten()[worst].item():.3g} > bound {bound.flatten()[worst].item():.3g} "
        f"(n={n}) at flat index {worst}"
    )
