"""The paper's claims each experiment tests, checked against one run's results.

One function per experiment turns its result table (the CSV the run logs) and its evidence
(per-example or per-run values, logged as ``claims_evidence.npz``) into claims with verdicts
(:mod:`lfxai.metrics.verdicts`: holds / fails / inconclusive / untested, with exact or
permutation p-values). :data:`CLAIMS` maps the experiment's name to it. Pure computation:
experiments log the result, and the report recomputes it from the same logged files.

Evidence keys: ``<method>@<k>`` (``consistency_features``: per-example representation shift
``(n,)``; ``consistency_examples``: per test example, the top and bottom similarity rate
``(2, n)``), ``<explanation>_<correlation>`` (``pretext``: per-run correlation matrices
``(runs, T, T)``, tasks in the table's order). ``disvae`` finds its runs in the table;
``roar_test`` retrains once per point, so only several runs (the report) can test it.

References:
    Crabbé & van der Schaar, "Label-Free Explainability for Unsupervised Models", ICML 2022,
    Sections 4.1-4.3 and Appendix C. Hooker et al., "A Benchmark for Interpretability Methods
    in Deep Neural Networks", NeurIPS 2019 (ROAR).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from lfxai.metrics.significance import (
    RESAMPLES,
    min_sign_flip_n,
    min_two_sample_n,
    sign_flip_p,
    two_sample_p,
)
from lfxai.metrics.verdicts import (
    PAPER,
    Claim,
    Point,
    claim_metrics,
    claims_markdown,
    claims_title,
    epochs_label,
    judge,
)

__all__ = [
    "CLAIMS",
    "PAPER",
    "Claim",
    "claim_metrics",
    "claims_markdown",
    "claims_title",
    "epochs_label",
]

Evidence = Mapping[str, np.ndarray]
RANDOM = "Random"
ALL = 100.0  # at 100% every ranking selects everything: curves meet, nothing is claimed there
RELATIVE_TOLERANCE = 0.05  # of Random's value: shifts and losses have no natural scale
RATE_TOLERANCE = 0.02  # similarity rate (0-1): two percentage points
CORRELATION_TOLERANCE = 0.05  # Pearson r / Spearman rho
STRONG_CORRELATION = 0.7  # |r| from which a correlation is commonly called strong
SECTION_FEATURES = "Section 4.1 (feature importance consistency)"
SECTION_EXAMPLES = "Section 4.1 (example importance consistency)"
SECTION_PRETEXT = "Section 4.2 (pretext task sensitivity)"
SECTION_DISVAE = "Section 4.3 (disentangled VAEs)"
SECTION_ROAR = "Appendix C (ROAR: Hooker et al., NeurIPS 2019, with label-free importance)"
_FLIPS = f"one-sided sign-flip permutation test (all 2^n flips, or {RESAMPLES} random ones)"


def point_key(method: str, k: float) -> str:
    """The evidence key of one method at one percentage, e.g. ``Saliency@5``."""
    return f"{method}@{float(k):g}"


def _paired_test(differences: np.ndarray | None) -> tuple[int, Callable | None]:
    if differences is None:
        return 1, None
    return len(differences), lambda t, a, d=differences: sign_flip_p(d, t, a)


def _curves(table: pd.DataFrame, pct: str, value: str) -> dict[str, pd.Series]:
    return {m: g.set_index(pct)[value] for m, g in table.groupby("method", sort=False)}


def _shared_ks(a: pd.Series, b: pd.Series) -> list[float]:
    """``0 < k < 100`` measured on both curves (k = 0 and 100 are equal for every ranking)."""
    return sorted(k for k in set(a.index) & set(b.index) if 0 < k < ALL)


def _versus_random(
    table: pd.DataFrame,
    pct: str,
    value: str,
    evidence: Evidence,
    key: str,
    statement: str,
    section: str,
    unit: str,
    sample: str,
    single: str = "one mean: per-example values not logged",
) -> list[Claim]:
    """One claim per method other than Random: its curve lies above Random's for k < 100.

    ``sample`` names what the evidence's values are; ``single`` what ``n = 1`` is without them.
    """
    curves = _curves(table, pct, value)
    rule = (
        f"tolerance: {RELATIVE_TOLERANCE:.0%} of Random's value at each k; sample: {sample}; "
        f"{_FLIPS}"
    )
    claims = []
    for method, curve in curves.items():
        if method == RANDOM:
            continue
        name, text = key.format(method=method), statement.format(method=method)
        if RANDOM not in curves:
            untested = "Random is not among the methods of this run"
            claims.append(judge(name, text, section, unit, rule, [], untested=untested))
            continue
        points = []
        for k in _shared_ks(curve, curves[RANDOM]):
            a, b = float(curve[k]), float(curves[RANDOM][k])
            ours, theirs = evidence.get(point_key(method, k)), evidence.get(point_key(RANDOM, k))
            paired = None if ours is None or theirs is None else np.asarray(ours - theirs)
            n, test = _paired_test(paired)
            points.append(
                Point(
                    f"k = {k:g}%",
                    {"k": float(k), method: a, RANDOM: b},
                    a - b,
                    RELATIVE_TOLERANCE * abs(b),
                    n,
                    min_sign_flip_n(),
                    test,
                    sample if paired is not None else single,
                )
            )
        untested = "" if points else "no percentage below 100 to compare"
        claims.append(judge(name, text, section, unit, rule, points, untested=untested))
    return claims


def feature_consistency_claims(
    table: pd.DataFrame, evidence: Evidence | None = None
) -> list[Claim]:
    """Claims of ``consistency_features``.

    Args:
        table: columns ``method``, ``pct_perturbed``, ``representation_shift``.
        evidence: ``<method>@<k>`` -> per-example shift ``(n,)``, same examples for every
            method (paired with Random's).
    """
    return _versus_random(
        table,
        "pct_perturbed",
        "representation_shift",
        evidence or {},
        key="shift_above_random/{method}",
        statement=(
            "Perturbing the features that label-free {method} ranks most important shifts the "
            "representation more than perturbing random features, at every 0 < k < 100%."
        ),
        section=SECTION_FEATURES,
        unit="squared L2 distance in latent space",
        sample="the explained examples, paired (shift minus Random's shift)",
    )


def roar_claims(table: pd.DataFrame, evidence: Evidence | None = None) -> list[Claim]:
    """Claims of ``roar_test`` (one retraining per point: several runs test them).

    Args:
        table: columns ``method``, ``pct_removed``, ``test_loss`` (k = 0 is the base model).
        evidence: unused (a run retrains once per method and percentage).
    """
    return _versus_random(
        table,
        "pct_removed",
        "test_loss",
        {},
        key="loss_above_random/{method}",
        statement=(
            "Retraining without the training features that label-free {method} ranks most "
            "important raises the test loss more than retraining without random features, "
            "at every 0 < k < 100%."
        ),
        section=SECTION_ROAR,
        unit="test loss (reconstruction loss of the retrained autoencoder)",
        sample="runs (each retrains once per point)",
        single="one retraining per point: several runs test this claim",
    )


def example_consistency_claims(
    table: pd.DataFrame, evidence: Evidence | None = None
) -> list[Claim]:
    """Claims of ``consistency_examples``.

    Args:
        table: columns ``method``, ``type`` (``top`` / ``bottom``), ``pct_examples``,
            ``similarity_rate``.
        evidence: ``<method>@<k>`` -> ``(2, n)``: per test example, the top-k and bottom-k
            similarity rate.
    """
    evidence = evidence or {}
    section, unit = SECTION_EXAMPLES, "similarity rate (fraction of examples, 0-1)"
    sample = "the explained test examples, paired (top minus bottom rate)"
    rule = f"tolerance: {RATE_TOLERANCE:g} (similarity rate); sample: {sample}; {_FLIPS}"
    claims = []
    for method, group in table.groupby("method", sort=False):
        rates = {
            kind: part.set_index("pct_examples")["similarity_rate"]
            for kind, part in group.groupby("type")
        }
        top, bottom = rates.get("top", pd.Series(dtype=float)), rates.get("bottom", pd.Series())
        points = []
        for k in _shared_ks(top, bottom):
            a, b = float(top[k]), float(bottom[k])
            per_example = evidence.get(point_key(method, k))
            paired = None if per_example is None else np.asarray(per_example[0] - per_example[1])
            n, test = _paired_test(paired)
            points.append(
                Point(
                    f"k = {k:g}%",
                    {"k": float(k), "top": a, "bottom": b},
                    a - b,
                    RATE_TOLERANCE,
                    n,
                    min_sign_flip_n(),
                    test,
                    sample if paired is not None else "one mean: per-example values not logged",
                )
            )
        statement = (
            f"The training examples that label-free {method} ranks most important share the "
            "test example's label more often than the least important ones, at every "
            "0 < k < 100%."
        )
        untested = "" if points else "no percentage below 100 to compare"
        key = f"top_above_bottom/{method}"
        claims.append(judge(key, statement, section, unit, rule, points, untested=untested))
    return claims


def disvae_claims(table: pd.DataFrame, evidence: Evidence | None = None) -> list[Claim]:
    """Claims of ``disvae``: correlation does not fall with beta, per loss and metric.

    The correlation at every beta above the smallest is at least the one at the smallest beta
    (models of each beta are the samples of a two-sample permutation test).

    Args:
        table: one row per model: columns ``loss``, ``beta``, ``pearson``, ``spearman``.
        evidence: unused (the table holds every model).
    """
    claims = []
    rule = (
        f"tolerance: {CORRELATION_TOLERANCE:g}; sample: the models of each beta (runs) against "
        "those of the smallest beta; one-sided two-sample permutation test of the difference "
        f"of means (exact up to {RESAMPLES} splits)"
    )
    for loss, group in table.groupby("loss", sort=False):
        for metric in ("pearson", "spearman"):
            key = f"correlation_not_falling/{loss}/{metric}"
            name = metric.capitalize()
            statement = (
                f"With {loss}, the {name} correlation between the saliency maps of different "
                "latent units is as high at every larger beta as at the smallest beta: more "
                "disentangled units still explain the same features."
            )
            unit = "Pearson r" if metric == "pearson" else "Spearman rho"
            values = {float(b): g[metric].to_numpy(dtype=float) for b, g in group.groupby("beta")}
            betas = sorted(values)
            if len(betas) < 2:
                claims.append(
                    judge(key, statement, SECTION_DISVAE, unit, rule, [], "at_least", "one beta")
                )
                continue
            low = values[betas[0]]
            points = []
            for beta in betas[1:]:
                high = values[beta]
                points.append(
                    Point(
                        f"beta = {beta:g}",
                        {
                            "beta": beta,
                            f"{metric}_at_beta": float(np.mean(high)),
                            f"{metric}_at_smallest_beta": float(np.mean(low)),
                        },
                        float(np.mean(high) - np.mean(low)),
                        CORRELATION_TOLERANCE,
                        min(len(high), len(low)),
                        min_two_sample_n(),
                        lambda t, a, x=high, y=low: two_sample_p(x, y, t, a),
                        "models per beta",
                    )
                )
            claims.append(judge(key, statement, SECTION_DISVAE, unit, rule, points, "at_least"))
    return claims


def pretext_claims(table: pd.DataFrame, evidence: Evidence | None = None) -> list[Claim]:
    """Claims of ``pretext``: the explanations of different pretext tasks are weakly correlated.

    One claim per explanation kind and correlation coefficient.

    Args:
        table: columns ``explanation``, ``correlation``, ``task_a``, ``task_b``, ``mean``
            (over runs), ``std``; the diagonal (a task with itself) is ignored.
        evidence: ``<explanation>_<correlation>`` -> ``(runs, T, T)`` per-run correlations,
            tasks in the order they first appear in ``task_a``.
    """
    evidence = evidence or {}
    tasks = list(dict.fromkeys(table["task_a"])) if "task_a" in table else []
    rule = (
        f"tolerance: {CORRELATION_TOLERANCE:g}; sample: the runs (each trains every task "
        f"anew), paired ({STRONG_CORRELATION} minus the run's correlation); {_FLIPS}"
    )
    claims = []
    for (explanation, correlation), part in table.groupby(["explanation", "correlation"]):
        pairs = part[part.task_a < part.task_b]
        kind = {"features": "feature", "examples": "example"}.get(explanation, explanation)
        statement = (
            f"Label-free {kind} importance of encoders trained on different pretext tasks is "
            f"weakly correlated: every {correlation.capitalize()} correlation between two "
            f"tasks (mean over runs) is below {STRONG_CORRELATION}."
        )
        key = f"not_strongly_correlated/{explanation}/{correlation}"
        unit = "Pearson r" if correlation == "pearson" else "Spearman rho"
        runs = evidence.get(f"{explanation}_{correlation}")
        points = []
        for r in pairs.itertuples():
            per_run = None
            if runs is not None:
                per_run = STRONG_CORRELATION - runs[:, tasks.index(r.task_a), tasks.index(r.task_b)]
            n, test = _paired_test(per_run)
            points.append(
                Point(
                    f"{r.task_a} vs {r.task_b}",
                    {"correlation": float(r.mean), "std": float(r.std)},
                    STRONG_CORRELATION - float(r.mean),
                    CORRELATION_TOLERANCE,
                    n,
                    min_sign_flip_n(),
                    test,
                    "runs" if per_run is not None else "one mean: per-run values not logged",
                )
            )
        untested = "" if points else "fewer than two tasks"
        claims.append(judge(key, statement, SECTION_PRETEXT, unit, rule, points, untested=untested))
    return claims


ClaimsFn = Callable[[pd.DataFrame, Evidence | None], list[Claim]]
CLAIMS: dict[str, ClaimsFn] = {
    "consistency_features": feature_consistency_claims,
    "consistency_examples": example_consistency_claims,
    "roar_test": roar_claims,
    "disvae": disvae_claims,
    "pretext": pretext_claims,
}
