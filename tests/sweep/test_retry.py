"""An interrupted trial fails at once and its retry is queued with the same parameters."""

from __future__ import annotations

import warnings

import optuna
from optuna.trial import TrialState

from lfxai.sweep.study import fail_and_requeue, retried_from


def _study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(directions=["minimize", "maximize"])


def _interrupted(study: optuna.Study) -> optuna.trial.Trial:
    trial = study.ask()
    trial.suggest_float("beta", 0.5, 20.0, log=True)
    trial.suggest_int("dim_latent", 2, 10)
    return trial


def test_the_interrupted_trial_fails_and_one_retry_with_its_params_waits() -> None:
    study = _study()
    trial = _interrupted(study)
    fail_and_requeue(study, trial, max_retry=2)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    original, retry = trials
    assert retry.params == original.params and retry.distributions == original.distributions
    assert retried_from(retry) == original.number
    assert retried_from(original) is None


def test_a_retry_that_fails_again_is_retried_from_itself_until_max_retry() -> None:
    study = _study()
    fail_and_requeue(study, _interrupted(study), max_retry=2)
    first_retry = study.ask()  # takes the waiting retry, with its params
    assert first_retry.number == 1
    first_retry.suggest_float("beta", 0.5, 20.0, log=True)
    first_retry.suggest_int("dim_latent", 2, 10)
    fail_and_requeue(study, first_retry, max_retry=2)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.WAITING]
    assert retried_from(trials[2]) == 1
    assert trials[2].params == trials[1].params == trials[0].params
    second_retry = study.ask()
    second_retry.suggest_float("beta", 0.5, 20.0, log=True)
    second_retry.suggest_int("dim_latent", 2, 10)
    fail_and_requeue(study, second_retry, max_retry=2)  # the third failure: no more retries
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [TrialState.FAIL] * 3


def test_max_retry_zero_queues_nothing() -> None:
    study = _study()
    fail_and_requeue(study, _interrupted(study), max_retry=0)
    assert [t.state for t in study.get_trials(deepcopy=False)] == [TrialState.FAIL]


def test_failing_the_interrupted_trial_says_fail_and_warns_nothing() -> None:
    """The state is told as FAIL, not left for Optuna to infer from missing values (a warning)."""
    study = _study()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fail_and_requeue(study, _interrupted(study), max_retry=1)
    assert [t.state for t in study.get_trials(deepcopy=False)] == [
        TrialState.FAIL,
        TrialState.WAITING,
    ]


def test_a_trial_another_worker_already_failed_as_stale_is_left_alone() -> None:
    """Its retry was queued by that worker: no error, no second retry."""
    study = _study()
    trial = _interrupted(study)
    fail_and_requeue(study, trial, max_retry=2)  # as the other worker's stale check did
    fail_and_requeue(study, trial, max_retry=2)  # this worker's stop handler, afterwards
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert retried_from(trials[1]) == 0
