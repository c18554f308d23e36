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


def test_the_parent_run_reports_the_study_as_it_stands(sweep_env, tmp_path):
    import mlflow

    from lfxai.sweep.objective import PARETO_TAG, RUN_ATTR
    from lfxai.sweep.optimize import optimize
    from lfxai.sweep.report import BEST_RUNS_TAG, log_report, trials_table
    from tests.sweep.fakes import FakeTrain, in_process_objective

    train = FakeTrain()
    train.raise_at = (1, RuntimeError("trial 1 breaks"))
    objective, study, _ = in_process_objective(train, n_startup_trials="5")
    optimize(study, objective, 5)
    parent, config = objective.parent, objective.config
    summary = log_report(parent, study, config, "MNIST sweep")

    table = trials_table(study, config)
    assert table["number"].tolist() == [0, 1, 2, 3, 4]
    assert table["state"].tolist() == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]
    done = table[table["state"] == "COMPLETE"]
    for _, row in done.iterrows():
        trial = study.trials[row["number"]]
        assert (row["loss"], row["beta"], row["dim_latent"]) == tuple(trial.params.values())
        assert row["objective/pearson"] == trial.values[0] == row["pearson"]
        assert row["objective/test_reconstruction"] == trial.values[1]
        assert row["run_id"] == trial.user_attrs[RUN_ATTR]
        assert row["parent_run_id"] == parent.run_id and row["duration_s"] >= 0
    assert table["retry_of"].isna().all()
    front = {t.number for t in study.best_trials}
    assert set(table.loc[table["pareto"], "number"]) == front

    client = mlflow.MlflowClient()

    def artifact(path: str) -> pd.DataFrame:
        return pd.read_csv(client.download_artifacts(parent.run_id, path, str(tmp_path)))

    assert artifact("trials.csv")["number"].tolist() == [0, 1, 2, 3, 4]
    best = artifact("best_trials.csv")
    assert set(best["number"]) == front
    run = client.get_run(parent.run_id)
    best_ids = [study.trials[n].user_attrs[RUN_ATTR] for n in sorted(front)]
    assert sorted(run.data.tags[BEST_RUNS_TAG].split(",")) == sorted(best_ids)
    for number, trial in enumerate(study.trials):
        if number == 1:
            continue
        tags = client.get_run(trial.user_attrs[RUN_ATTR]).data.tags
        assert (tags.get(PARETO_TAG) == "true") == (number in front)
    metrics = run.data.metrics
    assert metrics["trials/complete"] == 4 and metrics["trials/fail"] == 1
    assert metrics["best/pearson"] == min(study.trials[n].values[0] for n in front)
    assert metrics["best/test_reconstruction"] == min(study.trials[n].values[1] for n in front)
    assert summary["trials"] == {"COMPLETE": 4, "FAIL": 1}
    assert sorted(summary["best_run_ids"]) == sorted(best_ids)
    artifacts = {a.path for a in client.list_artifacts(parent.run_id)}
    assert {"trials.csv", "best_trials.csv", "pareto.png", "claims.json", "claims.md"} <= artifacts
    optuna_plots = {a.path for a in client.list_artifacts(parent.run_id, "optuna")}
    assert "optuna/pareto_front.png" in optuna_plots
    assert "optuna/history_pearson.png" in optuna_plots
    assert {c.key for c in summary["claims"]} >= {"correlation_not_falling/all/pearson"}
    assert any(k.startswith("claims/") for k in metrics)
