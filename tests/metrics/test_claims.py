"""The claims report: verdicts from result tables and evidence, metrics, Markdown."""

from __future__ import annotations

import numpy as np
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
from lfxai.metrics.verdicts import aggregate, claims_title, epochs_label

SECTION_4_1 = "Section 4.1 (feature importance consistency)"
FLIPS = "one-sided sign-flip permutation test (all 2^n flips, or 9999 random ones)"
FEATURE_RULE = (
    "tolerance: 5% of Random's value at each k; sample: the explained examples, paired "
    f"(shift minus Random's shift); {FLIPS}"
)
NO_SAMPLE = "n = 1 (one mean: per-example values not logged); the test needs at least 5"


def _features(values: dict[str, list[float]], pcts=(10, 50, 100)) -> pd.DataFrame:
    rows = [
        {"method": m, "pct_perturbed": p, "representation_shift": v}
        for m, curve in values.items()
        for p, v in zip(pcts, curve, strict=True)
    ]
    return pd.DataFrame(rows)


def _feature_statement(method: str) -> str:
    return (
        f"Perturbing the features that label-free {method} ranks most important shifts the "
        "representation more than perturbing random features, at every 0 < k < 100%."
    )


def test_every_experiment_has_claims():
    assert set(CLAIMS) == set(EXPERIMENTS)


def test_per_example_shifts_above_random_beyond_the_tolerance_hold_exactly():
    # 6 examples: Saliency's shift exceeds Random's on each by 0.25 or 0.5 (dyadic: exact)
    table = _features({"Saliency": [1.0, 1.5, 2.0], "Random": [0.5, 1.0, 2.0]})
    evidence = {
        "Saliency@10": np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
        "Random@10": np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5]),
        "Saliency@50": np.array([1.5, 1.5, 1.5, 1.5, 1.5, 1.5]),
        "Random@50": np.array([1.25, 1.0, 1.0, 1.0, 1.0, 0.75]),
    }
    (claim,) = feature_consistency_claims(table, evidence)
    assert claim.to_dict() == {
        "key": "shift_above_random/Saliency",
        "statement": _feature_statement("Saliency"),
        "reference": "Crabbé & van der Schaar, ICML 2022",
        "section": SECTION_4_1,
        "verdict": "holds",
        "reason": "",
        "unit": "squared L2 distance in latent space",
        "kind": "above",
        "rule": FEATURE_RULE,
        "figures": [
            # tolerance 5% of Random's value; every difference above it: 1 of 2^6 patterns
            {"at": "k = 10%", "k": 10.0, "Saliency": 1.0, "Random": 0.5, "margin": 0.5}
            | {"tolerance": 0.025, "n": 6, "p_value": 1 / 64, "verdict": "holds"},
            {"at": "k = 50%", "k": 50.0, "Saliency": 1.5, "Random": 1.0, "margin": 0.5}
            | {"tolerance": 0.05, "n": 6, "p_value": 1 / 64, "verdict": "holds"},
        ],
    }


def test_a_significant_shortfall_fails_and_a_small_margin_is_inconclusive():
    table = _features({"GradientShap": [0.5, 1.0, 2.0], "Random": [1.0, 1.01, 2.0]})
    evidence = {
        "GradientShap@10": np.full(8, 0.5),
        "Random@10": np.full(8, 1.0),
        "GradientShap@50": np.full(8, 1.0),
        "Random@50": np.full(8, 1.01),
    }
    (claim,) = feature_consistency_claims(table, evidence)
    # k = 10: margin -0.5 below -0.05, all 8 lower: p = 1/256 < 0.05 / 2 points -> fails
    assert claim.verdict == "fails" and claim.reason == "fails at k = 10% (p = 0.00391)"
    low, small = claim.figures
    assert (low["verdict"], low["p_value"]) == ("fails", 1 / 256)
    # k = 50: margin -0.01 within the tolerance 0.0505: no test
    assert (small["verdict"], small["p_value"]) == ("inconclusive", None)
    (alone,) = feature_consistency_claims(table[table.pct_perturbed != 10], evidence)
    assert alone.verdict == "inconclusive"
    assert alone.reason == "k = 50%: margin -0.01 within the tolerance ±0.0505"


def test_without_per_example_values_a_mean_is_inconclusive_however_large():
    # a run logged before the per-example evidence existed: one mean per point
    table = _features({"Saliency": [3.0, 5.0, 9.0], "Random": [1.0, 2.0, 9.0]})
    (claim,) = feature_consistency_claims(table)
    assert claim.verdict == "inconclusive"
    assert claim.reason == f"every point: {NO_SAMPLE}"
    assert [f["margin"] for f in claim.figures] == [2.0, 3.0]
    assert claim_metrics([claim]) == {
        "claims/holds/shift_above_random/Saliency": 0.0,
        "claims/verdict/shift_above_random/Saliency": 0.0,
        "claims/margin/shift_above_random/Saliency": 2.0,  # the worst point's: a sort key
        "claims/all_hold": 0.0,
    }


def test_a_nan_margin_or_too_few_examples_is_inconclusive_with_the_reason():
    table = _features({"Saliency": [float("nan"), 2.0, 9.0], "Random": [1.0, 1.0, 9.0]})
    evidence = {f"{m}@50": np.full(4, v) for m, v in (("Saliency", 2.0), ("Random", 1.0))}
    (claim,) = feature_consistency_claims(table, evidence)
    assert claim.reason == (
        "k = 10%: the margin is not a number; "
        "k = 50%: n = 4 (the explained examples, paired (shift minus Random's shift)); the "
        "test needs at least 5"
    )


def test_the_margin_metric_is_the_worst_finite_point_and_absent_without_one():
    curves = {"Saliency": [float("nan"), 2.5, 0.5, 9.0], "Random": [1.0, 1.0, 1.0, 9.0]}
    (claim,) = feature_consistency_claims(_features(curves, pcts=(10, 20, 50, 100)))
    assert [f["margin"] for f in claim.figures][1:] == [1.5, -0.5]
    assert claim_metrics([claim])["claims/margin/shift_above_random/Saliency"] == -0.5
    nan = _features({"Saliency": [float("nan"), 9.0], "Random": [1.0, 9.0]}, pcts=(10, 100))
    (none,) = feature_consistency_claims(nan)
    assert none.verdict == "inconclusive"
    assert not any(k.startswith("claims/margin/") for k in claim_metrics([none]))


def test_without_random_or_below_100_the_claim_is_untested():
    (no_random,) = feature_consistency_claims(_features({"Saliency": [0.3, 0.5, 1.0]}))
    assert no_random.verdict == "untested" and no_random.holds is None
    assert no_random.reason == "Random is not among the methods of this run"
    only_100 = _features({"Saliency": [1.0], "Random": [1.0]}, pcts=(100,))
    (claim,) = feature_consistency_claims(only_100)
    assert (claim.verdict, claim.reason) == ("untested", "no percentage below 100 to compare")
    assert claim_metrics([no_random, claim]) == {}  # nothing tested: no metric at all


def test_feature_claims_follow_the_table_order_and_compare_only_shared_percentages():
    table = pd.DataFrame(
        {
            "method": ["Saliency"] * 4 + ["Random"] * 3 + ["GradientShap"] * 3,
            "pct_perturbed": [1, 30, 50, 100, 1, 50, 100, 1, 50, 100],
            "representation_shift": [0.5, 0.75, 1.0, 2, 0.25, 0.5, 2, 0.5, 0.25, 2],
        }
    )
    saliency, shap = feature_consistency_claims(table)  # table order, not alphabetical
    assert [f["at"] for f in saliency.figures] == ["k = 1%", "k = 50%"]  # k = 30: Saliency only
    assert shap.key == "shift_above_random/GradientShap"


def _roar(losses: dict[str, list[float]]) -> pd.DataFrame:
    rows = [
        {"method": m, "pct_removed": p, "test_loss": v}
        for m, curve in losses.items()
        for p, v in zip((0, 50, 100), curve, strict=True)
    ]
    return pd.DataFrame(rows)


def test_roar_needs_several_runs_and_over_five_runs_holds_exactly():
    run = _roar({"IG": [0.1, 0.4, 0.9], "Random": [0.1, 0.2, 0.9]})
    (claim,) = roar_claims(run)
    assert claim.section.startswith("Appendix C (ROAR")
    assert [f["at"] for f in claim.figures] == ["k = 50%"]  # k = 0 is the base model
    assert claim.verdict == "inconclusive" and claim.reason == (
        "k = 50%: n = 1 (one retraining per point: several runs test this claim); the test "
        "needs at least 5"
    )
    runs = [
        roar_claims(_roar({"IG": [0.1, 0.375 + i / 64, 0.9], "Random": [0.1, 0.25, 0.9]}))
        for i in range(5)
    ]
    (combined,) = aggregate(runs)
    (figure,) = combined.figures
    # margins 0.125 + i/64; their std (0.0247) is above the runs' tolerance 0.0125
    margins = 0.125 + np.arange(5) / 64
    assert figure["margin"] == np.mean(margins) and figure["n"] == 5
    assert figure["tolerance"] == np.std(margins, ddof=1)
    assert figure["p_value"] == 1 / 32 and combined.verdict == "holds"
    assert combined.rule.startswith("over 5 runs: sign flips of the per-run margins")


def test_example_claims_pair_each_test_example_top_against_bottom():
    examples = pd.DataFrame(
        {
            "method": ["TracIn", "TracIn", "DKNN", "DKNN", "SimplEx"],
            "type": ["top", "bottom", "top", "top", "bottom"],  # DKNN: no bottom, SimplEx: no top
            "pct_examples": [10, 10, 10, 50, 10],
            "similarity_rate": [0.75, 0.5, 0.75, 0.5, 0.5],
        }
    )
    top = np.array([1.0, 1.0, 0.5, 0.5, 1.0])  # per test example, top-10% rate ...
    bottom = np.array([0.5, 0.5, 0.5, 0.25, 0.75])  # ... and bottom-10% rate
    tracin, dknn, simplex = example_consistency_claims(
        examples, {"TracIn@10": np.stack([top, bottom])}
    )
    assert tracin.to_dict()["figures"] == [
        {"at": "k = 10%", "k": 10.0, "top": 0.75, "bottom": 0.5, "margin": 0.25}
        | {"tolerance": 0.02, "n": 5, "p_value": 2 / 32, "verdict": "inconclusive"}
    ]  # one example ties (difference 0 - 0.02 < 0): 2 of 32 patterns reach the sum
    assert tracin.reason == "k = 10%: p = 0.0625 is not below 0.05"
    assert tracin.unit == "similarity rate (fraction of examples, 0-1)"
    for claim in (dknn, simplex):
        assert (claim.verdict, claim.reason) == ("untested", "no percentage below 100 to compare")


def _disvae(rows: list[tuple[str, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["loss", "beta", "pearson", "spearman"])


def test_disvae_compares_the_models_of_each_beta_with_the_smallest_beta():
    rows = [("beta_vae", 1.0, 0.5 + i / 32, 0.5) for i in range(4)]
    rows += [("beta_vae", 4.0, 0.5 + i / 32, 0.25) for i in range(4)]
    rows += [("beta_tc_vae", 1.0, 0.5, 0.5), ("beta_tc_vae", 2.0, 0.5, 0.5)]
    claims = disvae_claims(_disvae(rows))
    assert [c.key for c in claims] == [
        "correlation_not_falling/beta_vae/pearson",
        "correlation_not_falling/beta_vae/spearman",
        "correlation_not_falling/beta_tc_vae/pearson",
        "correlation_not_falling/beta_tc_vae/spearman",
    ]
    pearson, spearman, tc, _ = claims
    assert pearson.statement == (
        "With beta_vae, the Pearson correlation between the saliency maps of different latent "
        "units is as high at every larger beta as at the smallest beta: more disentangled "
        "units still explain the same features."
    )
    assert pearson.kind == "at_least" and pearson.unit == "Pearson r"
    # equal means: margin 0 above -0.05; the 4 vs 4 split with the higher values shifted by
    # +0.05 on the beta-4 side: the observed split is the most extreme but for ties
    (figure,) = pearson.figures
    assert figure["margin"] == 0.0 and figure["n"] == 4
    assert pearson.verdict == "inconclusive"  # 4 models per beta with this overlap: p > 0.05
    # Spearman falls by 0.25 on all 4 models: below -0.05, p = 1/70
    (fall,) = spearman.figures
    assert fall["margin"] == -0.25 and abs(fall["p_value"] - 1 / 70) < 1e-12
    assert spearman.verdict == "fails"
    assert tc.verdict == "inconclusive" and "the test needs at least 4" in tc.reason


def test_disvae_with_a_single_beta_is_untested():
    claims = disvae_claims(_disvae([("beta_vae", 4, 0.5, 0.5)]))
    assert [(c.verdict, c.reason) for c in claims] == [("untested", "one beta")] * 2
    assert all(c.section == "Section 4.3 (disentangled VAEs)" for c in claims)


def _pretext(means: dict[tuple[str, str], float], n_runs: int) -> pd.DataFrame:
    tasks = list(dict.fromkeys(t for pair in means for t in pair))
    rows = [
        {"explanation": "features", "correlation": "pearson", "task_a": a, "task_b": b}
        | {"mean": 1.0 if a == b else means.get((a, b), means.get((b, a))), "std": 0.0}
        | {"n_runs": n_runs}
        for a in tasks
        for b in tasks
    ]
    return pd.DataFrame(rows)


def test_pretext_claims_test_each_pair_over_the_runs():
    table = _pretext({("reconstruction", "denoising"): 0.5}, 5)
    runs = np.ones((5, 2, 2))
    runs[:, 0, 1] = runs[:, 1, 0] = 0.5
    (claim,) = pretext_claims(table, {"features_pearson": runs})
    assert claim.statement == (
        "Label-free feature importance of encoders trained on different pretext tasks is weakly "
        "correlated: every Pearson correlation between two tasks (mean over runs) is below 0.7."
    )
    assert claim.section == "Section 4.2 (pretext task sensitivity)"
    assert claim.figures == [
        {"at": "denoising vs reconstruction", "correlation": 0.5, "std": 0.0}
        | {"margin": 0.7 - 0.5, "tolerance": 0.05, "n": 5, "p_value": 1 / 32, "verdict": "holds"}
    ]
    strong = runs.copy()
    strong[:, 0, 1] = strong[:, 1, 0] = 0.875
    (claim,) = pretext_claims(
        _pretext({("reconstruction", "denoising"): 0.875}, 5), {"features_pearson": strong}
    )
    assert claim.verdict == "fails"  # one pair: 1/32 < 0.05
    (claim,) = pretext_claims(table)  # no per-run values: inconclusive
    assert claim.reason == (
        "denoising vs reconstruction: n = 1 (one mean: per-run values not logged); the test "
        "needs at least 5"
    )


def test_claim_round_trips_through_its_dict():
    claim = Claim("a/b", "A claim.", "P", "Section 9", "units", "rule", [{"at": "x"}], "fails")
    assert Claim.from_dict(claim.to_dict()) == claim
    assert claim.holds is False


# The Markdown report: a "### Claims: <title>" heading, a blank line, a five-column table
# (verdict in bold, the paper's section, the statement, the margin at the deciding point with
# its unit and tolerance, the test's n and p or the reason), then the legend and the rules.
def test_markdown_reports_the_deciding_point_with_unit_tolerance_and_test():
    holds = Claim(
        "a",
        "A holds.",
        "P",
        "Section 4.1 (x)",
        "rate",
        "rule one",
        [
            {"at": "k = 5%", "margin": 0.5, "tolerance": 0.02, "n": 10, "p_value": 0.001},
            {"at": "k = 50%", "margin": 0.25, "tolerance": 0.02, "n": 10, "p_value": 0.01},
        ],
        "holds",
    )
    untested = Claim("b", "B.", "P", "Section 4.3 (y)", "r", "rule two", [], "untested", "why")
    text = claims_markdown([holds, untested], "demo · smoke profile · 1 epoch")
    assert text.startswith(
        "### Claims: demo · smoke profile · 1 epoch\n\n"
        "| verdict | paper | claim | margin at the deciding point | test |\n"
        "|---|---|---|---|---|\n"
        "| **holds** | Section 4.1 | A holds. | 0.25 rate at k = 50% (tolerance ±0.02) | "
        "n = 10, p = 0.01 |\n"
        "| **untested** | Section 4.3 | B. |  | why |\n\n"
        "holds: the margin clears the tolerance"
    )
    assert text.endswith("\n- rule one\n- rule two\n")


def test_titles_carry_the_profile_and_the_epochs():
    assert (
        claims_title("MNIST AE", "paper", "100 epochs") == "MNIST AE · paper profile · 100 epochs"
    )
    assert epochs_label({"config.n_epochs": "1"}, {"fit/epochs": 1.0}) == "1 epoch"
    stopped = epochs_label({"config.n_epochs": "100"}, {"fit/epochs": 37.0})
    assert stopped == "100 epochs, stopped early after 37"
    nested = {"config.n_epochs": "100", "config.patience": "10"}
    assert epochs_label(nested, {}) == "up to 100 epochs per model (early stopping)"
    assert epochs_label({"config.pretrained": "True"}, {}) == "pretrained encoder"
    assert epochs_label({}, {}) == "epochs not logged"
