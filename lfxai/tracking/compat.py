"""Every private MLflow and Optuna API lfxai (or its tests) uses, each with why.

Nothing else in the project reaches behind either library's public API (ruff's SLF001
checks it); a test (``tests/tracking/test_compat.py``) pins the versions these were written
against, so an upgrade fails there first, naming what to re-check.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import mlflow
import optuna
from mlflow.projects import _project_spec
from optuna.storages import RDBStorage
from optuna.storages._rdb.models import TrialModel
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import update

WRITTEN_FOR = {"mlflow": "3.17.2", "optuna": "5.0.0"}


def installed_versions() -> dict[str, str]:
    """The versions of the two libraries installed here."""
    return {"mlflow": mlflow.__version__, "optuna": optuna.__version__}


def claim_waiting_trial(storage: RDBStorage, trial_id: int) -> bool:
    """Moves a queued (WAITING) trial to RUNNING in one conditional UPDATE; True if this caller won.

    Why private: Optuna's own ``set_trial_state_values`` reads the state, then writes it;
    on SQLite, which ignores ``SELECT ... FOR UPDATE``, two workers both read WAITING and both
    ran the trial. The UPDATE on Optuna's trial table (``TrialModel``, not public) is atomic
    on every database.
    """
    with storage.engine.begin() as connection:
        result = connection.execute(
            update(TrialModel)
            .where(TrialModel.trial_id == trial_id, TrialModel.state == TrialState.WAITING)
            .values(state=TrialState.RUNNING, datetime_start=datetime.now())
        )
    return result.rowcount == 1


def storage_trial_id(trial: FrozenTrial) -> int:
    """A trial's id in its storage (the key of the storage's own methods).

    Why private: Optuna's storages address trials by id, and ``FrozenTrial`` keeps it only as
    ``_trial_id`` (tests drive a storage directly).
    """
    return trial._trial_id  # noqa: SLF001


def stale_trial_ids(storage: RDBStorage, study_name: str) -> list[int]:
    """The RUNNING trials whose heartbeat Optuna takes for stale, changing nothing.

    Why private: Optuna's only public way (``fail_stale_trials``) also fails them; a test
    waits for Optuna's own view before it resumes a killed sweep.
    """
    study_id = storage.get_study_id_from_name(study_name)
    return storage._get_stale_trial_ids(study_id)  # noqa: SLF001


def load_mlproject(folder: Path) -> _project_spec.Project:
    """The MLproject of ``folder`` as ``mlflow run`` reads it.

    Its entry points, their parameters and the command each computes.

    Why private: MLflow has no public reader of a project's spec; tests check that our
    entry points get ``-P`` values the way ``mlflow run`` passes them.
    """
    return _project_spec.load_project(str(folder))
