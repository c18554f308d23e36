"""What each experiment's claims say: key, statement, section, unit, rule and the sample named
in a reason, pinned word for word (they are what the report and ``claims.json`` show), and
the claims a run cannot test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lfxai.metrics.claims import (
    PAPER,
    disvae_claims,
    example_consistency_claims,
    feature_consistency_claims,
    pretext_claims,
    roar_claims,
)

FLIPS = "one-sided sign-flip permutation test (all 2^n flips, or 9999 random ones)"
ROAR_STATEMENT = (
    "Retraining without the training features that label-free {} ranks most important raises "
    "the test loss more than retraining without random features, at every 0 < k < 100%."
)
ROAR = {
    "reference": PAPER,
    "section": "Appendix C (ROAR: Hooker et al., NeurIPS 2019, with label-free importance)",
    "unit": "test loss (reconstruction loss of the retrained autoencoder)",
    "kind": "above",
    "rule": (
        "tolerance: 5% of Random's value at each k; sample: runs (each retrains once per "
        f"point); {FLIPS}"
    ),
}


def _text(claim) -> dict:
    """The claim's dict without its figures."""
    return {k: v for k, v in claim.to_dict().items() if k != "figures"}


def _roar(curves: dict[str, list[float]]) -> pd.DataFrame:
    rows = [
        {"method": m, "pct_removed": k, "test_loss": v}
        for m, values in curves.items()
        for k, v in zip((0, 50, 100), values, strict=True)
    ]
    return pd.DataFrame(rows)


def test_a_roar_claim_says_one_retraining_per_point_cannot_test_it():
    (claim,) = roar_claims(_roar({"Random": [0.1, 0.2, 0.3], "Saliency": [0.1, 0.25, 0.3]}))
    assert _text(claim) == {
        "key": "loss_above_random/Saliency",
        "statement": ROAR_STATEMENT.format("Saliency"),
        "verdict": "inconclusive",
        "reason": (
            "k = 50%: n = 1 (one retraining per point: several runs test this claim); "
            "the test needs at least 5"
        ),
        **ROAR,
    }
    assert claim.figures[0]["Saliency"] == 0.25 and claim.figures[0]["Random"] == 0.2


def test_without_random_every_method_s_claim_is_untested():
    claims = roar_claims(_roar({"Saliency": [0.1, 0.2, 0.3], "GradientShap": [0.1, 0.2, 0.3]}))
    assert [_text(c) for c in claims] == [
        {
            "key": f"loss_above_random/{method}",
            "statement": ROAR_STATEMENT.format(method),
            "verdict": "untested",
            "reason": "Random is not among the methods of this run",
            **ROAR,
        }
        for method in ("Saliency", "GradientShap")
    ]
    assert [c.figures for c in claims] == [[], []]


def test_a_point_missing_random_s_examples_is_one_mean():
    table = pd.DataFrame(
        [
            {"method": m, "pct_perturbed": 50, "representation_shift": v}
            for m, v in (("Random", 1.0), ("Saliency", 2.0))
        ]
    )
    (claim,) = feature_consistency_claims(table, {"Saliency@50": np.ones(8)})
    assert claim.figures[0]["n"] == 1
    assert "n = 1 (one mean: per-example values not logged)" in claim.reason


def _examples(method: str = "DKNN", kinds=("top", "bottom")) -> pd.DataFrame:
    rates = {"top": [0.9, 0.8, 0.5], "bottom": [0.2, 0.3, 0.5]}
    return pd.DataFrame(
        [
            {"method": method, "type": t, "pct_examples": k, "similarity_rate": v}
            for t in kinds
            for k, v in zip((5, 50, 100), rates[t], strict=True)
        ]
    )


EXAMPLES = {
    "key": "top_above_bottom/DKNN",
    "statement": (
        "The training examples that label-free DKNN ranks most important share the test "
        "example's label more often than the least important ones, at every 0 < k < 100%."
    ),
    "reference": PAPER,
    "section": "Section 4.1 (example importance consistency)",
    "unit": "similarity rate (fraction of examples, 0-1)",
    "kind": "above",
    "rule": (
        "tolerance: 0.02 (similarity rate); sample: the explained test examples, paired "
        f"(top minus bottom rate); {FLIPS}"
    ),
}


def test_an_example_claim_names_its_paired_test_examples():
    evidence = {f"DKNN@{k}": np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]) for k in (5, 50)}
    (claim,) = example_consistency_claims(_examples(), evidence)
    assert _text(claim) == {
        **EXAMPLES,
        "verdict": "inconclusive",
        "reason": (
            "every point: n = 3 (the explained test examples, paired (top minus bottom rate)); "
            "the test needs at least 5"
        ),
    }
    assert [f["n"] for f in claim.figures] == [3, 3]
    assert claim.figures[0] | {"margin": 0.7} == {
        "at": "k = 5%",
        "k": 5.0,
        "top": 0.9,
        "bottom": 0.2,
        "margin": pytest.approx(0.7),
        "tolerance": 0.02,
        "n": 3,
        "p_value": None,
        "verdict": "inconclusive",
    }


def test_an_example_claim_without_per_example_rates_is_one_mean():
    (claim,) = example_consistency_claims(_examples())
    assert _text(claim) == {
        **EXAMPLES,
        "verdict": "inconclusive",
        "reason": (
            "every point: n = 1 (one mean: per-example values not logged); "
            "the test needs at least 5"
        ),
    }


def test_an_example_claim_without_bottom_rates_is_untested():
    (claim,) = example_consistency_claims(_examples(kinds=("top",)))
    assert _text(claim) == {
        **EXAMPLES,
        "verdict": "untested",
        "reason": "no percentage below 100 to compare",
    }


def _disvae_rule() -> str:
    return (
        "tolerance: 0.05; sample: the models of each beta (runs) against those of the smallest "
        "beta; one-sided two-sample permutation test of the difference of means (exact up to "
        "9999 splits)"
    )


@pytest.mark.parametrize(
    ("metric", "name", "unit"),
    [("pearson", "Pearson", "Pearson r"), ("spearman", "Spearman", "Spearman rho")],
)
def test_a_disvae_claim_per_loss_and_correlation(metric, name, unit):
    table = pd.DataFrame(
        [
            {"loss": "beta-vae", "beta": b, "pearson": p, "spearman": p + 0.01}
            for b, p in [(1, 0.2), (1, 0.22), (5, 0.3), (5, 0.31)]
        ]
    )
    claims = {c.key: c for c in disvae_claims(table)}
    claim = claims[f"correlation_not_falling/beta-vae/{metric}"]
    assert _text(claim) == {
        "key": f"correlation_not_falling/beta-vae/{metric}",
        "statement": (
            f"With beta-vae, the {name} correlation between the saliency maps of different "
            "latent units is as high at every larger beta as at the smallest beta: more "
            "disentangled units still explain the same features."
        ),
        "reference": PAPER,
        "section": "Section 4.3 (disentangled VAEs)",
        "verdict": "inconclusive",
        "reason": "beta = 5: n = 2 (models per beta); the test needs at least 4",
        "unit": unit,
        "kind": "at_least",
        "rule": _disvae_rule(),
    }
    shift = 0.01 if metric == "spearman" else 0.0
    assert claim.figures[0] | {"margin": 0} == {
        "at": "beta = 5",
        "beta": 5.0,
        f"{metric}_at_beta": pytest.approx(0.305 + shift),
        f"{metric}_at_smallest_beta": pytest.approx(0.21 + shift),
        "margin": 0,
        "tolerance": 0.05,
        "n": 2,
        "p_value": None,
        "verdict": "inconclusive",
    }
    assert claim.figures[0]["margin"] == pytest.approx(0.095)


def _pretext(tasks=("denoising", "reconstruction"), explanations=("features", "examples")):
    return pd.DataFrame(
        [
            {"explanation": e, "correlation": c, "task_a": a, "task_b": b, "mean": 0.3, "std": 0.1}
            for e in explanations
            for c in ("pearson", "spearman")
            for a in tasks
            for b in tasks
        ]
    )


PRETEXT_RULE = (
    "tolerance: 0.05; sample: the runs (each trains every task anew), paired (0.7 minus the "
    f"run's correlation); {FLIPS}"
)


def _pretext_text(explanation: str, kind: str, correlation: str, unit: str, reason: str):
    return {
        "key": f"not_strongly_correlated/{explanation}/{correlation.lower()}",
        "statement": (
            f"Label-free {kind} importance of encoders trained on different pretext tasks is "
            f"weakly correlated: every {correlation} correlation between two tasks (mean over "
            "runs) is below 0.7."
        ),
        "reference": PAPER,
        "section": "Section 4.2 (pretext task sensitivity)",
        "verdict": "untested" if reason == "fewer than two tasks" else "inconclusive",
        "reason": reason,
        "unit": unit,
        "kind": "above",
        "rule": PRETEXT_RULE,
    }


def test_pretext_claims_per_explanation_and_correlation():
    runs = np.full((3, 2, 2), 0.3)
    evidence = {"features_pearson": runs, "examples_spearman": runs}
    claims = pretext_claims(_pretext(explanations=("features", "examples", "codes")), evidence)
    measured = "denoising vs reconstruction: n = 3 (runs); the test needs at least 5"
    one_mean = (
        "denoising vs reconstruction: n = 1 (one mean: per-run values not logged); "
        "the test needs at least 5"
    )
    assert [_text(c) for c in claims] == [
        _pretext_text("codes", "codes", "Pearson", "Pearson r", one_mean),
        _pretext_text("codes", "codes", "Spearman", "Spearman rho", one_mean),
        _pretext_text("examples", "example", "Pearson", "Pearson r", one_mean),
        _pretext_text("examples", "example", "Spearman", "Spearman rho", measured),
        _pretext_text("features", "feature", "Pearson", "Pearson r", measured),
        _pretext_text("features", "feature", "Spearman", "Spearman rho", one_mean),
    ]


def test_a_pretext_run_of_one_task_is_untested():
    claims = pretext_claims(_pretext(tasks=("denoising",), explanations=("features",)))
    assert [_text(c) for c in claims] == [
        _pretext_text("features", "feature", "Pearson", "Pearson r", "fewer than two tasks"),
        _pretext_text("features", "feature", "Spearman", "Spearman rho", "fewer than two tasks"),
    ]


def test_a_disvae_run_of_one_beta_is_untested():
    table = pd.DataFrame([{"loss": "tc-vae", "beta": 1, "pearson": 0.2, "spearman": 0.3}])
    claims = disvae_claims(table)
    assert [_text(c) for c in claims] == [
        {
            "key": f"correlation_not_falling/tc-vae/{metric}",
            "statement": (
                f"With tc-vae, the {name} correlation between the saliency maps of different "
                "latent units is as high at every larger beta as at the smallest beta: more "
                "disentangled units still explain the same features."
            ),
            "reference": PAPER,
            "section": "Section 4.3 (disentangled VAEs)",
            "verdict": "untested",
            "reason": "one beta",
            "unit": unit,
            "kind": "at_least",
            "rule": _disvae_rule(),
        }
        for metric, name, unit in (
            ("pearson", "Pearson", "Pearson r"),
            ("spearman", "Spearman", "Spearman rho"),
        )
    ]
