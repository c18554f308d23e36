"""Verdicts on the paper's claims: one rule for every experiment, the sweep and the report.

A claim is checked at one or more points (a percentage ``k``, a beta, a pair of tasks). At
each point the *margin* is the measured difference in the claimed direction (positive: as the
paper says), in the claim's unit, and the *tolerance* is the smallest margin that counts.

- ``above`` claims (a method beats Random, top beats bottom, a correlation is below 0.7):
  a point holds when the margin exceeds the tolerance and a one-sided test of "margin >
  tolerance" gives ``p < alpha``; it fails when the margin is below minus the tolerance and the
  test of "margin < -tolerance" gives ``p < alpha / m`` (m points: Bonferroni); a margin within
  the tolerance is inconclusive.
- ``at_least`` claims (a correlation stays as high as beta grows): a point holds when
  "margin > -tolerance" is significant (any fall is smaller than the tolerance), fails when
  "margin < -tolerance" is (at ``alpha / m``).

A claim holds when every point holds (an intersection-union test needs no correction), fails
when some point fails, and is otherwise inconclusive. A point whose sample is smaller than
the smallest with which its exact test could reach ``p < alpha`` (5 paired values, 4 per
group, 4 trend points) is inconclusive; a run that lacks what the claim needs leaves it
untested. Several runs of the same settings: :func:`aggregate` tests each point's per-run
margins (sign flips over runs) with a tolerance of at least their standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lfxai.metrics.significance import ALPHA, min_sign_flip_n, sign_flip_p

PAPER = "Crabbé & van der Schaar, ICML 2022"
VERDICTS = ("holds", "fails", "inconclusive", "untested")
VERDICT_VALUE = {"holds": 1.0, "inconclusive": 0.0, "fails": -1.0}  # claims/verdict/<key>
KINDS = ("above", "at_least")
LEGEND = (
    f"holds: the margin clears the tolerance at every point, each at p < {ALPHA:g}; fails: "
    f"below minus the tolerance at some point, at p < {ALPHA:g} / points; inconclusive: "
    "neither, a margin within the tolerance, or a sample too small for the test; untested: "
    "the run lacks what the claim needs. Margins are positive in the claimed direction."
)
PTest = Callable[[float, str], float]  # (threshold, alternative) -> one-sided p-value


@dataclass(frozen=True)
class Point:
    """The evidence at one point of a claim.

    Attributes:
        label: where, e.g. ``k = 5%`` or ``beta = 10``.
        values: the measured figures shown with it (e.g. the method's and Random's values).
        margin: the difference in the claimed direction, in the claim's unit.
        tolerance: the smallest margin that counts (>= 0), same unit.
        n: the sample size behind the test (examples, runs, models, trials).
        n_min: the smallest ``n`` whose exact test can reach ``p < alpha``.
        p_value: the one-sided test, given a threshold and ``greater`` / ``less``; None when
            the run logged no sample (only a mean).
        sample: what ``n`` counts, e.g. ``examples`` or ``runs``.
    """

    label: str
    values: dict[str, float]
    margin: float
    tolerance: float
    n: int
    n_min: int
    p_value: PTest | None
    sample: str = "values"


@dataclass(frozen=True)
class Claim:
    """One claim and its verdict on one run (or on several, see :func:`aggregate`).

    Attributes:
        key: metric-safe id, e.g. ``shift_above_random/Saliency``.
        statement: the claim in words.
        reference: the paper.
        section: where in the paper, e.g. ``Section 4.1 (feature importance consistency)``.
        unit: the unit of margins and tolerances.
        rule: how each point is tested: tolerance, sample, test.
        figures: per point, the measured values, ``margin``, ``tolerance``, ``n``,
            ``p_value`` (None: not tested) and the point's ``verdict``.
        verdict: ``holds``, ``fails``, ``inconclusive`` or ``untested``.
        reason: what decided a verdict other than ``holds``.
        kind: ``above`` or ``at_least`` (see the module docstring).
    """

    key: str
    statement: str
    reference: str
    section: str
    unit: str
    rule: str
    figures: list[dict[str, Any]] = field(default_factory=list)
    verdict: str = "untested"
    reason: str = ""
    kind: str = "above"

    @property
    def holds(self) -> bool | None:
        """True (holds), False (fails), None (inconclusive or untested)."""
        return {"holds": True, "fails": False}.get(self.verdict)

    def to_dict(self) -> dict[str, Any]:
        """The verdict as plain values (``claims.json``)."""
        return {
            "key": self.key,
            "statement": self.statement,
            "reference": self.reference,
            "section": self.section,
            "verdict": self.verdict,
            "reason": self.reason,
            "unit": self.unit,
            "kind": self.kind,
            "rule": self.rule,
            "figures": self.figures,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Claim:
        """The claim as :meth:`to_dict` wrote it (e.g. read back from ``claims.json``)."""
        names = ("key", "statement", "reference", "section", "unit", "rule", "verdict", "reason")
        return cls(
            **{k: data.get(k, "") for k in names},
            figures=list(data.get("figures", [])),
            kind=data.get("kind", "above"),
        )


def fmt(value: float | None, digits: int = 4) -> str:
    """A number in ``digits`` significant digits; ``nan`` and ``-`` (None) spelt out."""
    if value is None:
        return "-"
    return "nan" if math.isnan(value) else f"{value:.{digits}g}"


def _judge(point: Point, kind: str) -> tuple[dict[str, Any], str, str]:
    """The point's figure (verdict still open), its direction and, if undecidable, why."""
    figure: dict[str, Any] = {"at": point.label, **point.values}
    figure |= {"margin": point.margin, "tolerance": point.tolerance, "n": point.n}
    figure["p_value"] = None
    margin, tolerance = point.margin, point.tolerance
    if not math.isfinite(margin):
        return figure, "", "the margin is not a number"
    if point.p_value is None or point.n < point.n_min:
        why = f"n = {point.n} ({point.sample}); the test needs at least {point.n_min}"
        return figure, "", why
    if kind == "above" and abs(margin) <= tolerance:
        return figure, "", f"margin {fmt(margin)} within the tolerance ±{fmt(tolerance)}"
    if kind == "above":
        direction = "holds" if margin > tolerance else "fails"
        threshold = tolerance if direction == "holds" else -tolerance
    else:
        direction = "holds" if margin > -tolerance else "fails"
        threshold = -tolerance
    alternative = "greater" if direction == "holds" else "less"
    figure["p_value"] = point.p_value(threshold, alternative)
    return figure, direction, ""


def judge(
    key: str,
    statement: str,
    section: str,
    unit: str,
    rule: str,
    points: list[Point],
    kind: str = "above",
    untested: str = "",
) -> Claim:
    """The claim's verdict from its points (see the module docstring).

    Args:
        key: the claim's key (``claims/holds/<key>``).
        statement: what the paper claims, in a sentence.
        section: where the paper claims it.
        unit: what a point measures (its values' unit).
        rule: how the verdict is reached, in words.
        points: the values the claim is tested on.
        kind: ``above`` or ``at_least`` (see the module docstring).
        untested: why the run cannot test the claim (then ``points`` is ignored); an empty
            ``points`` without it is untested too ("nothing to compare").
    """
    if kind not in KINDS:
        raise ValueError(f"unknown claim kind {kind!r}; valid: {list(KINDS)}")
    base = Claim(key, statement, PAPER, section, unit, rule, kind=kind)
    if untested or not points:
        return replace(base, reason=untested or "nothing to compare")
    m = len(points)
    figures, notes = [], {}
    for point in points:
        figure, direction, why = _judge(point, kind)
        p = figure["p_value"]
        if direction == "holds" and p < ALPHA:
            figure["verdict"] = "holds"
        elif direction == "fails" and p < ALPHA / m:
            figure["verdict"] = "fails"
        else:
            figure["verdict"] = "inconclusive"
            if not why:
                level = f"{ALPHA:g}" if direction == "holds" or m == 1 else f"{ALPHA:g}/{m}"
                why = f"p = {fmt(p, 3)} is not below {level}"
            notes.setdefault(why, []).append(point.label)
        figures.append(figure)
    verdicts = [f["verdict"] for f in figures]
    if "fails" in verdicts:
        failing = [f for f in figures if f["verdict"] == "fails"]
        where = ", ".join(f"{f['at']} (p = {fmt(f['p_value'], 3)})" for f in failing)
        return replace(base, figures=figures, verdict="fails", reason=f"fails at {where}")
    if all(v == "holds" for v in verdicts):
        return replace(base, figures=figures, verdict="holds")
    reason = "; ".join(
        f"{'every point' if len(labels) == m > 1 else ', '.join(labels)}: {why}"
        for why, labels in notes.items()
    )
    return replace(base, figures=figures, verdict="inconclusive", reason=reason)


def aggregate(runs: list[list[Claim]]) -> list[Claim]:
    """Verdicts over several runs of the same settings, claim by claim and point by point.

    The sample at each point is the runs' margins (sign flips over runs, at least
    :func:`min_sign_flip_n` runs); the tolerance is the larger of the runs' mean tolerance and
    the standard deviation of their margins (a margin smaller than the run-to-run spread
    says nothing). Claims and points missing from some run use the runs that have them.

    Args:
        runs: each run's claims (the first run's order is kept).
    """
    by_key: dict[str, list[Claim]] = {}
    for claims in runs:
        for claim in claims:
            by_key.setdefault(claim.key, []).append(claim)
    out = []
    for key, claims in by_key.items():
        first = claims[0]
        points = []
        labels = list(dict.fromkeys(f["at"] for c in claims for f in c.figures))
        for label in labels:
            found = [f for c in claims for f in c.figures if f["at"] == label]
            margins = np.array([f["margin"] for f in found], dtype=float)
            spread = float(np.std(margins, ddof=1)) if len(margins) > 1 else 0.0
            tolerance = max(float(np.mean([f["tolerance"] for f in found])), spread)
            values = {k: float(np.mean([f[k] for f in found])) for k in _numeric(found[0])}
            points.append(
                Point(
                    label,
                    values | {"spread": spread},
                    float(np.mean(margins)),
                    tolerance,
                    len(found),
                    min_sign_flip_n(),
                    lambda t, a, m=margins: sign_flip_p(m, t, a),
                    sample="runs",
                )
            )
        rule = (
            f"over {len(claims)} runs: sign flips of the per-run margins; tolerance = the "
            "larger of the runs' tolerance and the standard deviation of their margins"
        )
        untested = "" if points else (first.reason or "untested in every run")
        args = (first.statement, first.section, first.unit, rule, points, first.kind, untested)
        out.append(judge(key, *args))
    return out


_FIGURE_FIELDS = {"at", "margin", "tolerance", "n", "p_value", "verdict"}


def _numeric(figure: dict[str, Any]) -> list[str]:
    return [k for k, v in figure.items() if k not in _FIGURE_FIELDS and isinstance(v, int | float)]


def claim_metrics(claims: list[Claim]) -> dict[str, float]:
    """The claims' metrics, for every claim the run could test.

    ``claims/holds/<key>`` (1 holds, else 0), ``claims/verdict/<key>`` (1 holds, 0 inconclusive, -1
    fails), ``claims/margin/<key>`` (:func:`worst_margin`, when a point has a finite margin)
    and ``claims/all_hold`` (1 when every tested claim holds).
    """
    tested = [c for c in claims if c.verdict != "untested"]
    out: dict[str, float] = {}
    for claim in tested:
        out[f"claims/holds/{claim.key}"] = float(claim.verdict == "holds")
        out[f"claims/verdict/{claim.key}"] = VERDICT_VALUE[claim.verdict]
        margin = worst_margin(claim)
        if margin is not None:
            out[f"claims/margin/{claim.key}"] = margin
    if tested:
        out["claims/all_hold"] = float(all(c.verdict == "holds" for c in tested))
    return out


def worst_margin(claim: Claim) -> float | None:
    """The smallest finite margin over the claim's points; None when no point has one.

    A column to sort runs by: positive, the paper's direction holds by at least this much at
    every point (in the claim's unit); negative, it is reversed by this much somewhere.
    """
    margins = [f.get("margin") for f in claim.figures]
    finite = [float(m) for m in margins if isinstance(m, int | float) and math.isfinite(m)]
    return min(finite) if finite else None


def deciding_figure(claim: Claim) -> dict[str, Any] | None:
    """The point that decided the verdict.

    The first failing or undecided point, else the holding point with the largest p-value (the
    weakest evidence).
    """
    if not claim.figures:
        return None
    for wanted in ("fails", "inconclusive"):
        for figure in claim.figures:
            if figure.get("verdict") == wanted:
                return figure
    return max(claim.figures, key=lambda f: f.get("p_value") or 0.0)


def evidence_text(claim: Claim) -> tuple[str, str]:
    """The margin (with unit and tolerance) and the test (n, p) at the deciding point."""
    figure = deciding_figure(claim)
    if figure is None:
        return "", claim.reason
    margin = (
        f"{fmt(figure['margin'])} {claim.unit} at {figure['at']} "
        f"(tolerance ±{fmt(figure['tolerance'])})"
    )
    p = figure.get("p_value")
    test = f"n = {figure['n']}, p = {fmt(p, 3)}" if p is not None else ""
    if claim.verdict != "holds" and claim.reason:
        test = f"{test}; {claim.reason}" if test else claim.reason
    return margin, test


def claims_title(title: str, profile: str, epochs: str) -> str:
    """``<title> · <profile> profile · <epochs>``: what every claims report is headed by."""
    return f"{title} · {profile} profile · {epochs}"


def epochs_label(params: dict[str, str], metrics: dict[str, float]) -> str:
    """How long the run's model trained, from its logged settings and metrics.

    ``config.pretrained`` true: a reused encoder; ``fit/epochs`` (the top-level model's
    trained epochs) below ``config.n_epochs``: stopped early; no ``fit/epochs`` (the models are
    nested runs) and ``config.patience`` > 0: up to the setting; otherwise the setting.
    """
    if params.get("config.pretrained", "").lower() == "true":
        return "pretrained encoder"
    setting = params.get("config.n_epochs")
    if setting is None:
        return "epochs not logged"
    planned = int(float(setting))
    unit = "epoch" if planned == 1 else "epochs"
    trained = metrics.get("fit/epochs")
    if trained is not None and int(trained) < planned:
        return f"{planned} {unit}, stopped early after {int(trained)}"
    if trained is None and planned > 1 and float(params.get("config.patience", 0)) > 0:
        return f"up to {planned} {unit} per model (early stopping)"
    return f"{planned} {unit}"


def claims_markdown(claims: list[Claim], title: str) -> str:
    """The claims report in Markdown: one row per claim, then the rules."""
    lines = [
        f"### Claims: {title}",
        "",
        "| verdict | paper | claim | margin at the deciding point | test |",
        "|---|---|---|---|---|",
    ]
    for claim in claims:
        margin, test = evidence_text(claim)
        section = claim.section.split(" (")[0]
        lines.append(f"| **{claim.verdict}** | {section} | {claim.statement} | {margin} | {test} |")
    if not claims:
        lines.append("| untested | | (no claim applies to this run's methods) | | |")
    rules = list(dict.fromkeys(c.rule for c in claims if c.rule))
    lines += ["", LEGEND] + [f"- {rule}" for rule in rules]
    return "\n".join(lines) + "\n"
