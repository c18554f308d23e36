"""One trial of a sweep: sample a VAE, train and measure it in a nested MLflow run.

The training and measuring is a :class:`~lfxai.sweep.backend.TrialBackend`'s (the ``disvae``
experiment's ``train_and_measure``); this module only maps a trial to its settings, opens
the nested run, reports per-epoch values for pruning, and records what happened on both
sides (the run's id on the trial, the trial's number and study on the run).
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import optuna

from lfxai.config import BaseConfig
from lfxai.plugins import DatasetPlugin, Splits
from lfxai.sweep.backend import Sample, TrialBackend
from lfxai.sweep.settings import SweepConfig
from lfxai.sweep.study import fail_and_requeue, retried_from, running_trial
from lfxai.tracking import ERROR_TAG, STOPPED_TAG, Stopped, Tracker, error_text, terminate_run

TRIAL_TAG = "lfxai.trial_number"
STUDY_TAG = "lfxai.study_name"
RETRY_OF_TAG = "lfxai.retry_of"  # on a retry's run: the trial it retries
RETRIED_AS_TAG = "lfxai.retried_as"  # on a lost trial's run: the trial that retried it
PRUNED_TAG = "lfxai.pruned"  # on a pruned trial's run (KILLED): where and why
PARETO_TAG = "lfxai.pareto_optimal"  # on the runs of the best trials (set by the report)
RUN_ATTR = "mlflow_run_id"  # trial user attribute: the trial's nested run
PARENT_ATTR = "mlflow_parent_run_id"  # trial user attribute: the invocation that ran it
METRICS_ATTR = "metrics"  # trial user attribute: train_and_measure's final metrics
ERROR_ATTR = "error"  # trial user attribute: why it failed
# For tests only: "<point>:<file>" makes a trial touch <file> at <point> and wait there to be
# killed (SIGKILL at an exact point of a trial: `started`, before its run exists;
# `run_created`, its run made but not yet linked to the trial; `training`, at its first
# epoch's end). An environment variable, not a setting: settings are logged and compared.
HOLD_ENV = "LFXAI_TEST_HOLD"
HOLD_POINTS = ("started", "run_created", "training")


@dataclass
class SweepObjective:
    """Optuna's objective: one call per trial.

    Attributes:
        config: the sweep's settings.
        plugin: the data set's plugin.
        base: the trials' base settings (the ``disvae`` profile's; latent size replaced
            per trial).
        parent: the tracker of this invocation's parent run.
        splits: the data, loaded once per worker process.
        backend: what a trial trains and measures.
    """

    config: SweepConfig
    plugin: DatasetPlugin
    base: BaseConfig
    parent: Tracker
    splits: Splits
    backend: TrialBackend

    def suggest(self, trial: optuna.Trial) -> Sample:
        """The trial's loss, beta (log scale) and latent size."""
        loss = trial.suggest_categorical("loss", list(self.config.losses))
        beta = trial.suggest_float("beta", *self.config.beta_range, log=True)
        dim_latent = trial.suggest_int("dim_latent", *self.config.latent_range)
        return Sample(str(loss), beta, dim_latent)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        """Trains and measures the trial's model; the objective's values."""
        sample = self.suggest(trial)
        study_name = trial.study.study_name
        previous = retried_from(running_trial(trial))
        name = f"trial {trial.number} · {sample.loss} beta={sample.beta:.3g} d={sample.dim_latent}"
        trial.set_user_attr(PARENT_ATTR, self.parent.run_id)
        tags = {TRIAL_TAG: trial.number, STUDY_TAG: study_name}
        if previous is not None:
            tags[RETRY_OF_TAG] = previous
        run_id = None
        _hold("started")
        try:
            # The trial's tags come with the run's creation: a process killed right after
            # it leaves a run the retry can still find (_close_lost_run).
            with self.parent.nested(name, tags=tags) as tracker:
                run_id = tracker.run_id
                _hold("run_created")
                trial.set_user_attr(RUN_ATTR, run_id)
                if previous is not None:
                    self._close_lost_run(study_name, previous, trial.number)
                config = dataclasses.replace(self.base, dim_latent=sample.dim_latent)
                try:
                    metrics = self.backend.train(
                        self.plugin,
                        config,
                        tracker,
                        sample,
                        self.splits,
                        lambda epoch, values: self._on_epoch(trial, epoch, values),
                    )
                except optuna.TrialPruned as pruned:
                    tracker.set_tags({PRUNED_TAG: str(pruned)})
                    raise
                except Exception as error:
                    text = error_text(error)
                    tracker.set_tags({ERROR_TAG: text})
                    trial.set_user_attr(ERROR_ATTR, text)
                    raise
        except optuna.TrialPruned:
            if run_id is not None:  # ended FAILED by the block; pruning is a stop, not a fault
                Tracker(run_id).end_as("KILLED")
            raise
        except Stopped:
            # Interrupted, not failed: fail it now and queue the retry a resume runs first.
            fail_and_requeue(trial.study, trial, self.config.max_retry)
            raise
        final = {k: float(v) for k, v in metrics.items()}
        trial.set_user_attr(METRICS_ATTR, final)
        missing = [k for k in self.config.value_names if k not in final]
        if missing:
            raise KeyError(f"train_and_measure returned no {missing}; it returned {sorted(final)}")
        values = tuple(final[k] for k in self.config.value_names)
        return values if len(values) > 1 else values[0]

    def _on_epoch(self, trial: optuna.Trial, epoch: int, metrics: dict[str, float]) -> None:
        """Reports the pruning metric and prunes (``correlation``)."""
        _hold("training")
        if self.config.objective != "correlation":
            return
        key = self.config.prune_metric
        if key not in metrics:
            raise KeyError(
                f"prune_metric {key!r} is not among the per-epoch metrics {sorted(metrics)}"
            )
        value = float(metrics[key])
        if math.isnan(value):
            return  # nothing to compare (e.g. a unit without saliency): no report
        trial.report(value, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}: {key} = {value:.4g}")

    def _close_lost_run(self, study_name: str, lost: int, number: int) -> None:
        """Ends the run of the trial this one retries (its worker died: RUNNING forever)."""
        for run in self.parent.find_runs({STUDY_TAG: study_name, TRIAL_TAG: lost}):
            reason = f"its worker stopped (no heartbeat); retried as trial {number}"
            if run.info.status == "RUNNING":
                terminate_run(run.info.run_id, "KILLED", {STOPPED_TAG: reason})
            Tracker(run.info.run_id).set_tags({RETRIED_AS_TAG: number})


def _hold(point: str) -> None:
    """Tests only (:data:`HOLD_ENV`): at ``point``, touch the marker file and wait forever.

    Heartbeats go on until the test kills the process.
    """
    if point not in HOLD_POINTS:  # a misspelt point would never hold: the test would hang
        raise ValueError(f"hold point must be one of {HOLD_POINTS}, got {point!r}")
    name, _, marker = os.environ.get(HOLD_ENV, "").partition(":")
    if name != point or not marker:
        return
    Path(marker).touch()
    threading.Event().wait()
