"""The sweep report's pieces on in-memory studies and a recording tracker (no store).

Which trials are best, what each table row holds, which Optuna plots are drawn or skipped
(and why), and what the parent run is given, for both objectives.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from lfxai.sweep.objective import METRICS_ATTR, PARENT_ATTR
from lfxai.sweep.report import (
    best_trials,
    log_optuna_figures,
    log_report,
    trials_table,
)
from lfxai.sweep.settings import load_sweep_config
from lfxai.sweep.study import fail_and_requeue

DISTRIBUTIONS = {
    "loss": CategoricalDistribution(["beta_vae", "beta_tc_vae"]),
    "beta": FloatDistribution(0.5, 20.0, log=True),
    "dim_latent": IntDistribution(2, 10),
}


def _config(objective: str = "pareto"):
    config = load_sweep_config("mnist", "smoke", {"n_trials": "3"})
    return dataclasses.replace(config, objective=objective)


def _study(
    config, trials: list[tuple[TrialState, float, list[float] | None]], **metrics: float
) -> optuna.Study:
    """A study of ``(state, beta, values)`` trials, each with metrics and a parent run."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=config.directions)
    for number, (state, beta, values) in enumerate(trials):
        params = {"loss": "beta_vae", "beta": beta, "dim_latent": 2 + number}
        attrs = {PARENT_ATTR: "parent"}
        if values is not None:
            attrs[METRICS_ATTR] = {"pearson": values[0], "active_units": 2.0, **metrics}
        study.add_trial(
            create_trial(
                state=state,
                params=params,
                distributions=DISTRIBUTIONS,
                values=values if state == TrialState.COMPLETE else None,
                user_attrs=attrs,
            )
        )
    return study


@dataclass
class RecordingTracker:
    """What the report logs: tables, figures, texts, tags, metrics, description."""

    run_params: dict[str, str] = field(default_factory=dict)
    run_tags: dict[str, str] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    description: list[str] = field(default_factory=list)

    def log_table(self, table: pd.DataFrame, path: str) -> None:
        self.tables[path] = table.copy()

    def log_figure(self, figure: Any, path: str) -> None:
        self.figures.append(path)

    def log_text(self, text: str, path: str) -> None:
        self.texts[path] = text

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.run_tags.update({k: str(v) for k, v in tags.items()})

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        self.metrics.update(metrics)

    def params(self) -> dict[str, str]:
        return dict(self.run_params)

    def tags(self) -> dict[str, str]:
        return dict(self.run_tags)

    def append_description(self, text: str) -> None:
        self.description.append(text)


COMPLETE, FAIL, PRUNED = TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED


def test_the_best_trials_are_the_front_or_the_single_best_and_none_before_any_completes():
    pareto = _config()
    assert best_trials(_study(pareto, [(FAIL, 1.0, None)])) == []
    study = _study(
        pareto,
        [(COMPLETE, 1.0, [0.5, 10.0]), (COMPLETE, 2.0, [0.2, 30.0]), (COMPLETE, 4.0, [0.6, 40.0])],
    )
    assert sorted(t.number for t in best_trials(study)) == [0, 1]  # 2 is dominated by 0
    single = _config("correlation")
    study = _study(single, [(COMPLETE, 1.0, [0.5]), (COMPLETE, 2.0, [0.2]), (PRUNED, 3.0, None)])
    assert [t.number for t in best_trials(study)] == [1]


def test_a_trials_row_holds_its_values_metrics_runs_retry_and_duration():
    config = _config("correlation")
    study = _study(config, [(COMPLETE, 1.0, [0.5]), (FAIL, 2.0, None)])
    interrupted = study.ask(fixed_distributions=DISTRIBUTIONS)
    fail_and_requeue(study, interrupted, max_retry=1)  # trial 3 waits, a retry of 2
    table = trials_table(study, config)
    assert table["number"].tolist() == [0, 1, 2, 3]
    assert table["state"].tolist() == ["COMPLETE", "FAIL", "FAIL", "WAITING"]
    assert table["objective/pearson"].tolist()[0] == 0.5
    assert pd.isna(table["objective/pearson"].tolist()[1])
    assert "objective/test_reconstruction" not in table  # one objective: one value column
    assert table["pearson"].tolist()[0] == 0.5 and table["active_units"].tolist()[0] == 2.0
    assert table["parent_run_id"].tolist()[:2] == ["parent", "parent"]
    assert table["run_id"].isna().all()  # no trial was linked to a run
    assert str(table["retry_of"].dtype) == "Int64"
    assert table["retry_of"].tolist()[:3] == [pd.NA] * 3 and table["retry_of"].tolist()[3] == 2
    assert table["pareto"].tolist() == [True, False, False, False]
    assert table["duration_s"].tolist()[0] >= 0
    assert pd.isna(table["duration_s"].tolist()[3])  # never started: no duration


def test_optuna_plots_are_drawn_per_objective_value_or_skipped_with_the_reason():
    config = _config()
    none_done = _study(config, [(FAIL, 1.0, None)])
    tracker = RecordingTracker()
    notes = log_optuna_figures(tracker, none_done, config)
    assert notes == [
        "pareto_front: skipped, no completed trial",
        "history_pearson: skipped, no completed trial",
        "importance_pearson: skipped, 0 completed trials (need 2)",
        "history_test_reconstruction: skipped, no completed trial",
        "importance_test_reconstruction: skipped, 0 completed trials (need 2)",
    ]
    assert tracker.figures == [] and tracker.texts == {
        "optuna/skipped.txt": "\n".join(notes) + "\n"
    }

    one_done = _study(config, [(COMPLETE, 1.0, [0.5, 10.0])])
    tracker = RecordingTracker()
    notes = log_optuna_figures(tracker, one_done, config)
    assert tracker.figures == [
        "optuna/pareto_front",
        "optuna/history_pearson",
        "optuna/history_test_reconstruction",
    ]
    assert notes == [
        "importance_pearson: skipped, 1 completed trials (need 2)",
        "importance_test_reconstruction: skipped, 1 completed trials (need 2)",
    ]


def test_a_single_objective_sweep_plots_its_history_and_importance_and_notes_nothing():
    config = _config("correlation")
    study = _study(config, [(COMPLETE, 1.0, [0.5]), (COMPLETE, 4.0, [0.3]), (COMPLETE, 9.0, [0.4])])
    tracker = RecordingTracker()
    assert log_optuna_figures(tracker, study, config) == []
    assert tracker.figures == ["optuna/history_pearson", "optuna/importance_pearson"]
    assert tracker.texts == {}  # no skipped.txt when nothing was skipped


def test_a_plot_optuna_cannot_draw_is_noted_with_its_error(monkeypatch):
    config = _config("correlation")
    study = _study(config, [(COMPLETE, 1.0, [0.5]), (COMPLETE, 4.0, [0.3])])
    from optuna.visualization import matplotlib as ovm

    def broken(*args, **kwargs):
        raise ValueError("no variance")

    monkeypatch.setattr(ovm, "plot_param_importances", broken)
    tracker = RecordingTracker()
    notes = log_optuna_figures(tracker, study, config)
    assert notes == ["importance_pearson: skipped (ValueError: no variance)"]
    assert tracker.figures == ["optuna/history_pearson"]


def test_the_parent_run_of_an_empty_study_gets_tables_claims_and_no_best():
    config = _config()
    tracker = RecordingTracker({"trial.n_epochs": "2"}, {"lfxai.profile": "smoke"})
    summary = log_report(tracker, _study(config, []), config, "MNIST sweep")
    assert summary["trials"] == {} and summary["best_run_ids"] == []
    assert set(tracker.tables) == {"trials.csv", "best_trials.csv"}
    assert "lfxai.best_run_ids" not in tracker.run_tags
    assert not any(k.startswith(("trials/", "best/")) for k in tracker.metrics)
    report = json.loads(tracker.texts["claims.json"])
    assert report["title"].startswith("MNIST sweep") and "smoke" in report["title"]
    assert "2 epochs per trial" in report["title"]
    assert {c["verdict"] for c in report["claims"]} == {"untested"}
    assert tracker.description == [tracker.texts["claims.md"]]
    assert "pareto" not in tracker.figures


def test_the_parent_run_counts_states_and_takes_each_best_value_from_the_front():
    config = _config()
    study = _study(
        config,
        [
            (COMPLETE, 1.0, [0.5, 10.0]),
            (COMPLETE, 2.0, [0.2, 30.0]),
            (COMPLETE, 4.0, [0.6, 40.0]),  # dominated: its values are no best
            (FAIL, 8.0, None),
            (PRUNED, 16.0, None),
        ],
    )
    tracker = RecordingTracker({}, {"lfxai.profile": "quick"})
    summary = log_report(tracker, study, config, "MNIST sweep")
    assert summary["trials"] == {"COMPLETE": 3, "FAIL": 1, "PRUNED": 1}
    counts = {k: v for k, v in tracker.metrics.items() if k.startswith("trials/")}
    assert counts == {"trials/complete": 3.0, "trials/fail": 1.0, "trials/pruned": 1.0}
    assert tracker.metrics["best/pearson"] == 0.2
    assert tracker.metrics["best/test_reconstruction"] == 10.0
    assert tracker.tables["best_trials.csv"]["number"].tolist() == [0, 1]
    assert len(tracker.tables["trials.csv"]) == 5


@pytest.mark.parametrize("with_reconstruction", [True, False])
def test_the_trade_off_figure_is_drawn_from_the_metrics_pearson_and_reconstruction(
    with_reconstruction,
):
    config = _config("correlation")  # one objective value: the figure reads the metrics
    extra = {"test_reconstruction": 3.0} if with_reconstruction else {}
    study = _study(config, [(COMPLETE, 1.0, [0.5]), (COMPLETE, 2.0, [0.4])], **extra)
    tracker = RecordingTracker()
    log_report(tracker, study, config, "t")
    assert ("pareto" in tracker.figures) == with_reconstruction
