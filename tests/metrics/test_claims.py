"""The claims report: verdicts from result tables, metrics, Markdown; one entry per experiment."""

from __future__ import annotations

import math

import pandas as pd

import lfxai.experiments  # noqa: F401  (fills the registry)
from lfxai.experiments.registry import EXPERIMENTS
from lfxai.metrics.claims import (
    CLAIMS,
    Claim,
    claim_metrics,
    claims_markdown,
    disvae_claims,
    example_consistency_claims,
    feature_consistency_claims,
    pretext_claims,
    roar_claims,
)

SECTION_4_1 = "Crabbé & van der Schaar, ICML 2022, Section 4.1"


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


def _feature_statement(method: str) -> str:
    """The feature consistency claim as the paper states it, for one method."""
    return (
        f"Perturbing the features that label-free {method} ranks most important shifts the "
        "representation more than perturbing random features, at every 0 < k < 100%."
    )


def test_claim_to_dict_carries_every_field_under_its_name():
    claim = Claim("a/b", "A claim.", "Paper", [{"k": 10.0, "margin": -0.5}], False, "why")
    assert claim.to_dict() == {
        "key": "a/b",
        "statement": "A claim.",
        "reference": "Paper",
        "verdict": "fails",
        "holds": False,
        "reason": "why",
        "figures": [{"k": 10.0, "margin": -0.5}],
    }


def test_feature_claims_follow_the_table_order_and_compare_only_shared_percentages():
    # Random in the middle: the methods after it still get their claim. k = 1 is a
    # percentage like any other above 0; k = 30 is measured for Saliency only: not compared.
    table = pd.DataFrame(
        {
            "method": ["Saliency"] * 4 + ["Random"] * 3 + ["GradientShap"] * 3,
            "pct_perturbed": [1, 30, 50, 100, 1, 50, 100, 1, 50, 100],
            "representation_shift": [0.5, 0.75, 1.0, 2, 0.25, 0.5, 2, 0.5, 0.25, 2],
        }
    )
    saliency, shap = feature_consistency_claims(table)  # table order, not alphabetical
    assert saliency.to_dict() == {
        "key": "shift_above_random/Saliency",
        "statement": _feature_statement("Saliency"),
        "reference": f"{SECTION_4_1} (feature importance consistency)",
        "verdict": "holds",
        "holds": True,
        "reason": "",
        "figures": [  # dyadic values: the margins are exact
            {"k": 1.0, "Saliency": 0.5, "Random": 0.25, "margin": 0.25},
            {"k": 50.0, "Saliency": 1.0, "Random": 0.5, "margin": 0.5},
        ],
    }
    assert shap.key == "shift_above_random/GradientShap"
    assert shap.statement == _feature_statement("GradientShap")
    assert shap.holds is False and shap.reason == "not above at k = 50"


def test_without_random_every_method_is_untested_with_the_reason():
    table = _features({"Saliency": [0.3, 0.5, 1.0], "GradientShap": [0.3, 0.5, 1.0]})
    claims = [c.to_dict() for c in feature_consistency_claims(table)]
    assert claims == [
        {
            "key": f"shift_above_random/{method}",
            "statement": _feature_statement(method),
            "reference": f"{SECTION_4_1} (feature importance consistency)",
            "verdict": "untested",
            "holds": None,
            "reason": "Random is not among the methods of this run",
            "figures": [],
        }
        for method in ("Saliency", "GradientShap")
    ]


def test_roar_without_a_percentage_below_100_is_untested_with_the_reason():
    roar = pd.DataFrame(
        {"method": ["IG", "IG", "Random", "Random"], "pct_removed": [0, 100, 0, 100]}
    ).assign(test_loss=[0.1, 0.9, 0.1, 0.9])
    (claim,) = roar_claims(roar)
    assert claim.to_dict() == {
        "key": "loss_above_random/IG",
        "statement": (
            "Retraining without the training features that label-free IG ranks most important "
            "raises the test loss more than retraining without random features, at every "
            "0 < k < 100%."
        ),
        "reference": "ROAR (Hooker et al., NeurIPS 2019) with label-free importance",
        "verdict": "untested",
        "holds": None,
        "reason": "no percentage below 100 to compare",
        "figures": [],
    }


def test_example_claims_per_method_in_table_order_and_untested_without_both_curves():
    examples = pd.DataFrame(
        {
            "method": ["TracIn", "TracIn", "DKNN", "DKNN", "SimplEx"],
            "type": ["top", "bottom", "top", "top", "bottom"],  # DKNN: no bottom, SimplEx: no top
            "pct_examples": [10, 10, 10, 50, 10],
            "similarity_rate": [0.75, 0.5, 0.75, 0.5, 0.5],
        }
    )
    tracin, dknn, simplex = example_consistency_claims(examples)
    assert tracin.to_dict() == {
        "key": "top_above_bottom/TracIn",
        "statement": (
            "The training examples that label-free TracIn ranks most important share the test "
            "example's label more often than the least important ones, at every 0 < k < 100%."
        ),
        "reference": f"{SECTION_4_1} (example importance consistency)",
        "verdict": "holds",
        "holds": True,
        "reason": "",
        "figures": [{"k": 10.0, "top": 0.75, "bottom": 0.5, "margin": 0.25}],
    }
    for claim, method in ((dknn, "DKNN"), (simplex, "SimplEx")):
        assert claim.key == f"top_above_bottom/{method}"
        assert claim.holds is None and claim.reason == "no percentage below 100 to compare"


def test_all_hold_is_one_when_every_tested_claim_holds():
    holding = [Claim("a", "A", "r", holds=True), Claim("b", "B", "r", holds=True)]
    untested = Claim("c", "C", "r")
    assert claim_metrics([*holding, untested]) == {
        "claims/holds/a": 1.0,
        "claims/holds/b": 1.0,
        "claims/all_hold": 1.0,
    }


# The Markdown report: a "### Claims: <title>" heading, a blank line, a three-column table
# (verdict in bold, the statement, the weakest margin "<margin, 4 significant digits> at
# <where>" or, without figures, the reason), one row per claim; the text ends with a newline.
HEADER = "### Claims: demo\n\n| verdict | claim | weakest margin |\n|---|---|---|\n"


def test_markdown_reports_the_weakest_margin_and_where_it_was_measured():
    nan = float("nan")
    claims = [
        Claim("a", "A", "r", [{"k": 10.0, "margin": 0.3}, {"k": 50.0, "margin": 0.1}], True),
        Claim("b", "B", "r", [{"k": 10.0, "margin": -0.2}, {"k": 50.0, "margin": nan}], False),
        Claim(
            "c", "C", "r", [{"beta": 1.0, "margin": 0.02}, {"beta": 4.0, "margin": -0.05}], False
        ),
        Claim("d", "D", "r", [{"at": "denoising vs reconstruction", "margin": 0.25}], True),
        Claim("e", "E", "r", [{"margin": 0.5}], True),  # a figure that names no place
        Claim("f", "F", "r", reason="Random is not among the methods of this run"),
    ]
    assert claims_markdown(claims, "demo") == HEADER + (
        "| **holds** | A | 0.1 at k = 50% |\n"
        "| **fails** | B | nan at k = 50% |\n"  # NaN is weaker than any number
        "| **fails** | C | -0.05 at beta = 4 |\n"
        "| **holds** | D | 0.25 at denoising vs reconstruction |\n"
        "| **holds** | E | 0.5 at  |\n"
        "| **untested** | F | Random is not among the methods of this run |\n"
    )


def test_markdown_without_claims_says_none_applies():
    assert claims_markdown([], "demo") == HEADER + (
        "| untested | (no claim applies to this run's methods) | |\n"
    )


def _disvae(rows: list[tuple[str, float, float, float]]) -> pd.DataFrame:
    """The disvae table, one row per model: (loss, beta, pearson, spearman)."""
    return pd.DataFrame(rows, columns=["loss", "beta", "pearson", "spearman"]).assign(run=0)


def test_disvae_compares_the_mean_over_runs_at_each_beta_with_the_smallest_beta():
    # beta_vae before beta_tc_vae: claims in table order. With beta_vae, Pearson rises (means
    # 0.5, 0.625, 0.75 over two runs each) and Spearman falls at beta 4 and 10; with
    # beta_tc_vae both stay equal (not a fall).
    table = _disvae(
        [
            ("beta_vae", 10, 0.625, 0.25),
            ("beta_vae", 10, 0.875, 0.25),
            ("beta_vae", 1, 0.25, 0.5),
            ("beta_vae", 1, 0.75, 0.5),
            ("beta_vae", 4, 0.625, 0.25),
            ("beta_vae", 4, 0.625, 0.25),
            ("beta_tc_vae", 1, 0.5, 0.5),
            ("beta_tc_vae", 2, 0.5, 0.5),
        ]
    )
    claims = disvae_claims(table)
    assert [c.key for c in claims] == [
        "correlation_not_falling/beta_vae/pearson",
        "correlation_not_falling/beta_vae/spearman",
        "correlation_not_falling/beta_tc_vae/pearson",
        "correlation_not_falling/beta_tc_vae/spearman",
    ]
    assert [c.holds for c in claims] == [True, False, True, True]  # two betas are enough
    assert [c.reason for c in claims] == ["", "lower at beta = 4, 10", "", ""]
    pearson = claims[0]
    assert pearson.statement == (
        "With beta_vae, the Pearson correlation between the saliency maps of different latent "
        "units does not fall as beta grows: disentangling the latent units does not make them "
        "explain different features."
    )
    assert (
        pearson.reference == "Crabbé & van der Schaar, ICML 2022, Section 4.3 (disentangled VAEs)"
    )
    assert pearson.figures == [
        {"beta": 4.0, "pearson_at_beta": 0.625, "pearson_at_smallest_beta": 0.5, "margin": 0.125},
        {"beta": 10.0, "pearson_at_beta": 0.75, "pearson_at_smallest_beta": 0.5, "margin": 0.25},
    ]


def test_disvae_with_a_single_beta_leaves_both_correlations_untested():
    claims = disvae_claims(_disvae([("beta_vae", 4, 0.5, 0.5)]))
    assert [(c.key, c.holds, c.reason) for c in claims] == [
        ("correlation_not_falling/beta_vae/pearson", None, "only one beta"),
        ("correlation_not_falling/beta_vae/spearman", None, "only one beta"),
    ]
    assert all(c.statement.startswith("With beta_vae, the ") for c in claims)
    assert all(c.reference.endswith("Section 4.3 (disentangled VAEs)") for c in claims)


def _pretext(
    explanation: str, correlation: str, means: dict[tuple[str, str], float]
) -> list[dict[str, object]]:
    """Rows of the pretext table for one (explanation, correlation): every ordered pair of
    tasks, as ``correlation_table`` writes it: symmetric, a task with itself correlates 1."""
    tasks = list(dict.fromkeys(t for pair in means for t in pair))
    rows = []
    for a in tasks:
        for b in tasks:
            mean = 1.0 if a == b else means.get((a, b), means.get((b, a)))
            rows.append(
                {
                    "explanation": explanation,
                    "correlation": correlation,
                    "task_a": a,
                    "task_b": b,
                    "mean": mean,
                    "std": 0.125,
                    "n_runs": 2,
                }
            )
    return rows


def test_pretext_claims_one_per_explanation_and_correlation_below_strong():
    table = pd.DataFrame(
        _pretext(
            "features",
            "pearson",
            {
                ("reconstruction", "denoising"): 0.7,  # exactly 0.7 is strong: fails
                ("reconstruction", "inpainting"): 0.5,
                ("denoising", "inpainting"): 0.75,
            },
        )
        + _pretext("examples", "spearman", {("reconstruction", "denoising"): -0.5})
    )
    examples, features = pretext_claims(table)  # sorted by (explanation, correlation)
    assert examples.to_dict() == {
        "key": "not_strongly_correlated/examples/spearman",
        "statement": (
            "Label-free example importance of encoders trained on different pretext tasks is "
            "not strongly correlated: every Spearman correlation between two tasks (mean over "
            "runs) is below 0.7."
        ),
        "reference": "Crabbé & van der Schaar, ICML 2022, Section 4.2 (pretext task sensitivity)",
        "verdict": "holds",
        "holds": True,
        "reason": "",
        # each pair once, the task names in alphabetical order; the margin is 0.7 - mean
        "figures": [
            {"at": "denoising vs reconstruction", "correlation": -0.5, "std": 0.125}
            | {"margin": 0.7 - -0.5}
        ],
    }
    assert features.key == "not_strongly_correlated/features/pearson"
    assert features.statement.startswith("Label-free feature importance ")
    assert "every Pearson correlation" in features.statement
    assert [f["at"] for f in features.figures] == [
        "denoising vs reconstruction",
        "denoising vs inpainting",
        "inpainting vs reconstruction",
    ]
    assert [f["margin"] for f in features.figures] == [0.7 - 0.7, 0.7 - 0.75, 0.7 - 0.5]
    assert features.holds is False and features.reason == (
        "strong for denoising vs reconstruction, denoising vs inpainting"
    )


def test_pretext_with_a_single_task_is_untested_and_an_unknown_kind_is_named_as_is():
    table = pd.DataFrame(
        [
            {"explanation": e, "correlation": "pearson", "task_a": "reconstruction"}
            | {"task_b": "reconstruction", "mean": 1.0, "std": 0.0}
            for e in ("examples", "latents")
        ]
    )
    claims = pretext_claims(table)
    assert [(c.key, c.holds, c.reason) for c in claims] == [
        ("not_strongly_correlated/examples/pearson", None, "fewer than two tasks"),
        ("not_strongly_correlated/latents/pearson", None, "fewer than two tasks"),
    ]
    assert claims[0].statement.startswith("Label-free example importance of encoders ")
    assert claims[1].statement.startswith("Label-free latents importance of encoders ")
    assert all(c.reference.endswith("Section 4.2 (pretext task sensitivity)") for c in claims)
