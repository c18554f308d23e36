"""A worker's share (``run_share``) in this process, and the disvae backend's delegation.

The runner's tests (slow) start real worker processes; these pin, in a second, what one
worker does with its :class:`SweepJob`: open the invocation's study in the job's storage
(checking it is the same sweep), load its splits without logging them, and run its trials
as runs nested under the invocation's parent run.
"""

from __future__ import annotations

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

import lfxai.sweep.backend as backend_module
from lfxai.config import ConfigError
from lfxai.experiments.disvae import DisvaeConfig, VaeTrial
from lfxai.sweep.backend import DisvaeBackend, Sample
from lfxai.sweep.objective import PARENT_ATTR, RUN_ATTR
from lfxai.sweep.optimize import SweepJob, run_share
from lfxai.sweep.settings import resolve_sweep
from lfxai.sweep.study import make_storage
from tests.sweep.fakes import FakeBackend

optuna.logging.set_verbosity(optuna.logging.WARNING)

TRIAL_SETTINGS = {"batch_size": "10", "n_epochs": "2"}


class _RecordingBackend(FakeBackend):
    """The fake backend, recording what its splits were loaded for."""

    def __init__(self) -> None:
        super().__init__()
        self.splits_for: list[tuple[str, object, object]] = []

    def load_splits(self, dataset, config, tracker):
        self.splits_for.append((dataset.name, config, tracker))
        return "the splits"

    def train(self, dataset, config, tracker, sample, splits, on_epoch):
        assert splits == "the splits"  # what load_splits gave, handed to every trial
        assert dataset.name == "mnist"  # the job's data set's plugin
        return super().train(dataset, config, tracker, sample, splits, on_epoch)


def _job(storage_url: str, backend: FakeBackend, settings=TRIAL_SETTINGS) -> SweepJob:
    resolved = resolve_sweep("mnist", "smoke", {"n_trials": "3"}, backend)
    parent = mlflow.start_run(run_name="sweep").info.run_id
    mlflow.end_run()  # a worker reopens nothing: its trials nest under the parent's id
    return SweepJob(
        resolved.config, "smoke", resolved.base, backend, parent, storage_url, dict(settings)
    )


def _study(job: SweepJob) -> optuna.Study:
    storage = make_storage(job.storage_url, job.config)
    return optuna.load_study(study_name=job.config.resolved_study_name(), storage=storage)


def test_a_share_runs_its_trials_in_the_jobs_study_under_the_jobs_parent_run(sweep_env):
    backend = _RecordingBackend()
    job = _job(sweep_env, backend)
    run_share(job, 2)
    study = _study(job)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert len(backend.trainer.calls) == 2
    # the study was created with this sweep's identity, its trial settings included
    assert study.user_attrs["profile"] == "smoke"
    assert study.user_attrs["trial_settings"] == TRIAL_SETTINGS
    assert study.user_attrs["dataset"] == "mnist"
    # splits loaded once, for MNIST, and not logged (the parent run logged them)
    assert backend.splits_for == [("mnist", job.base, None)]
    client = mlflow.MlflowClient()
    for trial in trials:
        assert trial.user_attrs[PARENT_ATTR] == job.parent_run_id
        run = client.get_run(trial.user_attrs[RUN_ATTR])
        assert run.data.tags["mlflow.parentRunId"] == job.parent_run_id
        assert run.info.status == "FINISHED"


def test_a_share_continues_the_study_it_finds_and_refuses_another_sweeps(sweep_env):
    backend = _RecordingBackend()
    job = _job(sweep_env, backend)
    run_share(job, 1)
    run_share(job, 1)  # a second worker: the same study, one more trial
    assert len(_study(job).get_trials()) == 2
    other = _job(sweep_env, backend, {**TRIAL_SETTINGS, "n_epochs": "5"})
    with pytest.raises(ConfigError, match="trial setting n_epochs: the study has '2'"):
        run_share(other, 1)
    assert len(backend.trainer.calls) == 2  # the refused share trained nothing


def test_a_share_of_no_trials_trains_nothing(sweep_env):
    backend = _RecordingBackend()
    job = _job(sweep_env, backend)
    run_share(job, 0)
    assert backend.trainer.calls == []
    assert _study(job).get_trials() == []


def test_the_disvae_backend_delegates_to_the_disvae_experiment(monkeypatch):
    calls = {}

    def load_vae_splits(dataset, config, tracker):
        calls["splits"] = (dataset, config, tracker)
        return "splits"

    def train_and_measure(dataset, config, tracker, trial, splits, on_epoch):
        calls["train"] = (dataset, config, tracker, trial, splits, on_epoch)
        return {"pearson": 0.5}

    monkeypatch.setattr(backend_module, "load_vae_splits", load_vae_splits)
    monkeypatch.setattr(backend_module, "train_and_measure", train_and_measure)
    backend = DisvaeBackend()
    assert backend.schema is DisvaeConfig
    assert set(backend.losses) == {"beta_vae", "beta_tc_vae"}
    config = object.__new__(DisvaeConfig)  # the backend only hands it on
    assert backend.load_splits("plugin", config, "tracker") == "splits"
    assert calls["splits"] == ("plugin", config, "tracker")
    sample = Sample(loss="beta_tc_vae", beta=4.0, dim_latent=7)
    values = backend.train("plugin", config, "tracker", sample, "splits", print)
    assert values == {"pearson": 0.5}
    trial = VaeTrial("beta_tc_vae", 4.0, 7)
    assert calls["train"] == ("plugin", config, "tracker", trial, "splits", print)
