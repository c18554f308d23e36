"""Optuna's own loop (``study.optimize``) over the trials of one invocation and its workers.

An invocation with ``n_jobs`` workers splits its ``n_trials`` between itself and
``n_jobs - 1`` worker processes (``lfxai.cli.sweep`` starts them); each runs
``study.optimize`` on its own handle of the shared study, with a sampler of its own seed, so
they draw independently and still see each other's trials through the storage. Processes,
not threads: each trains with its own interpreter and torch threads, and a stop signal or a
death is each process's own (its trial's run ended KILLED, the trial queued again).
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from lfxai.config import BaseConfig
from lfxai.plugins import get_dataset
from lfxai.sweep.backend import TrialBackend
from lfxai.sweep.objective import SweepObjective
from lfxai.sweep.settings import SweepConfig
from lfxai.sweep.study import make_storage, open_study
from lfxai.tracking import Tracker


@dataclass(frozen=True)
class SweepJob:
    """What every worker of one invocation runs (sent to the worker processes).

    Attributes:
        config: the sweep's settings.
        profile: the settings profile (part of the study's identity).
        base: the trials' base settings.
        backend: what a trial trains and measures.
        parent_run_id: the invocation's parent run; each trial is a run nested under it.
        storage_url: the Optuna storage (never with a credential).
        trial_settings: the base settings that define the study (checked by every worker).
    """

    config: SweepConfig
    profile: str
    base: BaseConfig
    backend: TrialBackend
    parent_run_id: str
    storage_url: str
    trial_settings: dict[str, str]


def trial_shares(n_trials: int, n_jobs: int) -> list[int]:
    """``n_trials`` split as evenly as can be between ``n_jobs`` workers, the first first."""
    base, extra = divmod(n_trials, n_jobs)
    return [base + (1 if worker < extra else 0) for worker in range(n_jobs)]


def optimize(study: optuna.Study, objective: SweepObjective, n_trials: int) -> None:
    """Runs ``n_trials`` trials with Optuna's loop (none after ``config.timeout`` seconds).

    A trial that raises is recorded FAIL (its error on the trial and its run) and the loop
    goes on; a stop (:class:`~lfxai.tracking.Stopped`) ends it.
    """
    if n_trials <= 0:
        return
    study.optimize(
        objective,
        n_trials=n_trials,
        timeout=objective.config.timeout,
        catch=(Exception,),
        gc_after_trial=True,
    )


def run_share(job: SweepJob, n_trials: int) -> None:
    """A worker process's share: its own study handle, splits and loop."""
    storage = make_storage(job.storage_url, job.config)
    study = open_study(job.config, job.profile, storage, job.trial_settings)
    plugin = get_dataset(job.config.dataset)
    splits = job.backend.load_splits(plugin, job.base, None)  # logged by the parent run
    parent = Tracker(job.parent_run_id)
    objective = SweepObjective(job.config, plugin, job.base, parent, splits, job.backend)
    optimize(study, objective, n_trials)
