"""The private MLflow / Optuna APIs of ``lfxai.tracking.compat``: pinned, and still there."""

from __future__ import annotations

import warnings

import optuna
import pytest
from sqlalchemy import text

from lfxai.tracking import compat
from lfxai.tracking.compat import WRITTEN_FOR, installed_versions, load_mlproject
from tests.helpers import REPO


def test_the_installed_libraries_are_the_ones_compat_was_written_for():
    # An upgrade fails here first: re-check each function of lfxai.tracking.compat (its
    # docstring says which private API it uses and why), then move the pin.
    assert installed_versions() == WRITTEN_FOR


def test_the_pins_are_the_project_s_own():
    text = (REPO / "pyproject.toml").read_text()
    for name, version in WRITTEN_FOR.items():
        assert f'"{name}=={version}"' in text, name


@pytest.fixture()
def storage(tmp_path):
    return optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")


def test_a_queued_trial_is_claimed_once_and_the_trial_id_addresses_it(storage):
    study = optuna.create_study(study_name="s", storage=storage)
    study.enqueue_trial({"x": 1.0})
    study.enqueue_trial({"x": 2.0})
    queued, other = study.get_trials()
    trial_id = compat.storage_trial_id(queued)
    assert storage.get_trial(trial_id).number == queued.number
    assert compat.claim_waiting_trial(storage, trial_id)
    assert not compat.claim_waiting_trial(storage, trial_id)  # RUNNING now: not WAITING
    claimed = storage.get_trial(trial_id)
    assert claimed.state.name == "RUNNING" and claimed.datetime_start is not None
    waiting = storage.get_trial(compat.storage_trial_id(other))  # another queued trial
    assert waiting.state.name == "WAITING" and waiting.datetime_start is None


def test_stale_trials_are_seen_without_being_changed(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name="s", storage=storage)
    with pytest.warns(UserWarning, match="Heartbeat"):  # Optuna: ask is not optimize
        trial = study.ask()
    trial_id = compat.storage_trial_id(study.trials[trial.number])
    assert compat.stale_trial_ids(storage, "s") == []  # no heartbeat yet: not stale
    storage.record_heartbeat(trial_id)
    # A heartbeat older than the grace period without waiting for one: written into
    # Optuna's own table, as the storage writes it.
    with storage.engine.begin() as connection:
        connection.execute(text("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00'"))
    assert compat.stale_trial_ids(storage, "s") == [trial_id]
    assert study.trials[trial.number].state.name == "RUNNING"  # seen, not failed


def test_the_mlproject_reads_as_mlflow_run_reads_it():
    entry = load_mlproject(REPO).get_entry_point("mnist")
    assert set(entry.parameters) == {"name", "profile"}
