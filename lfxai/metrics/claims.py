"""The paper's claims each experiment tests, checked against one run's results.

A :class:`Claim` is a sentence of the paper that an experiment can confirm or refute, the
measured figures that decide it, and a verdict: ``holds`` (every figure as the paper says),
``fails``, or ``untested`` (the run lacks what the claim needs, e.g. no Random baseline or no
percentage below 100). One function per experiment turns its result table into claims;
:data:`CLAIMS` maps the experiment's name to it. Pure computation: experiments log the result.

References:
    Crabbé & van der Schaar, "Label-Free Explainability for Unsupervised Models", ICML 2022,
    Section 4.1 (consistency checks). Hooker et al., "A Benchmark for Interpretability Methods
    in Deep Neural Networks", NeurIPS 2019 (ROAR).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

PAPER = "Crabbé & van der Schaar, ICML 2022, Section 4.1"
DISVAE_PAPER = "Crabbé & van der Schaar, ICML 2022, Section 4.3"
RANDOM = "Random"
ALL = 100.0  # at 100% every ranking selects everything: curves meet, nothing is claimed there


@dataclass(frozen=True)
class Claim:
    """One claim and its verdict on one run.

    Attributes:
        key: metric-safe id, e.g. ``shift_above_random/Saliency``.
        statement: the claim in words.
        reference: where it comes from.
        figures: per percentage ``k``, the measured values and their margin (positive: as claimed).
        holds: True / False, or None when the run cannot test it.
        reason: why it is untested, or where it fails.
    """

    key: str
    statement: str
    reference: str
    figures: list[dict[str, float]] = field(default_factory=list)
    holds: bool | None = None
    reason: str = ""

    @property
    def verdict(self) -> str:
        return {True: "holds", False: "fails", None: "untested"}[self.holds]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "statement": self.statement,
            "reference": self.reference,
            "verdict": self.verdict,
            "holds": self.holds,
            "reason": self.reason,
            "figures": self.figures,
        }


def _above_everywhere(
    key: str,
    statement: str,
    reference: str,
    claimed: pd.Series,
    against: pd.Series,
    claimed_name: str,
    against_name: str,
) -> Claim:
    """The claim that ``claimed`` exceeds ``against`` at every shared ``0 < k < 100``.

    Args:
        claimed, against: values indexed by the percentage ``k`` (k = 0, nothing removed,
            and k = 100, everything removed, are the same for every ranking: ignored).
    """
    ks = sorted(k for k in set(claimed.index) & set(against.index) if 0 < k < ALL)
    if not ks:
        return Claim(key, statement, reference, reason="no percentage below 100 to compare")
    figures = []
    for k in ks:
        a, b = float(claimed[k]), float(against[k])
        figures.append({"k": float(k), claimed_name: a, against_name: b, "margin": a - b})
    failing = [f["k"] for f in figures if not f["margin"] > 0]  # NaN fails too
    reason = f"not above at k = {', '.join(f'{k:g}' for k in failing)}" if failing else ""
    return Claim(key, statement, reference, figures, holds=not failing, reason=reason)


def _versus_random(
    table: pd.DataFrame, pct: str, value: str, key: str, statement: str, reference: str
) -> list[Claim]:
    """One claim per method other than Random: its curve lies above Random's for k < 100."""
    curves = {m: group.set_index(pct)[value] for m, group in table.groupby("method", sort=False)}
    claims = []
    for method, curve in curves.items():
        if method == RANDOM:
            continue
        text = statement.format(method=method)
        if RANDOM not in curves:
            reason = "Random is not among the methods of this run"
            claims.append(Claim(key.format(method=method), text, reference, reason=reason))
            continue
        claims.append(
            _above_everywhere(
                key.format(method=method), text, reference, curve, curves[RANDOM], method, RANDOM
            )
        )
    return claims


def feature_consistency_claims(table: pd.DataFrame) -> list[Claim]:
    """Claims of ``consistency_features``.

    Args:
        table: columns ``method``, ``pct_perturbed``, ``representation_shift``.
    """
    return _versus_random(
        table,
        "pct_perturbed",
        "representation_shift",
        key="shift_above_random/{method}",
        statement=(
            "Perturbing the features that label-free {method} ranks most important shifts the "
            "representation more than perturbing random features, at every 0 < k < 100%."
        ),
        reference=f"{PAPER} (feature importance consistency)",
    )


def example_consistency_claims(table: pd.DataFrame) -> list[Claim]:
    """Claims of ``consistency_examples``.

    Args:
        table: columns ``method``, ``type`` (``top`` / ``bottom``), ``pct_examples``,
            ``similarity_rate``.
    """
    claims = []
    for method, group in table.groupby("method", sort=False):
        rates = {
            kind: part.set_index("pct_examples")["similarity_rate"]
            for kind, part in group.groupby("type")
        }
        claims.append(
            _above_everywhere(
                f"top_above_bottom/{method}",
                f"The training examples that label-free {method} ranks most important share the "
                "test example's label more often than the least important ones, at every "
                "0 < k < 100%.",
                f"{PAPER} (example importance consistency)",
                rates.get("top", pd.Series(dtype=float)),
                rates.get("bottom", pd.Series(dtype=float)),
                "top",
                "bottom",
            )
        )
    return claims


def roar_claims(table: pd.DataFrame) -> list[Claim]:
    """Claims of ``roar_test``.

    Args:
        table: columns ``method``, ``pct_removed``, ``test_loss`` (k = 0 is the base model).
    """
    return _versus_random(
        table,
        "pct_removed",
        "test_loss",
        key="loss_above_random/{method}",
        statement=(
            "Retraining without the training features that label-free {method} ranks most "
            "important raises the test loss more than retraining without random features, "
            "at every 0 < k < 100%."
        ),
        reference="ROAR (Hooker et al., NeurIPS 2019) with label-free importance",
    )


def disvae_claims(table: pd.DataFrame) -> list[Claim]:
    """Claims of ``disvae``: per loss and correlation metric, the mean over runs at every
    beta above the smallest is not below the mean at the smallest beta.

    Args:
        table: one row per model: columns ``loss``, ``beta``, ``pearson``, ``spearman``.
    """
    claims = []
    for loss, group in table.groupby("loss", sort=False):
        means = {m: group.groupby("beta")[m].mean() for m in ("pearson", "spearman")}
        for metric, by_beta in means.items():
            key = f"correlation_not_falling/{loss}/{metric}"
            statement = (
                f"With {loss}, the {metric.capitalize()} correlation between the saliency maps of "
                "different latent units does not fall as beta grows: disentangling the latent "
                "units does not make them explain different features."
            )
            reference = f"{DISVAE_PAPER} (disentangled VAEs)"
            betas = sorted(by_beta.index)
            if len(betas) < 2:
                claims.append(Claim(key, statement, reference, reason="only one beta"))
                continue
            low = float(by_beta[betas[0]])
            figures = [
                {
                    "beta": float(b),
                    f"{metric}_at_beta": float(by_beta[b]),
                    f"{metric}_at_smallest_beta": low,
                    "margin": float(by_beta[b]) - low,
                }
                for b in betas[1:]
            ]
            failing = [f["beta"] for f in figures if not f["margin"] >= 0]  # NaN fails too
            reason = f"lower at beta = {', '.join(f'{b:g}' for b in failing)}" if failing else ""
            claims.append(Claim(key, statement, reference, figures, not failing, reason))
    return claims


CLAIMS: dict[str, Callable[[pd.DataFrame], list[Claim]]] = {
    "consistency_features": feature_consistency_claims,
    "consistency_examples": example_consistency_claims,
    "roar_test": roar_claims,
    "disvae": disvae_claims,
}


def claim_metrics(claims: list[Claim]) -> dict[str, float]:
    """``claims/holds/<key>`` (1 or 0) per tested claim and ``claims/all_hold`` over them."""
    tested = {f"claims/holds/{c.key}": float(c.holds) for c in claims if c.holds is not None}
    if tested:
        tested["claims/all_hold"] = float(all(v == 1.0 for v in tested.values()))
    return tested


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4g}"


def claims_markdown(claims: list[Claim], title: str) -> str:
    """A short Markdown report: one line per claim with its verdict and its weakest margin."""
    lines = [f"### Claims: {title}", "", "| verdict | claim | weakest margin |", "|---|---|---|"]
    for claim in claims:
        if claim.figures:
            worst = min(claim.figures, key=lambda f: (not math.isnan(f["margin"]), f["margin"]))
            where = f"k = {worst['k']:g}%" if "k" in worst else f"beta = {worst['beta']:g}"
            margin = f"{_fmt(worst['margin'])} at {where}"
        else:
            margin = claim.reason
        lines.append(f"| **{claim.verdict}** | {claim.statement} | {margin} |")
    if not claims:
        lines.append("| untested | (no claim applies to this run's methods) | |")
    return "\n".join(lines) + "\n"
