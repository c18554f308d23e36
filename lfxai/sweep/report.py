"""What the parent run of a sweep logs: the trials, the best ones, figures and claims.

Everything is computed from the study (all its trials so far, from every invocation and
worker), so each invocation's parent run reports the study as it stands when it ends.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
import pandas as pd
from matplotlib import pyplot as plt
from scipy import stats

from lfxai.metrics.claims import DISVAE_PAPER, Claim, claim_metrics
from lfxai.plotting.sweep import pareto_figure
from lfxai.sweep.objective import (
    METRICS_ATTR,
    PARENT_ATTR,
    PARETO_TAG,
    RUN_ATTR,
)
from lfxai.sweep.settings import SweepConfig
from lfxai.sweep.study import retried_from
from lfxai.tracking import Tracker

CORRELATIONS = ("pearson", "spearman")  # saliency metrics whose trend with beta is claimed
MIN_CLAIM_TRIALS = 3  # a rank correlation over fewer points says nothing
SIGNIFICANCE = 0.05
BEST_RUNS_TAG = "lfxai.best_run_ids"
MIN_IMPORTANCE_TRIALS = 2  # Optuna's importance needs completed trials that differ


def trials_table(study: optuna.Study, config: SweepConfig) -> pd.DataFrame:
    """One row per trial: number, state, parameters, objective values, final metrics,
    runs, retry, duration, and whether it is among the best trials (``pareto``)."""
    best = {t.number for t in best_trials(study)}
    rows = []
    for trial in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": trial.number, "state": trial.state.name}
        row.update(trial.params)
        for name, value in zip(config.value_names, trial.values or [], strict=False):
            row[f"objective/{name}"] = value
        row.update(trial.user_attrs.get(METRICS_ATTR) or {})
        row["run_id"] = trial.user_attrs.get(RUN_ATTR)
        row["parent_run_id"] = trial.user_attrs.get(PARENT_ATTR)
        row["retry_of"] = retried_from(trial)
        duration = trial.duration
        row["duration_s"] = duration.total_seconds() if duration is not None else None
        row["pareto"] = trial.number in best
        rows.append(row)
    frame = pd.DataFrame(rows)
    if "retry_of" in frame:
        frame["retry_of"] = frame["retry_of"].astype("Int64")  # trial numbers, blank if none
    return frame


def best_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The Pareto front (multi-objective) or the best trial; empty before any completes."""
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return []
    if len(study.directions) > 1:
        return study.best_trials
    return [study.best_trial]


def beta_claims(table: pd.DataFrame) -> list[Claim]:
    """Whether the saliency correlation falls as beta grows, over the completed trials.

    Spearman's rank correlation between beta and each correlation metric of the units'
    saliency maps (mean Pearson, mean Spearman), over all losses and per loss. The paper's
    claim (a larger beta does not make the maps less correlated; the ``disvae`` experiment
    checks it at three betas) holds unless the metric falls significantly with beta
    (rho < 0 at p < 0.05).
    """
    claims = []
    done = table[table["state"] == "COMPLETE"] if "state" in table else table
    groups: list[tuple[str, pd.DataFrame]] = [("all", done)]
    if "loss" in done and done["loss"].nunique() > 1:
        groups += [(str(k), g) for k, g in done.groupby("loss", sort=True)]
    for name, group in groups:
        for metric in CORRELATIONS:
            key = f"correlation_not_falling/{name}/{metric}"
            losses = "every loss" if name == "all" else name
            statement = (
                f"Across the sweep ({losses}), a larger beta does not make the latent units' "
                f"saliency maps less correlated (Spearman's rho of beta vs. mean {metric} "
                f"not significantly negative, p < {SIGNIFICANCE})."
            )
            claims.append(_trend_claim(key, statement, group, metric))
    return claims


def _trend_claim(key: str, statement: str, group: pd.DataFrame, metric: str) -> Claim:
    reference = f"{DISVAE_PAPER} (disentangled VAEs), over a sweep of beta"
    if metric not in group or "beta" not in group:
        return Claim(key, statement, reference, reason="no completed trial")
    finite = group[np.isfinite(group[metric].astype(float))]
    if len(finite) < MIN_CLAIM_TRIALS or finite["beta"].nunique() < 2:
        reason = f"{len(finite)} completed trials with a finite {metric} (need {MIN_CLAIM_TRIALS})"
        return Claim(key, statement, reference, reason=reason)
    rho, p_value = stats.spearmanr(finite["beta"], finite[metric])
    rho, p_value = float(rho), float(p_value)
    if math.isnan(rho):  # e.g. a constant metric
        return Claim(key, statement, reference, reason=f"rho undefined ({metric} constant)")
    falls = rho < 0 and p_value < SIGNIFICANCE
    figures = [{"rho": rho, "p_value": p_value, "n": float(len(finite)), "margin": rho}]
    reason = f"falls with beta (rho = {rho:.3g}, p = {p_value:.3g})" if falls else ""
    return Claim(key, statement, reference, figures, holds=not falls, reason=reason)


def claims_markdown(claims: list[Claim], title: str) -> str:
    """One line per claim: verdict, statement, Spearman's rho, p and the number of trials."""
    lines = [f"### Claims: {title}", "", "| verdict | claim | evidence |", "|---|---|---|"]
    for claim in claims:
        if claim.figures:
            f = claim.figures[0]
            evidence = f"rho = {f['rho']:.3g}, p = {f['p_value']:.3g}, n = {f['n']:g}"
        else:
            evidence = claim.reason
        lines.append(f"| **{claim.verdict}** | {claim.statement} | {evidence} |")
    return "\n".join(lines) + "\n"


def _optuna_figures(study: optuna.Study, config: SweepConfig) -> dict[str, Callable[[], Any]]:
    from optuna.visualization import matplotlib as ovm

    names = config.value_names
    figures: dict[str, Callable[[], Any]] = {}
    if len(names) > 1:
        figures["pareto_front"] = lambda: ovm.plot_pareto_front(study, target_names=names)
    for i, name in enumerate(names):
        target = (lambda t, i=i: t.values[i]) if len(names) > 1 else None
        figures[f"history_{name}"] = lambda target=target, name=name: ovm.plot_optimization_history(
            study, target=target, target_name=name
        )
        figures[f"importance_{name}"] = lambda target=target, name=name: ovm.plot_param_importances(
            study, target=target, target_name=name
        )
    return figures


def log_optuna_figures(tracker: Tracker, study: optuna.Study, config: SweepConfig) -> list[str]:
    """Optuna's own plots (matplotlib backend) under ``optuna/``; returns notes on those
    skipped (too few trials), also logged as ``optuna/skipped.txt``."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    notes = []
    for name, draw in _optuna_figures(study, config).items():
        if name.startswith("importance") and len(complete) < MIN_IMPORTANCE_TRIALS:
            notes.append(f"{name}: skipped, {len(complete)} completed trials (need 2)")
            continue
        if not complete:
            notes.append(f"{name}: skipped, no completed trial")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's matplotlib backend is experimental
                axes = draw()
            figure = np.ravel(axes)[0].figure
        except Exception as error:  # e.g. every completed trial has the same parameters
            notes.append(f"{name}: skipped ({type(error).__name__}: {error})")
            continue
        tracker.log_figure(figure, f"optuna/{name}")
        plt.close(figure)
    if notes:
        tracker.log_text("\n".join(notes) + "\n", "optuna/skipped.txt")
    return notes


def log_report(
    tracker: Tracker, study: optuna.Study, config: SweepConfig, title: str
) -> dict[str, Any]:
    """Logs the parent run's tables, figures, best run ids and claims; returns a summary.

    Logged: ``trials.csv`` (every trial), ``best_trials.csv`` (the Pareto front or the
    best trial), ``pareto.png/pdf`` (the trade-off), Optuna's plots, ``claims.json`` /
    ``claims.md`` and the metrics ``trials/<state>``, ``best/<objective>``, ``claims/*``.
    """
    table = trials_table(study, config)
    tracker.log_table(table, "trials.csv")
    counts = table["state"].value_counts().to_dict() if len(table) else {}
    metrics = {f"trials/{state.lower()}": float(n) for state, n in counts.items()}
    best = table[table["pareto"]] if len(table) else table
    tracker.log_table(best, "best_trials.csv")
    run_ids = [r for r in best.get("run_id", pd.Series(dtype=object)).tolist() if r]
    if run_ids:
        tracker.set_tags({BEST_RUNS_TAG: ",".join(run_ids)})
        for run_id in run_ids:
            Tracker(run_id).set_tags({PARETO_TAG: "true"})
    for name in config.value_names:
        column = f"objective/{name}"
        if column in best and len(best):
            metrics[f"best/{name}"] = float(best[column].min())
    complete = table[table["state"] == "COMPLETE"] if len(table) else table
    x, y = (config.value_names + ["test_reconstruction"])[:2]
    if len(complete) and {x, y, "beta", "loss"} <= set(complete):
        figure = pareto_figure(complete, x, y, title=title)
        tracker.log_figure(figure, "pareto")
        plt.close(figure)
    notes = log_optuna_figures(tracker, study, config)
    claims = beta_claims(table if len(table) else pd.DataFrame({"state": []}))
    report = {"title": title, "claims": [c.to_dict() for c in claims]}
    tracker.log_text(json.dumps(report, indent=2, allow_nan=True), "claims.json")
    markdown = claims_markdown(claims, title)
    tracker.log_text(markdown, "claims.md")
    metrics.update(claim_metrics(claims))
    tracker.log_metrics(metrics)
    tracker.append_description(markdown)
    return {"trials": counts, "best_run_ids": run_ids, "claims": claims, "notes": notes}
