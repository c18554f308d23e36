"""Tracker: what a run reads back (params, latest metrics, tags), its number, name,
description and end, the runs it finds, and every value it writes redacted."""

from __future__ import annotations

import os
import time

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from lfxai.tracking import Tracker
from lfxai.tracking.reader import StoreReader
from lfxai.tracking.tags import NOTE_TAG, PARENT_TAG, RUN_NAME_TAG, RUN_NUMBER_TAG
from tests.helpers import EXPERIMENT, open_run

SECRET_URL = "postgresql://me:s3cret@db/optuna"


def _tracker(experiment: str = EXPERIMENT, **kwargs) -> Tracker:
    return Tracker(open_run(experiment, **kwargs).info.run_id)


def test_params_and_the_latest_value_of_each_metric_read_back(mlflow_store):
    tracker = _tracker()
    tracker.log_params({"seed": 3, "lr": 0.5}, prefix="config.")
    tracker.log_params({})  # nothing to log: no request, no error
    tracker.log_metrics({"loss": 2, "acc": 0.25}, step=0)
    tracker.log_metrics({"loss": 1.5}, step=1)
    assert tracker.params() == {"config.seed": "3", "config.lr": "0.5"}
    assert tracker.metrics() == {"loss": 1.5, "acc": 0.25}
    assert tracker.metric_history("loss") == [(0, 2.0), (1, 1.5)]


@pytest.fixture()
def utc_plus_one():
    """The process's local time zone is one hour ahead of UTC."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "CET-1"  # POSIX rule: UTC+1, needs no time zone database
    time.tzset()
    yield
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()


def test_metric_points_are_stamped_in_ms_since_the_epoch_whatever_the_zone(
    mlflow_store, utc_plus_one
):
    # A stamp read from the local wall clock as if it were UTC lands hours off.
    tracker = _tracker()
    before = time.time() * 1000
    tracker.log_metric_rows([("loss", 1.0, 0), ("loss", 0.5, 1)])
    after = time.time() * 1000
    stamps = {m.timestamp for m in MlflowClient().get_metric_history(tracker.run_id, "loss")}
    assert len(stamps) == 1  # one stamp per request
    assert before - 1000 <= stamps.pop() <= after + 1000


def test_every_tag_and_param_is_written_redacted(mlflow_store):
    tracker = _tracker()
    tracker.set_tags({"storage": SECRET_URL, "n": 3})
    tracker.log_params({"storage": SECRET_URL})
    tracker.log_text(f"stored in {SECRET_URL}", "notes/where.txt")
    run = MlflowClient().get_run(tracker.run_id)
    assert run.data.tags["storage"] == run.data.params["storage"] == "postgresql://me:***@db/optuna"
    assert run.data.tags["n"] == "3"
    text = StoreReader().read_text(tracker.run_id, "notes/where.txt")
    assert text == "stored in postgresql://me:***@db/optuna"


def test_a_dict_is_logged_as_yaml_keys_in_their_order(mlflow_store):
    tracker = _tracker()
    tracker.log_dict({"name": "x", "dataset": "mnist", "batch": [1, 2]}, "config.yaml")
    text = StoreReader().read_text(tracker.run_id, "config.yaml")
    assert text == "name: x\ndataset: mnist\nbatch:\n- 1\n- 2\n"  # as given, not sorted


def test_only_the_tags_a_run_has_are_deleted(mlflow_store):
    tracker = _tracker(tags={"a": "1", "b": "2", "c": "3"})
    tracker.delete_tags("a", "missing", "c")  # a missing key is no error
    assert {k: v for k, v in tracker.tags().items() if len(k) == 1} == {"b": "2"}


def test_named_arrays_go_in_one_npz_where_asked(mlflow_store):
    tracker = _tracker()
    tracker.log_arrays({"x": np.arange(3), "y": np.ones((2, 2))}, "evidence/claims.npz")
    reader = StoreReader()
    assert reader.artifact_paths(tracker.run_id, "evidence") == ["evidence/claims.npz"]
    arrays = reader.read_arrays(tracker.run_id, "evidence/claims.npz")
    assert sorted(arrays) == ["x", "y"]
    assert arrays["x"].tolist() == [0, 1, 2] and arrays["y"].tolist() == [[1, 1], [1, 1]]
    tracker.log_arrays({"z": np.zeros(1)}, "top.npz")  # no folder: at the artifact root
    assert "top.npz" in reader.artifact_paths(tracker.run_id)


def test_a_description_grows_by_paragraphs(mlflow_store):
    tracker = _tracker()
    tracker.append_description("First.")  # no description yet: no leading blank line
    assert tracker.tags()[NOTE_TAG] == "First."
    tracker.append_description("Second.")
    assert tracker.tags()[NOTE_TAG] == "First.\n\nSecond."
    tracker.set_description("Anew.")
    assert tracker.tags()[NOTE_TAG] == "Anew."
    tracker.set_name("my-run")
    assert tracker.tags()[RUN_NAME_TAG] == "my-run"


def test_a_run_ends_again_with_the_status_it_is_given(mlflow_store):
    tracker = _tracker()
    tracker.end_as("KILLED")  # e.g. a pruned sweep trial
    assert MlflowClient().get_run(tracker.run_id).info.status == "KILLED"


def test_a_run_number_is_one_more_than_its_experiment_s_highest_and_is_kept(mlflow_store):
    assert _tracker().run_number() == 1  # the first numbered run of the experiment
    _tracker("Default", tags={RUN_NUMBER_TAG: "40"})  # another experiment's number
    for number in ("9", "10", "2"):  # compared as numbers: 10 is the highest, not "9"
        _tracker(tags={RUN_NUMBER_TAG: number})
    tracker = _tracker()
    assert tracker.run_number() == 11
    assert tracker.tags()[RUN_NUMBER_TAG] == "11"
    _tracker(tags={RUN_NUMBER_TAG: "30"})  # a later run takes a higher number ...
    assert tracker.run_number() == 11  # ... this run keeps its own (e.g. when resumed)


def test_runs_are_found_by_all_the_tags_asked_in_the_run_s_experiment(mlflow_store):
    tracker = _tracker()
    assert tracker.experiment_name() == EXPERIMENT
    both = _tracker(tags={"study": "s", "trial": "1"}).run_id
    _tracker(tags={"study": "s", "trial": "2"})
    _tracker("Default", tags={"study": "s", "trial": "1"})  # another experiment
    found = tracker.find_runs({"study": "s", "trial": "1"})
    assert [r.info.run_id for r in found] == [both]
    assert len(tracker.find_runs({"study": "s"})) == 2
    child = _tracker(tags={PARENT_TAG: tracker.run_id}).run_id
    assert [r.info.run_id for r in tracker.child_runs()] == [child]


@pytest.mark.parametrize("reopened", [False, True])
def test_a_nested_run_takes_its_own_tags_redacted(mlflow_store, reopened):
    parent = _tracker(tags={"lfxai.profile": "smoke", "mlflow.source.name": "p", "x": "1"})
    earlier = _tracker(tags={PARENT_TAG: parent.run_id}).run_id if reopened else None
    own = {"storage": SECRET_URL}
    with mlflow.start_run(run_id=parent.run_id), parent.nested("t", earlier, own) as child:
        pass
    tags = MlflowClient().get_run(child.run_id).data.tags
    assert tags["storage"] == "postgresql://me:***@db/optuna"
    assert (tags["lfxai.profile"], tags["mlflow.source.name"]) == ("smoke", "p")
    assert "x" not in tags and tags[PARENT_TAG] == parent.run_id
    assert (child.run_id == earlier) is reopened
