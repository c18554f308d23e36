"""The sweep's report: the beta claims' verdicts and the trade-off figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lfxai.plotting.sweep import pareto_figure
from lfxai.sweep.report import beta_claims, claims_markdown


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
    assert claim.figures[0]["rho"] == pytest.approx(-1.0)
    assert claim.figures[0]["p_value"] < 0.05 and "falls with beta" in claim.reason


def test_a_rising_or_flat_trend_keeps_the_claim():
    assert set(verdicts(beta_claims(table([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]))).values()) == {"holds"}
    # falling but not significantly (4 points, one out of order)
    assert verdicts(beta_claims(table([0.5, 0.6, 0.4, 0.3])))[
        "correlation_not_falling/all/pearson"
    ] == ("holds")


def test_too_few_trials_nan_values_and_other_states_leave_it_untested():
    few = table([0.3, 0.2])
    assert set(verdicts(beta_claims(few)).values()) == {"untested"}
    with_nan = table([0.3, np.nan, 0.2, np.nan])
    assert verdicts(beta_claims(with_nan))["correlation_not_falling/all/pearson"] == "untested"
    pruned = table([0.9, 0.8, 0.7, 0.6]).assign(state=["COMPLETE", "PRUNED", "FAIL", "COMPLETE"])
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
    assert "| **fails** |" in markdown and "rho = -1" in markdown


def test_pareto_figure_draws_every_trial_and_the_front():
    frame = table([0.1, 0.2, 0.3, 0.4], ["beta_vae", "beta_tc_vae"] * 2)
    frame["test_reconstruction"] = [40.0, 30.0, 35.0, 20.0]
    frame["pareto"] = [True, True, False, True]
    figure = pareto_figure(frame, "pearson", "test_reconstruction", title="t")
    ax = figure.axes[0]
    points = sum(len(c.get_offsets()) for c in ax.collections)
    assert points == 4 + 3  # every trial, and a ring around each trial on the front
    assert [line.get_label() for line in ax.get_lines()] == ["Pareto front"]
