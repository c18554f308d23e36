"""The claims report: verdicts from result tables, metrics, Markdown; one entry per experiment."""

from __future__ import annotations

import math

import pandas as pd

import lfxai.experiments  # noqa: F401  (fills the registry)
from lfxai.experiments.registry import EXPERIMENTS
from lfxai.metrics.claims import (
    CLAIMS,
    claim_metrics,
    claims_markdown,
    example_consistency_claims,
    feature_consistency_claims,
    roar_claims,
)


def _features(values: dict[str, list[float]], pcts=(10, 50, 100)) -> pd.DataFrame:
    rows = [
        {"method": m, "pct_perturbed": p, "representation_shift": v}
        for m, curve in values.items()
        for p, v in zip(pcts, curve, strict=True)
    ]
    return pd.DataFrame(rows)


def test_every_experiment_has_claims():
    assert set(CLAIMS) == set(EXPERIMENTS)


def test_a_method_above_random_below_100_holds_and_one_below_fails():
    table = _features(
        {"Saliency": [0.3, 0.5, 1.0], "GradientShap": [0.3, 0.1, 1.0], "Random": [0.1, 0.2, 1.0]}
    )
    claims = {c.key: c for c in feature_consistency_claims(table)}
    assert set(claims) == {"shift_above_random/Saliency", "shift_above_random/GradientShap"}
    saliency = claims["shift_above_random/Saliency"]
    shap = claims["shift_above_random/GradientShap"]
    assert saliency.verdict == "holds" and shap.verdict == "fails"
    assert [f["k"] for f in saliency.figures] == [10, 50]  # k = 100 is the same for all
    assert math.isclose(saliency.figures[0]["margin"], 0.2)
    assert shap.reason == "not above at k = 50"
    metrics = claim_metrics(list(claims.values()))
    assert metrics == {
        "claims/holds/shift_above_random/Saliency": 1.0,
        "claims/holds/shift_above_random/GradientShap": 0.0,
        "claims/all_hold": 0.0,
    }


def test_a_tie_or_nan_is_not_a_confirmation():
    table = _features({"Saliency": [0.1, float("nan"), 1.0], "Random": [0.1, 0.2, 1.0]})
    (claim,) = feature_consistency_claims(table)
    assert claim.verdict == "fails" and claim.reason == "not above at k = 10, 50"


def test_without_random_or_below_100_the_claim_is_untested():
    (no_random,) = feature_consistency_claims(_features({"Saliency": [0.3, 0.5, 1.0]}))
    assert no_random.holds is None and "Random" in no_random.reason
    only_100 = _features({"Saliency": [1.0], "Random": [1.0]}, pcts=(100,))
    (claim,) = feature_consistency_claims(only_100)
    assert claim.verdict == "untested"
    assert claim_metrics([no_random, claim]) == {}  # nothing tested: no metric at all
    assert "untested" in claims_markdown([no_random, claim], "demo")


def test_roar_ignores_the_base_point_and_examples_compare_top_with_bottom():
    roar = pd.DataFrame(
        {
            "method": ["IG"] * 3 + ["Random"] * 3,
            "pct_removed": [0, 50, 100] * 2,
            "test_loss": [0.1, 0.4, 0.9, 0.1, 0.3, 0.9],
        }
    )
    (claim,) = roar_claims(roar)
    assert claim.key == "loss_above_random/IG" and claim.holds is True
    assert [f["k"] for f in claim.figures] == [50]
    examples = pd.DataFrame(
        {
            "method": ["DKNN"] * 4,
            "type": ["top", "top", "bottom", "bottom"],
            "pct_examples": [10, 100, 10, 100],
            "similarity_rate": [0.9, 0.5, 0.2, 0.5],
        }
    )
    (claim,) = example_consistency_claims(examples)
    assert claim.key == "top_above_bottom/DKNN" and claim.holds is True
    markdown = claims_markdown([claim], "MNIST")
    assert "**holds**" in markdown and "0.7 at k = 10%" in markdown
