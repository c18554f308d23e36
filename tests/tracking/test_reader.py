"""StoreReader: runs as plain records in a stated order, artifacts read without leftovers."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from lfxai.tracking.reader import StoreReader

T0 = 1_700_000_000_000  # ms; explicit start times make the orders testable


@pytest.fixture()
def store(mlflow_store, tmp_path):
    """Two experiments; in ``reader-a`` a parent with children started out of creation order."""
    client = MlflowClient()
    a = client.create_experiment("reader-a")
    b = client.create_experiment("reader-b")
    ids = {}
    for name, start, experiment, tags in (
        ("old", T0, a, {"kind": "x"}),
        ("new", T0 + 5_000, a, {"kind": "y"}),
        ("elsewhere", T0 + 9_000, b, {"kind": "x"}),
    ):
        run = client.create_run(experiment, start_time=start, tags=tags, run_name=name)
        ids[name] = run.info.run_id
    client.log_param(ids["old"], "seed", "3")
    client.log_metric(ids["old"], "loss", 0.5, step=0)
    client.log_metric(ids["old"], "loss", 0.25, step=1)
    client.set_terminated(ids["old"], "FINISHED", end_time=T0 + 2_000)
    for name, start in (("second", T0 + 300), ("first", T0 + 100)):  # created late, started early
        child = client.create_run(
            a, start_time=start, tags={"mlflow.parentRunId": ids["new"]}, run_name=name
        )
        ids[name] = child.info.run_id
    folder = tmp_path / "artifacts"
    (folder / "sub").mkdir(parents=True)
    (folder / "note.txt").write_text("hello")
    (folder / "table.csv").write_text("a,b\n1,2\n3,4\n")
    np.save(folder / "one.npy", np.arange(3))
    np.savez(folder / "many.npz", x=np.ones(2), y=np.zeros(1))
    (folder / "sub" / "deep.txt").write_text("deep")
    client.log_artifacts(ids["old"], str(folder))
    return ids


def test_runs_are_records_of_one_experiment_newest_first(store):
    reader = StoreReader()
    assert [r.run_id for r in reader.runs("reader-a")] == [
        store[n] for n in ("new", "second", "first", "old")
    ]
    assert [r.run_id for r in reader.runs("reader-a", "tags.kind = 'x'")] == [store["old"]]
    assert reader.runs("no-such-experiment") == []
    old = reader.run(store["old"])
    experiment = MlflowClient().get_experiment_by_name("reader-a")
    assert (old.experiment, old.experiment_id) == ("reader-a", experiment.experiment_id)
    assert (old.status, old.start_time, old.end_time) == ("FINISHED", T0, T0 + 2_000)
    assert old.params == {"seed": "3"} and old.metrics == {"loss": 0.25}
    assert old.tags["kind"] == "x" and old.parent is None
    assert reader.run(store["elsewhere"]).experiment == "reader-b"
    assert reader.metric_history(store["old"], "loss") == [(0, 0.5), (1, 0.25)]
    with pytest.raises(LookupError, match="no run 'nope' in the store"):
        reader.run("nope")


def test_children_are_the_nested_runs_oldest_first(store):
    children = StoreReader().children(store["new"])
    assert [c.run_id for c in children] == [store["first"], store["second"]]
    assert {c.parent for c in children} == {store["new"]}
    assert StoreReader().children(store["old"]) == []


def test_artifacts_are_read_as_data_and_nothing_is_left_behind(store, temp_leftovers):
    reader, run = StoreReader(), store["old"]
    assert sorted(reader.artifact_paths(run)) == [
        "many.npz", "note.txt", "one.npy", "sub", "table.csv"
    ]  # fmt: skip
    assert reader.artifact_paths(run, "sub") == ["sub/deep.txt"]
    assert reader.artifact_paths("no-such-run") == []
    assert reader.read_text(run, "note.txt") == "hello"
    assert reader.read_text(run, "sub/deep.txt") == "deep"
    assert reader.read_bytes(run, "note.txt") == b"hello"
    assert reader.read_table(run, "table.csv").to_dict("list") == {"a": [1, 3], "b": [2, 4]}
    assert reader.read_arrays(run, "one.npy")[""].tolist() == [0, 1, 2]
    arrays = reader.read_arrays(run, "many.npz")
    assert sorted(arrays) == ["x", "y"] and arrays["x"].tolist() == [1.0, 1.0]
    for read in (reader.read_text, reader.read_table, reader.read_arrays, reader.read_bytes):
        assert read(run, "missing.txt") is None
        assert read(run, "sub") is None  # a folder is not a file
    assert list(temp_leftovers.iterdir()) == []


def test_an_array_holding_objects_is_refused_not_unpickled(store, tmp_path):
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    MlflowClient().log_artifact(store["new"], str(pickled))
    with pytest.raises(ValueError, match="allow_pickle=False"):
        StoreReader().read_arrays(store["new"], "objects.npy")


def test_the_reader_reads_the_store_it_was_given(store, tmp_path):
    uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'another.db'}")  # runs would go elsewhere
    assert [r.run_id for r in StoreReader(uri).runs("reader-a", "tags.kind = 'x'")] == [
        store["old"]
    ]


def test_the_store_s_active_experiments_are_listed_by_name(store):
    client = MlflowClient()
    client.delete_experiment(client.create_experiment("reader-gone"))
    names = StoreReader().experiment_names()
    assert names == sorted(names) and {"reader-a", "reader-b", "Default"} <= set(names)
    assert "reader-gone" not in names


def test_runs_and_children_are_read_past_mlflow_s_default_page(store, monkeypatch):
    # MLflow returns 1000 runs unless asked for more: a sweep's trials would be cut short.
    reader = StoreReader()
    asked = []
    real = reader.client.search_runs

    def search_runs(*args, **kwargs):
        asked.append(kwargs.get("max_results"))
        return real(*args, **kwargs)

    monkeypatch.setattr(reader.client, "search_runs", search_runs)
    assert len(reader.children(store["new"])) == 2
    assert len(reader.runs("reader-a")) == 4
    assert len(asked) == 2 and all(n is not None and n >= 5000 for n in asked)
