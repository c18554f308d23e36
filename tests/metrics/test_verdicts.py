"""Verdicts over several runs (:func:`aggregate`) and claims read back from ``claims.json``:
each figure, tolerance, sample size and reason pinned on hand-made claims."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lfxai.metrics.significance import sign_flip_p
from lfxai.metrics.verdicts import (
    Claim,
    Point,
    aggregate,
    claim_metrics,
    claims_markdown,
    deciding_figure,
    epochs_label,
    evidence_text,
    fmt,
    judge,
)

RULE = (
    "over {n} runs: sign flips of the per-run margins; tolerance = the larger of the runs' "
    "tolerance and the standard deviation of their margins"
)


def _run(margins: dict[str, float], tolerance: float = 0.01, kind: str = "above") -> Claim:
    """One run's claim ``c`` with a figure per label: its margin, tolerance and two values."""
    figures = [
        {
            "at": label,
            "ours": 0.5 + margin,
            "random": 0.5,
            "note": "text",  # not a number: not averaged
            "flag": True,  # a bool is an int: averaged like one
            "margin": margin,
            "tolerance": tolerance,
            "n": 1,
            "p_value": None,
            "verdict": "inconclusive",
        }
        for label, margin in margins.items()
    ]
    return Claim("c", "s", "paper", "Section 1", "u", "r", figures, "inconclusive", "", kind)


def test_each_point_averages_its_runs_and_tests_their_margins_by_sign_flips():
    margins = [0.10, 0.12, 0.14, 0.16, 0.18]
    runs = [[_run({"k = 5%": m, "k = 10%": -m}, tolerance=0.001)] for m in margins]
    (claim,) = aggregate(runs)
    assert (claim.key, claim.statement, claim.section, claim.unit) == ("c", "s", "Section 1", "u")
    assert claim.rule == RULE.format(n=5)
    first, second = claim.figures
    spread = float(np.std(margins, ddof=1))
    assert first == {
        "at": "k = 5%",
        "ours": pytest.approx(0.64),
        "random": 0.5,
        "flag": 1.0,
        "spread": pytest.approx(spread),
        "margin": pytest.approx(0.14),
        "tolerance": pytest.approx(spread),  # the spread is above the runs' tolerance
        "n": 5,
        "p_value": pytest.approx(sign_flip_p(np.array(margins), spread, "greater")),
        "verdict": "holds",
    }
    assert first["p_value"] == pytest.approx(1 / 32)
    assert second["at"] == "k = 10%" and second["margin"] == pytest.approx(-0.14)
    assert second["p_value"] == pytest.approx(1 / 32)  # tested towards "less"
    assert second["verdict"] == "inconclusive"  # 1/32 is not below 0.05 / 2 points
    assert claim.verdict == "inconclusive"


def test_the_runs_tolerance_counts_when_their_margins_agree():
    runs = [[_run({"beta = 2": 0.2}, tolerance=0.05, kind="at_least")] for _ in range(5)]
    (claim,) = aggregate(runs)
    (figure,) = claim.figures
    assert figure["spread"] == 0.0 and figure["tolerance"] == pytest.approx(0.05)
    assert claim.kind == "at_least" and claim.verdict == "holds"


def test_one_run_has_no_spread_and_too_few_runs_say_so():
    (claim,) = aggregate([[_run({"k = 5%": 0.3}, tolerance=0.02)]])
    (figure,) = claim.figures
    assert figure["spread"] == 0.0 and figure["tolerance"] == pytest.approx(0.02)
    assert claim.rule == RULE.format(n=1)
    assert claim.reason == "k = 5%: n = 1 (runs); the test needs at least 5"
    (two,) = aggregate([[_run({"k = 5%": 0.3})], [_run({"k = 5%": 0.5})]])
    assert two.figures[0]["spread"] == pytest.approx(np.std([0.3, 0.5], ddof=1))
    assert two.reason == "k = 5%: n = 2 (runs); the test needs at least 5"


def test_points_missing_from_some_runs_use_the_runs_that_have_them():
    runs = [[_run({"a": 0.1, "b": 0.2})], [_run({"b": 0.4, "c": 0.3})]]
    (claim,) = aggregate(runs)
    assert [(f["at"], f["n"]) for f in claim.figures] == [("a", 1), ("b", 2), ("c", 1)]
    assert claim.figures[1]["margin"] == pytest.approx(0.3)


def test_a_claim_untested_in_every_run_keeps_the_first_runs_reason():
    untested = judge("c", "s", "Section 1", "u", "r", [], untested="no Random in this run")
    (claim,) = aggregate([[untested], [untested]])
    assert claim.verdict == "untested" and claim.reason == "no Random in this run"
    silent = Claim("c", "s", "paper", "Section 1", "u", "r")  # untested, no reason given
    (claim,) = aggregate([[silent]])
    assert claim.verdict == "untested" and claim.reason == "untested in every run"


def test_claims_keep_the_first_runs_order_and_each_its_own_runs():
    one = [_run({"k": 0.1}), Claim("d", "t", "paper", "Section 2", "v", "r")]
    (c, d) = aggregate([one, [one[1], one[0]]])
    assert (c.key, d.key) == ("c", "d") and c.rule == RULE.format(n=2)


def test_a_claim_reads_back_from_its_dict_with_defaults_for_what_is_missing():
    claim = _run({"k = 5%": 0.2}, kind="at_least")
    assert Claim.from_dict(claim.to_dict()) == claim
    bare = Claim.from_dict({"key": "c", "figures": ({"at": "x"},)})
    assert bare == Claim("c", "", "", "", "", "", [{"at": "x"}], "", "", "above")


def test_each_tested_claim_has_its_metrics_and_no_claim_says_so_in_markdown():
    holds = Claim("h", "s", "paper", "Section 1", "u", "r", [], "holds")
    fails = Claim("f", "s", "paper", "Section 1", "u", "r", [], "fails")
    metrics = claim_metrics([holds, fails])
    assert metrics["claims/holds/h"] == 1.0 and metrics["claims/holds/f"] == 0.0
    assert metrics["claims/verdict/h"] == 1.0 and metrics["claims/verdict/f"] == -1.0
    assert metrics["claims/all_hold"] == 0.0
    lines = claims_markdown([], "T").splitlines()
    assert lines[:5] == [
        "### Claims: T",
        "",
        "| verdict | paper | claim | margin at the deciding point | test |",
        "|---|---|---|---|---|",
        "| untested | | (no claim applies to this run's methods) | | |",
    ]


def test_numbers_are_spelt_in_significant_digits_with_nan_and_none_named():
    assert (fmt(None), fmt(math.nan), fmt(0.123456), fmt(0.123456, 2)) == (
        "-",
        "nan",
        "0.1235",
        "0.12",
    )


def _figure(at: str, verdict: str, p: float | None, margin: float = 0.1) -> dict:
    return {"at": at, "margin": margin, "tolerance": 0.01, "n": 8, "p_value": p, "verdict": verdict}


def test_the_deciding_point_is_the_first_failing_then_undecided_then_weakest():
    def claim(*figures):
        return Claim("c", "s", "paper", "S", "u", "r", list(figures), "holds")

    held = [_figure("a", "holds", 0.01), _figure("b", "holds", 0.04), _figure("c", "holds", None)]
    assert deciding_figure(claim(*held))["at"] == "b"  # the largest p-value; None counts as 0
    undecided = [*held, _figure("d", "inconclusive", 0.2), _figure("e", "inconclusive", 0.3)]
    assert deciding_figure(claim(*undecided))["at"] == "d"
    failed = [*undecided, _figure("f", "fails", 0.001), _figure("g", "fails", 0.002)]
    assert deciding_figure(claim(*failed))["at"] == "f"
    assert deciding_figure(claim()) is None


def test_the_evidence_names_margin_tolerance_sample_p_and_the_reason_unless_it_holds():
    figures = [_figure("k = 5%", "fails", 0.004)]
    fails = Claim("c", "s", "paper", "S", "Pearson r", "r", figures, "fails", "fails at k = 5%")
    assert evidence_text(fails) == (
        "0.1 Pearson r at k = 5% (tolerance ±0.01)",
        "n = 8, p = 0.004; fails at k = 5%",
    )
    untested_point = _figure("k = 5%", "inconclusive", None)
    small = Claim("c", "s", "paper", "S", "u", "r", [untested_point], "inconclusive", "n = 1")
    assert evidence_text(small) == ("0.1 u at k = 5% (tolerance ±0.01)", "n = 1")
    holds = Claim("c", "s", "paper", "S", "u", "r", [_figure("x", "holds", 0.01)], "holds", "x")
    assert evidence_text(holds)[1] == "n = 8, p = 0.01"  # a holding claim's reason is not shown
    untested = Claim("c", "s", "paper", "S", "u", "r", [], "untested", "no Random")
    assert evidence_text(untested) == ("", "no Random")


@pytest.mark.parametrize(
    ("params", "metrics", "label"),
    [
        ({"config.pretrained": "True", "config.n_epochs": "5"}, {}, "pretrained encoder"),
        ({}, {}, "epochs not logged"),
        ({"config.n_epochs": "1"}, {}, "1 epoch"),
        ({"config.n_epochs": "10.0"}, {"fit/epochs": 4.0}, "10 epochs, stopped early after 4"),
        ({"config.n_epochs": "10"}, {"fit/epochs": 10.0}, "10 epochs"),
        (  # the models are nested runs that may stop early
            {"config.n_epochs": "10", "config.patience": "3"},
            {},
            "up to 10 epochs per model (early stopping)",
        ),
        ({"config.n_epochs": "10", "config.patience": "0"}, {}, "10 epochs"),
        (  # a patience of one epoch stops early too
            {"config.n_epochs": "10", "config.patience": "1"},
            {},
            "up to 10 epochs per model (early stopping)",
        ),
        ({"config.n_epochs": "10"}, {}, "10 epochs"),  # no patience logged: none
        (
            {"config.n_epochs": "2", "config.patience": "3"},
            {},
            "up to 2 epochs per model (early stopping)",
        ),
        ({"config.n_epochs": "1", "config.patience": "3"}, {}, "1 epoch"),  # nothing to stop
        ({"config.n_epochs": "10", "config.patience": "3"}, {"fit/epochs": 10.0}, "10 epochs"),
    ],
)
def test_the_epochs_label_says_how_long_the_model_trained(params, metrics, label):
    assert epochs_label(params, metrics) == label


@pytest.mark.parametrize(
    ("kind", "margin", "direction", "threshold", "alternative"),
    [
        ("above", 0.05, "holds", 0.01, "greater"),  # beyond the tolerance, upwards
        ("above", -0.05, "fails", -0.01, "less"),  # beyond the tolerance, downwards
        ("at_least", 0.0, "holds", -0.01, "greater"),  # no worse than the tolerance
        ("at_least", -0.05, "fails", -0.01, "less"),
    ],
)
def test_each_point_is_tested_against_its_own_side_of_the_tolerance(
    kind, margin, direction, threshold, alternative
):
    asked = []

    def p_value(at: float, towards: str) -> float:
        asked.append((at, towards))
        return 0.001

    point = Point("k = 5%", {}, margin, 0.01, 10, 5, p_value)
    claim = judge("c", "s", "Section 1", "u", "r", [point], kind=kind)
    assert asked == [(threshold, alternative)]
    assert claim.verdict == direction
    assert claim.figures[0]["p_value"] == 0.001


def test_a_margin_within_the_tolerance_of_an_above_claim_is_not_tested():
    point = Point("k = 5%", {}, 0.01, 0.01, 10, 5, lambda *_: pytest.fail("tested"))
    claim = judge("c", "s", "Section 1", "u", "r", [point])
    assert claim.verdict == "inconclusive"
    assert claim.reason == "k = 5%: margin 0.01 within the tolerance ±0.01"


def _point(label: str, margin: float, p: float, tolerance: float = 0.01) -> Point:
    return Point(label, {}, margin, tolerance, 10, 5, lambda *_: p)


def test_an_unknown_claim_kind_is_refused_naming_the_valid_ones():
    with pytest.raises(
        ValueError, match=r"^unknown claim kind 'below'; valid: \['above', 'at_least'\]$"
    ):
        judge("c", "s", "Section 1", "u", "r", [], kind="below")


def test_a_claim_is_untested_with_nothing_to_compare_or_a_reason_whatever_its_points():
    empty = judge("c", "s", "Section 1", "u", "r", [])
    assert (empty.verdict, empty.reason, empty.figures) == ("untested", "nothing to compare", [])
    given = judge("c", "s", "Section 1", "u", "r", [_point("k", 1.0, 0.0)], untested="no run")
    assert (given.verdict, given.reason, given.figures) == ("untested", "no run", [])


def test_a_p_value_at_the_level_is_not_below_it():
    # 0.05 holds at p < 0.05; failing needs p < 0.05 / m (Bonferroni over the m points).
    holding = judge("c", "s", "S", "u", "r", [_point("a", 0.5, 0.05), _point("b", 0.5, 0.0123456)])
    assert holding.verdict == "inconclusive"
    assert holding.reason == "a: p = 0.05 is not below 0.05"
    assert [f["verdict"] for f in holding.figures] == ["inconclusive", "holds"]
    failing = judge("c", "s", "S", "u", "r", [_point("a", -0.5, 0.025), _point("b", 0.5, 0.001)])
    assert failing.verdict == "inconclusive"
    assert failing.reason == "a: p = 0.025 is not below 0.05/2"
    alone = judge("c", "s", "S", "u", "r", [_point("a", -0.5, 0.0498765)])
    assert (alone.verdict, alone.reason) == ("fails", "fails at a (p = 0.0499)")
    alone = judge("c", "s", "S", "u", "r", [_point("a", -0.5, 0.05)])
    assert (alone.verdict, alone.reason) == ("inconclusive", "a: p = 0.05 is not below 0.05")
    above = judge("c", "s", "S", "u", "r", [_point("a", 0.5, 0.0512345)])
    assert above.reason == "a: p = 0.0512 is not below 0.05"  # three significant digits


def test_reasons_list_every_failing_point_and_the_points_sharing_a_reason():
    points = [_point("a", -0.5, 0.001234), _point("b", -0.5, 0.0005), _point("c", 0.5, 0.001)]
    failed = judge("c", "s", "S", "u", "r", points)
    assert failed.reason == "fails at a (p = 0.00123), b (p = 0.0005)"
    points = [_point("a", 0.005, 0.0), _point("b", 0.5, 0.001), _point("c", 0.005, 0.0)]
    within = judge("c", "s", "S", "u", "r", points)
    assert within.reason == "a, c: margin 0.005 within the tolerance ±0.01"
    assert judge("c", "s", "S", "u", "r", [points[0], points[2]]).reason == (
        "every point: margin 0.005 within the tolerance ±0.01"
    )
    points[2] = _point("c", -0.005, 0.0)  # another margin: another reason
    assert judge("c", "s", "S", "u", "r", [points[0], points[2]]).reason == (
        "a: margin 0.005 within the tolerance ±0.01; c: margin -0.005 within the tolerance ±0.01"
    )


def test_all_hold_is_one_only_when_every_tested_claim_holds():
    holds = judge("h", "s", "S", "u", "r", [_point("a", 0.5, 0.001)])
    open_ = judge("o", "s", "S", "u", "r", [_point("a", 0.5, 0.5)])
    untested = judge("u", "s", "S", "u", "r", [])
    assert claim_metrics([holds, untested])["claims/all_hold"] == 1.0
    assert claim_metrics([holds, open_])["claims/all_hold"] == 0.0
    assert "claims/all_hold" not in claim_metrics([untested])


def test_the_evidence_gives_p_in_three_significant_digits():
    claim = judge("c", "s", "S", "u", "r", [_point("k = 5%", 0.5, 0.0123456)])
    assert evidence_text(claim) == ("0.5 u at k = 5% (tolerance ±0.01)", "n = 10, p = 0.0123")


def test_a_claim_read_back_without_figures_has_none():
    data = judge("c", "s", "S", "u", "r", [_point("a", 0.5, 0.001)]).to_dict()
    del data["figures"]
    assert Claim.from_dict(data).figures == []
