"""The sweep's report: the beta claims' verdicts and the trade-off figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lfxai.metrics.verdicts import claims_markdown
from lfxai.plotting.sweep import pareto_figure
from lfxai.sweep.report import beta_claims


def table(pearson: list[float], losses: list[str] | None = None) -> pd.DataFrame:
    betas = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0][: len(pearson)]
    return pd.DataFrame(
        {
            "state": ["COMPLETE"] * len(pearson),
            "beta": betas,
            "loss": losses or ["beta_vae"] * len(pearson),
            "pearson": pearson,
            "spearman": pearson,
        }
    )


def verdicts(claims) -> dict[str, str]:
    return {c.key: c.verdict for c in claims}


def test_a_correlation_that_falls_significantly_with_beta_refutes_the_claim():
    claims = beta_claims(table([0.9, 0.8, 0.7, 0.6, 0.5, 0.4]))
    assert verdicts(claims)["correlation_not_falling/all/pearson"] == "fails"
    (claim,) = [c for c in claims if c.key == "correlation_not_falling/all/pearson"]
    (figure,) = claim.figures
    assert figure["rho"] == pytest.approx(-1.0)
    # beta doubles per trial, Pearson falls 0.1: 0.1 / log10(2) per tenfold beta
    assert figure["slope"] == pytest.approx(-0.1 / np.log10(2))
    assert figure["p_value"] == pytest.approx(1 / 720)  # exact: the one ordering of 6! pairings
    assert claim.reason == "fails at the sweep (p = 0.00139)"
    assert claim.unit == "Pearson correlation per tenfold beta" and claim.kind == "at_least"


def test_three_trials_are_too_few_even_when_perfectly_ordered():
    # the case: rho = -1 over 3 trials has the exact one-sided p 1/6, never below 0.05
    (claim, _) = beta_claims(table([0.9, 0.8, 0.7]))
    assert claim.verdict == "inconclusive"
    assert claim.reason == "the sweep: n = 3 (completed trials); the test needs at least 4"


def test_a_rising_or_flat_trend_holds_and_a_noisy_fall_is_inconclusive():
    assert set(verdicts(beta_claims(table([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]))).values()) == {"holds"}
    flat = beta_claims(table([0.5] * 6))[0]  # level: y + 0.05 log10(beta) rises with beta
    assert flat.verdict == "holds" and flat.figures[0]["slope"] == 0.0
    noisy = beta_claims(table([0.5, 0.6, 0.4, 0.3]))[0]
    assert noisy.verdict == "inconclusive" and noisy.reason.endswith("is not below 0.05")


def test_too_few_trials_nan_values_and_other_states_leave_it_untested():
    few = table([0.3, 0.2])
    assert set(verdicts(beta_claims(few)).values()) == {"inconclusive"}  # 2 trials: n < 4
    one = table([0.3])
    assert set(verdicts(beta_claims(one)).values()) == {"untested"}
    with_nan = table([0.3, np.nan, np.nan, np.nan])
    assert verdicts(beta_claims(with_nan))["correlation_not_falling/all/pearson"] == "untested"
    pruned = table([0.9, 0.8, 0.7, 0.6]).assign(state=["COMPLETE", "PRUNED", "FAIL", "FAIL"])
    assert set(verdicts(beta_claims(pruned)).values()) == {"untested"}
    assert beta_claims(pd.DataFrame({"state": []}))[0].verdict == "untested"


def test_claims_per_loss_when_the_sweep_has_several():
    losses = ["beta_vae", "beta_tc_vae"] * 3
    keys = set(verdicts(beta_claims(table([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], losses))))
    assert {
        "correlation_not_falling/beta_vae/pearson",
        "correlation_not_falling/beta_tc_vae/spearman",
    } <= keys
    markdown = claims_markdown(beta_claims(table([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])), "t")
    assert "| **fails** | Section 4.3 |" in markdown
    assert "per tenfold beta at the sweep (tolerance ±0.05) | n = 6, p = 0.00139" in markdown


def test_pareto_figure_draws_every_trial_and_the_front():
    frame = table([0.1, 0.2, 0.3, 0.4], ["beta_vae", "beta_tc_vae"] * 2)
    frame["test_reconstruction"] = [40.0, 30.0, 35.0, 20.0]
    frame["pareto"] = [True, True, False, True]
    figure = pareto_figure(frame, "pearson", "test_reconstruction", title="t")
    ax = figure.axes[0]
    points = sum(len(c.get_offsets()) for c in ax.collections)
    assert points == 4 + 3  # every trial, and a ring around each trial on the front
    assert [line.get_label() for line in ax.get_lines()] == ["Pareto front"]
