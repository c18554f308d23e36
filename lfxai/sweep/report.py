"""What the parent run of a sweep logs: the trials, the best ones, figures and claims.

Everything is computed from the study (all its trials so far, from every invocation and
worker), so each invocation's parent run reports the study as it stands when it ends.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
import pandas as pd
from matplotlib import pyplot as plt
from scipy import stats

from lfxai.metrics.claims import SECTION_DISVAE
from lfxai.metrics.significance import RESAMPLES, min_trend_n, spearman_rho, trend_p
from lfxai.metrics.verdicts import (
    Claim,
    Point,
    claim_metrics,
    claims_markdown,
    claims_title,
    epochs_label,
    judge,
)
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
SLOPE_TOLERANCE = 0.05  # correlation per tenfold beta: a smaller fall counts as level
BEST_RUNS_TAG = "lfxai.best_run_ids"
MIN_IMPORTANCE_TRIALS = 2  # Optuna's importance needs completed trials that differ


def trials_table(study: optuna.Study, config: SweepConfig) -> pd.DataFrame:
    """One row per trial: parameters, values, metrics, runs, and whether it is among the best.

    Also number, state, retry and duration; the best trials are marked ``pareto``.
    """
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
    """Whether the saliency correlation stays level or rises as beta grows.

    Over the completed trials, over all losses and per loss.

    The paper's claim (a larger beta does not make the maps of different latent units less
    correlated; the ``disvae`` experiment checks it at three betas) is tested on the trend of
    each correlation metric against log10(beta): the margin is the Theil-Sen slope per tenfold
    beta; the claim holds when a fall steeper than :data:`SLOPE_TOLERANCE` per tenfold beta is
    rejected (Spearman's rho of ``(log10 beta, metric + tolerance * log10 beta)`` above 0 by
    an exact or permutation test), fails when such a fall is significant, and is inconclusive
    otherwise or with fewer trials than an exact test needs to reach p < 0.05 (4).
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
                f"Across the sweep ({losses}), the mean {metric.capitalize()} correlation between "
                "the latent units' saliency maps stays level or rises as beta grows: any fall "
                f"is smaller than {SLOPE_TOLERANCE:g} per tenfold beta."
            )
            claims.append(_trend_claim(key, statement, group, metric))
    return claims


def _trend_claim(key: str, statement: str, group: pd.DataFrame, metric: str) -> Claim:
    section = f"{SECTION_DISVAE}, over a sweep of beta"
    unit = f"{metric.capitalize()} correlation per tenfold beta"
    rule = (
        f"tolerance: {SLOPE_TOLERANCE:g} per tenfold beta; sample: the completed trials; "
        "Theil-Sen slope against log10(beta); one-sided permutation test of Spearman's rho "
        f"(all n! pairings, or {RESAMPLES} random ones)"
    )
    if metric not in group or "beta" not in group:
        return judge(key, statement, section, unit, rule, [], "at_least", "no completed trial")
    finite = group[np.isfinite(group[metric].astype(float))]
    x = np.log10(finite["beta"].to_numpy(dtype=float))
    y = finite[metric].to_numpy(dtype=float)
    if len(finite) < 2 or np.ptp(x) == 0:
        untested = f"{len(finite)} completed trials with a finite {metric} and distinct betas"
        return judge(key, statement, section, unit, rule, [], "at_least", untested)
    slope = float(stats.theilslopes(y, x).slope)
    point = Point(
        "the sweep",
        {"rho": spearman_rho(x, y), "slope": slope},
        slope,
        SLOPE_TOLERANCE,
        len(finite),
        min_trend_n(),
        lambda t, a: trend_p(x, y, t, a),
        "completed trials",
    )
    return judge(key, statement, section, unit, rule, [point], "at_least")


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
    """Optuna's own plots (matplotlib backend) under ``optuna/``; notes on those skipped.

    Plots skipped for too few trials are noted, also in ``optuna/skipped.txt``.
    """
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
        for run_id in run_ids:  # and their registered encoders, which carry no alias
            best_run = Tracker(run_id)
            best_run.set_tags({PARETO_TAG: "true"})
            best_run.tag_model_versions({PARETO_TAG: "true"})
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
    base = {  # the trials' base settings, logged as trial.<key>
        f"config.{k.removeprefix('trial.')}": v
        for k, v in tracker.params().items()
        if k.startswith("trial.")
    }
    epochs = epochs_label(base, {})
    title = claims_title(title, tracker.tags().get("lfxai.profile", "?"), f"{epochs} per trial")
    report = {"title": title, "claims": [c.to_dict() for c in claims]}
    tracker.log_text(json.dumps(report, indent=2, allow_nan=True), "claims.json")
    markdown = claims_markdown(claims, title)
    tracker.log_text(markdown, "claims.md")
    metrics.update(claim_metrics(claims))
    tracker.log_metrics(metrics)
    tracker.append_description(markdown)
    return {"trials": counts, "best_run_ids": run_ids, "claims": claims, "notes": notes}
