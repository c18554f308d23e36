"""Tracker and tracked_run against a private SQLite store: what lands in the run, exactly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib
import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from matplotlib import pyplot as plt
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lfxai.models.registry import ModelSpec, build_model
from lfxai.tracking import IDENTITY_TAGS, Tracker, tracked_run
from lfxai.tracking.tracker import MAX_METRICS_PER_BATCH

matplotlib.use("Agg")


@dataclasses.dataclass(frozen=True)
class _Config:
    seed: int
    methods: tuple[str, ...]


def test_tracked_run_finishes_or_fails_with_the_error(mlflow_store):
    with tracked_run("ok-run") as tracker:
        tracker.log_metrics({"a": 1.5, "b": 2}, step=3)
    run = MlflowClient().get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "ok-run"
    assert run.data.metrics == {"a": 1.5, "b": 2.0}
    with pytest.raises(KeyError, match="boom"), tracked_run("bad-run") as failing:
        raise KeyError("boom")
    failed = MlflowClient().get_run(failing.run_id)
    assert failed.info.status == "FAILED"
    assert failed.data.tags["lfxai.error"] == "KeyError: 'boom'"
    with tracked_run("again", run_id=tracker.run_id) as resumed:  # reopens the same run
        assert resumed.run_id == tracker.run_id


def test_a_whole_curve_goes_in_batches_and_resumes_without_duplicates(mlflow_store):
    n = MAX_METRICS_PER_BATCH + 7  # more than one request
    with tracked_run("curves") as tracker:
        tracker.log_metric_rows([("curve", float(i) / 4, i) for i in range(n)])
        assert tracker.metric_history("curve") == [(i, i / 4) for i in range(n)]
        tracker.log_new_points("short", [(0, 1.0), (5, 2.0)])
        tracker.log_new_points("short", [(0, 9.0), (5, 9.0), (10, 3.0)])  # 0 and 5 are kept
        assert sorted(tracker.metric_history("short")) == [(0, 1.0), (5, 2.0), (10, 3.0)]


def test_config_is_logged_as_tags_prefixed_params_and_a_file(mlflow_store, tmp_path):
    identity = {"dataset": "mnist", "experiment": "x", "profile": "smoke", "version": "1"}
    with tracked_run("config") as tracker:
        tracker.log_config(identity, _Config(seed=3, methods=("a", "b")))
        with pytest.raises(ValueError, match=r"unknown identity tags \['lfxai.colour'\]"):
            tracker.log_config({"colour": "red"}, _Config(1, ()))
    run = MlflowClient().get_run(tracker.run_id)
    assert {k: run.data.tags[k] for k in IDENTITY_TAGS} == {
        f"lfxai.{k}": v for k, v in identity.items()
    }
    assert run.data.params == {"config.seed": "3", "config.methods": "a,b"}
    local = MlflowClient().download_artifacts(tracker.run_id, "config.yaml", str(tmp_path))
    assert yaml.safe_load(Path(local).read_text()) == {**identity, "seed": 3, "methods": ["a", "b"]}


def test_artifacts_round_trip(mlflow_store, tmp_path):
    state = {"w": torch.arange(6.0).view(2, 3), "b": torch.tensor([1, 2])}
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    frame = pd.DataFrame({"method": ["A", "B"], "value": [0.5, 1.5]})
    figure, axis = plt.subplots()
    axis.plot([0, 1], [1, 0])
    with tracked_run("artifacts") as tracker:
        module = torch.nn.Linear(3, 2)
        module.load_state_dict({"weight": state["w"], "bias": state["b"].float()})
        tracker.log_state_dict(module, "weights/m.pt")
        tracker.log_array(torch.from_numpy(array), "arrays/a.npy")
        tracker.log_table(frame, "table.csv")
        tracker.log_dict({"k": [1, 2]}, "d/x.yaml")
        tracker.log_figure(figure, "figs/curve")
        loaded = tracker.load_state_dict("weights/m.pt")
        assert torch.equal(loaded["weight"], state["w"])
        assert np.array_equal(tracker.load_array("arrays/a.npy"), array)
    plt.close(figure)
    client = MlflowClient()
    assert {a.path for a in client.list_artifacts(tracker.run_id, "figs")} == {
        "figs/curve.png",
        "figs/curve.pdf",
    }
    table = pd.read_csv(client.download_artifacts(tracker.run_id, "table.csv", str(tmp_path)))
    pd.testing.assert_frame_equal(table, frame)
    local = client.download_artifacts(tracker.run_id, "d/x.yaml", str(tmp_path))
    assert yaml.safe_load(Path(local).read_text()) == {"k": [1, 2]}
    png = client.download_artifacts(tracker.run_id, "figs/curve.png", str(tmp_path))
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nested_runs_inherit_the_identity_and_end_with_their_body(mlflow_store):
    identity = {"dataset": "mnist", "experiment": "roar_test", "profile": "smoke", "version": "1"}
    with tracked_run("parent") as parent:
        parent.log_config(identity, _Config(1, ()))
        parent.set_tags({"other": "not inherited"})
        with parent.nested("child-ok") as child:
            child.log_metrics({"m": 1.0})
        with pytest.raises(RuntimeError, match="stop"), parent.nested("child-bad"):
            raise RuntimeError("stop")
        children = {r.info.run_name: r for r in parent.child_runs()}
    assert set(children) == {"child-ok", "child-bad"}
    assert children["child-ok"].info.status == "FINISHED"
    assert children["child-bad"].info.status == "FAILED"
    for run in children.values():
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent.run_id
        assert {k: tags[k] for k in IDENTITY_TAGS} == {f"lfxai.{k}": v for k, v in identity.items()}
        assert "other" not in tags
    with tracked_run("parent", run_id=parent.run_id) as again:
        reopened = children["child-bad"].info.run_id
        with again.nested("child-bad", run_id=reopened) as child:
            assert child.run_id == reopened
    assert MlflowClient().get_run(reopened).info.status == "FINISHED"


def test_log_encoder_model_needs_the_tracker_s_run_to_be_active(mlflow_store):
    model = build_model("mnist_ae", ModelSpec(2, (1, 28, 28)))
    with tracked_run("outer") as tracker:
        pass
    with pytest.raises(RuntimeError, match="needs this tracker's run to be the active run"):
        tracker.log_encoder_model(model, torch.zeros(1, 1, 28, 28))
    with mlflow.start_run(), pytest.raises(RuntimeError, match="active run"):
        tracker.log_encoder_model(model, torch.zeros(1, 1, 28, 28))


def _two_versions(client: MlflowClient, name: str, source: Path) -> None:
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, source=str(source), run_id=None)


@pytest.mark.parametrize(("winner", "ours", "expected"), [("2", "1", "2"), ("1", "2", "2")])
def test_an_alias_race_lost_to_another_worker_ends_on_the_newest_version(
    mlflow_store, tmp_path, monkeypatch, winner, ours, expected
):
    # Two workers set a new alias together: the store's read-then-insert lets the slower
    # insert fail on the alias's unique key (PostgreSQL), after the faster one has written.
    with tracked_run("alias") as tracker:
        _two_versions(tracker.client, "m", tmp_path)
        real_set = tracker.client.set_registered_model_alias
        calls = []

        def racing_set(name, alias, version):
            calls.append(version)
            if len(calls) == 1:
                real_set(name, alias, winner)  # the other worker's insert lands first
                raise MlflowException("duplicate key value violates unique constraint")
            real_set(name, alias, version)

        monkeypatch.setattr(tracker.client, "set_registered_model_alias", racing_set)
        tracker.move_alias("m", "smoke", ours)
    assert str(MlflowClient().get_model_version_by_alias("m", "smoke").version) == expected
    # written again only when the other worker's version was the older one
    assert calls == ([ours] if winner > ours else [ours, ours])


def test_an_alias_write_landing_after_a_newer_worker_s_is_undone(
    mlflow_store, tmp_path, monkeypatch
):
    # Seen on CI with two workers on one tracking server: worker 1 read the alias, worker 2
    # then set it to version 2, and worker 1's write (an update now) moved it back to 1.
    with tracked_run("alias") as tracker:
        _two_versions(tracker.client, "m", tmp_path)
        real_set = tracker.client.set_registered_model_alias
        calls = []

        def late_set(name, alias, version):
            calls.append(version)
            if len(calls) == 1:  # the other worker claims, sets and finishes in between
                Tracker(tracker.run_id).move_alias(name, alias, "2")
            real_set(name, alias, version)

        monkeypatch.setattr(tracker.client, "set_registered_model_alias", late_set)
        tracker.move_alias("m", "smoke", "1")
    assert str(MlflowClient().get_model_version_by_alias("m", "smoke").version) == "2"
    assert calls == ["1", "2"]  # its own version while the newest claim, then the newer one


def test_a_data_set_race_lost_to_another_worker_still_links_the_data_set(mlflow_store, monkeypatch):
    # Two workers log the same new data set: the slower insert fails on its key (PostgreSQL)
    # after the other worker's row landed; seen on CI with two sweep workers.
    x, y = torch.zeros(4, 1, 2, 2), torch.arange(4)
    with tracked_run("other") as other:
        other_id = other.run_id
    with tracked_run("data") as tracker:
        real_log = tracker.client.log_inputs
        calls = []

        def racing_log(run_id, datasets):
            calls.append(run_id)
            if len(calls) == 1:
                real_log(other_id, datasets=datasets)  # the other worker's insert lands first
                raise MlflowException("duplicate key value violates unique constraint")
            real_log(run_id, datasets=datasets)

        monkeypatch.setattr(tracker.client, "log_inputs", racing_log)
        tracker.log_dataset("mnist-train", x, y, ".", "d1", context="train")
    assert calls == [tracker.run_id, tracker.run_id]
    for run_id in (other_id, tracker.run_id):
        inputs = MlflowClient().get_run(run_id).inputs.dataset_inputs
        assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [("mnist-train", "d1")]


def test_an_alias_never_moves_back_and_a_real_failure_is_raised(mlflow_store, tmp_path):
    with tracked_run("alias") as tracker:
        _two_versions(tracker.client, "m", tmp_path)
        tracker.move_alias("m", "paper", "2")
        tracker.move_alias("m", "paper", "1")  # an older version finishing late
        assert str(tracker.client.get_model_version_by_alias("m", "paper").version) == "2"
        with pytest.raises(MlflowException):  # no alias appeared: not a lost race
            tracker.move_alias("m", "quick", "7")
