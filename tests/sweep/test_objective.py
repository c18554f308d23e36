"""One trial through :class:`SweepObjective`, in this process: a fake backend, a private store.

The runner's tests (slow) launch whole sweeps; these pin, in a second, what one call of the
objective does: the values it returns, its nested run (name, tags, outcome), the trial's
attributes, pruning, errors, interruptions and retries.
"""

from __future__ import annotations

import math

import mlflow
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from lfxai.sweep.objective import (
    ERROR_ATTR,
    METRICS_ATTR,
    PARENT_ATTR,
    PRUNED_TAG,
    RETRIED_AS_TAG,
    RETRY_OF_TAG,
    RUN_ATTR,
    STUDY_TAG,
    TRIAL_TAG,
)
from lfxai.sweep.optimize import optimize, trial_shares
from lfxai.sweep.study import fail_and_requeue
from lfxai.tracking import ERROR_TAG, STOPPED_TAG, Stopped
from tests.sweep.fakes import FakeTrain, fake_values, in_process_objective

optuna.logging.set_verbosity(optuna.logging.WARNING)


class _Returns(FakeTrain):
    """A fake training that returns only some metrics."""

    def __init__(self, keep: list[str]) -> None:
        super().__init__()
        self.keep = keep

    def __call__(self, *args, **kwargs):
        final = super().__call__(*args, **kwargs)
        return {k: v for k, v in final.items() if k in self.keep}


class _Epochs(FakeTrain):
    """A fake training whose per-epoch metrics are given."""

    def __init__(self, metrics: dict[str, float]) -> None:
        super().__init__()
        self.metrics = metrics

    def __call__(self, plugin, config, tracker, trial, splits, on_epoch=None):
        self.calls.append(trial)
        on_epoch(0, dict(self.metrics))
        return fake_values(trial)


def _run(run_id: str):
    return mlflow.MlflowClient().get_run(run_id)


def test_a_trial_trains_its_sample_in_a_nested_run_and_returns_the_objective_values(sweep_env):
    objective, study, train = in_process_objective()
    trial = study.ask()
    values = objective(trial)
    (sample,) = train.calls
    expected = fake_values(sample)
    assert values == (expected["pearson"], expected["test_reconstruction"])  # pareto's order
    assert trial.params == {
        "loss": sample.loss,
        "beta": sample.beta,
        "dim_latent": sample.dim_latent,
    }
    run = _run(trial.user_attrs[RUN_ATTR])
    assert run.info.status == "FINISHED"
    name = f"trial 0 · {sample.loss} beta={sample.beta:.3g} d={sample.dim_latent}"
    assert run.info.run_name == name
    assert run.data.tags[TRIAL_TAG] == "0" and run.data.tags[STUDY_TAG] == "s"
    assert RETRY_OF_TAG not in run.data.tags
    assert run.data.tags["mlflow.parentRunId"] == objective.parent.run_id
    assert trial.user_attrs[PARENT_ATTR] == objective.parent.run_id
    assert trial.user_attrs[METRICS_ATTR] == expected
    study.tell(trial, values)


def test_the_sampler_draws_from_the_configured_ranges_and_the_trial_gets_its_latent_size(
    sweep_env,
):
    seen = []

    class Spy(FakeTrain):
        def __call__(self, plugin, config, tracker, trial, splits, on_epoch=None):
            seen.append((config, trial))
            return super().__call__(plugin, config, tracker, trial, splits, on_epoch)

    objective, study, _ = in_process_objective(Spy(), beta_range="2.0,3.0", latent_range="5,6")
    trial = study.ask()
    objective(trial)
    assert trial.distributions == {
        "loss": CategoricalDistribution(list(objective.config.losses)),
        "beta": FloatDistribution(2.0, 3.0, log=True),
        "dim_latent": IntDistribution(5, 6),
    }
    ((config, sample),) = seen
    assert 2.0 <= sample.beta <= 3.0 and sample.dim_latent in (5, 6)
    assert config.dim_latent == sample.dim_latent
    # everything else is the trials' base settings
    assert {**vars(config), "dim_latent": 0} == {**vars(objective.base), "dim_latent": 0}


def test_the_correlation_objective_returns_one_number(sweep_env):
    objective, study, train = in_process_objective(objective="correlation")
    value = objective(study.ask())
    assert value == fake_values(train.calls[0])["pearson"]


def test_a_backend_that_returns_no_objective_value_is_named(sweep_env):
    objective, study, _ = in_process_objective(_Returns(["pearson", "test_loss"]))
    with pytest.raises(KeyError, match=r"returned no \['test_reconstruction'\]; it returned "):
        objective(study.ask())


def test_a_failing_trial_ends_its_run_failed_and_says_why_on_both_sides(sweep_env):
    train = FakeTrain()
    train.fail_all = True
    objective, study, _ = in_process_objective(train)
    trial = study.ask()
    with pytest.raises(ValueError, match="the fake trial fails"):
        objective(trial)
    run = _run(trial.user_attrs[RUN_ATTR])
    assert run.info.status == "FAILED"
    assert "the fake trial fails" in run.data.tags[ERROR_TAG]
    assert "the fake trial fails" in trial.user_attrs[ERROR_ATTR]


def test_correlation_trials_report_the_prune_metric_and_a_pruned_run_ends_killed(
    sweep_env, monkeypatch
):
    objective, study, _ = in_process_objective(
        _Epochs({"test_reconstruction": 7.5, "test_loss": 1.0}), objective="correlation"
    )
    trial = study.ask()
    monkeypatch.setattr(trial, "should_prune", lambda: True)
    with pytest.raises(optuna.TrialPruned, match=r"pruned at epoch 0: test_reconstruction = 7.5"):
        objective(trial)
    frozen = study.get_trials(deepcopy=False)[0]
    assert frozen.intermediate_values == {0: 7.5}
    run = _run(trial.user_attrs[RUN_ATTR])
    assert run.info.status == "KILLED"
    assert run.data.tags[PRUNED_TAG] == "pruned at epoch 0: test_reconstruction = 7.5"


def test_pareto_trials_report_nothing_and_are_never_pruned(sweep_env, monkeypatch):
    objective, study, _ = in_process_objective(_Epochs({"test_reconstruction": 7.5}))
    trial = study.ask()
    monkeypatch.setattr(trial, "should_prune", lambda: True)
    objective(trial)
    assert study.get_trials(deepcopy=False)[0].intermediate_values == {}


def test_a_nan_prune_metric_is_not_reported(sweep_env):
    nan = float("nan")
    objective, study, _ = in_process_objective(
        _Epochs({"test_reconstruction": nan}), objective="correlation"
    )
    assert not math.isnan(objective(study.ask()))
    assert study.get_trials(deepcopy=False)[0].intermediate_values == {}


def test_a_prune_metric_the_backend_does_not_measure_is_named_with_the_choices(sweep_env):
    objective, study, _ = in_process_objective(_Epochs({"test_loss": 1.0}), objective="correlation")
    with pytest.raises(KeyError, match=r"'test_reconstruction' is not among .*\['test_loss'\]"):
        objective(study.ask())


def test_an_interrupted_trial_is_failed_and_queued_for_retry(sweep_env):
    train = FakeTrain()
    train.raise_at = (0, Stopped(15))
    objective, study, _ = in_process_objective(train, max_retry="1")
    trial = study.ask()
    with pytest.raises(Stopped):
        objective(trial)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [TrialState.FAIL, TrialState.WAITING]
    assert _run(trial.user_attrs[RUN_ATTR]).info.status == "KILLED"


def test_a_retry_names_the_trial_it_retries_and_closes_its_lost_run(sweep_env):
    objective, study, train = in_process_objective(max_retry="1")
    lost = study.ask()
    # the lost trial's worker died in training: its run is RUNNING forever
    client = mlflow.MlflowClient()
    experiment = _run(objective.parent.run_id).info.experiment_id
    tags = {STUDY_TAG: "s", TRIAL_TAG: "0", "mlflow.parentRunId": objective.parent.run_id}
    lost_run = client.create_run(experiment, tags=tags).info.run_id
    other = client.create_run(experiment, tags={**tags, TRIAL_TAG: "5"}).info.run_id
    fail_and_requeue(study, lost, max_retry=1)
    retry = study.ask()
    assert retry.number == 1
    objective(retry)
    run = _run(retry.user_attrs[RUN_ATTR])
    assert run.data.tags[RETRY_OF_TAG] == "0" and run.data.tags[TRIAL_TAG] == "1"
    closed = _run(lost_run)
    assert closed.info.status == "KILLED"
    assert closed.data.tags[RETRIED_AS_TAG] == "1"
    assert closed.data.tags[STOPPED_TAG] == (
        "its worker stopped (no heartbeat); retried as trial 1"
    )
    assert _run(other).info.status == "RUNNING"  # another trial's run is left alone
    assert RETRIED_AS_TAG not in _run(other).data.tags
    assert len(train.calls) == 1


@pytest.mark.parametrize(
    ("n_trials", "n_jobs", "shares"),
    [(7, 3, [3, 2, 2]), (2, 3, [1, 1, 0]), (6, 2, [3, 3]), (5, 1, [5])],
)
def test_trials_are_shared_evenly_between_workers_the_first_first(n_trials, n_jobs, shares):
    assert trial_shares(n_trials, n_jobs) == shares


def test_optimize_runs_its_share_and_goes_on_after_a_failed_trial(sweep_env):
    train = FakeTrain()
    train.raise_at = (0, RuntimeError("first trial breaks"))
    objective, study, _ = in_process_objective(train)
    optimize(study, objective, 0)
    assert study.get_trials() == []
    optimize(study, objective, 3)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert "first trial breaks" in study.trials[0].user_attrs[ERROR_ATTR]


def test_optimize_starts_no_trial_after_the_timeout(sweep_env):
    objective, study, _ = in_process_objective(timeout="0.001")
    optimize(study, objective, 5)
    # at most the first starts (the timeout may pass before it), none after it: not 5
    assert len(study.trials) <= 1
