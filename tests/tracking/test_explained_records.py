"""What a run records of the model it explains: the set fields as tags, and the logged model
as a run input only when the store holds it."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from lfxai.tracking import LFXAI_MODEL, PT2_MODEL, ExplainedModel, Tracker, record_explained_model
from lfxai.tracking.explained import _one_line
from tests.helpers import open_run


def test_the_lineage_tags_are_the_fields_that_are_set():
    model = ExplainedModel(
        "models:/m@paper", "models:/m/3", LFXAI_MODEL, "m", "3", "paper", None, "r1", (1, 28, 28)
    )
    assert model.tags() == {
        "lfxai.model.uri": "models:/m@paper",
        "lfxai.model.resolved": "models:/m/3",
        "lfxai.model.kind": "lfxai",
        "lfxai.model.name": "m",
        "lfxai.model.version": "3",
        "lfxai.model.alias": "paper",
        "lfxai.model.source_run": "r1",
    }  # no model id (None), and the input shape is no lineage
    folder = ExplainedModel("/tmp/model", "/tmp/model", PT2_MODEL)
    assert folder.tags() == {
        "lfxai.model.uri": "/tmp/model",
        "lfxai.model.resolved": "/tmp/model",
        "lfxai.model.kind": "pt2",
    }


def test_a_model_this_store_does_not_hold_is_recorded_by_its_tags_only(mlflow_store):
    tracker = Tracker(open_run().info.run_id)
    elsewhere = ExplainedModel("/tmp/model", "/tmp/model", PT2_MODEL, model_id="m-0123456789")
    record_explained_model(tracker, elsewhere)
    no_id = ExplainedModel("/tmp/other", "/tmp/other", PT2_MODEL)
    record_explained_model(tracker, no_id)
    run = MlflowClient().get_run(tracker.run_id)
    assert run.data.tags["lfxai.model.model_id"] == "m-0123456789"
    assert run.data.tags["lfxai.model.uri"] == "/tmp/other"  # the latest record
    assert run.inputs.model_inputs == []


def test_an_error_reads_as_its_first_non_blank_line():
    assert _one_line(RuntimeError("\n  unknown operator  \nwhile reading")) == "unknown operator"
    assert _one_line(RuntimeError("")) == _one_line(RuntimeError(" \n ")) == ""
