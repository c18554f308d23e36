"""Tracker: files, folders and figures logged where asked, read back as data only, leaving
nothing behind; a launched run taken over; a resumed run's prefixed params."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import matplotlib
import mlflow
import pytest
import torch
from matplotlib import pyplot as plt
from mlflow.tracking import MlflowClient

from lfxai.tracking import ResumedTracker, Tracker, ensure_experiment
from lfxai.tracking.tags import MOVED_TO_TAG, NOTE_TAG, RUN_NAME_TAG
from tests.helpers import open_run


class _Payload:
    """Not a tensor: ``weights_only`` must refuse to rebuild it."""

    def __reduce__(self):
        return (print, ("unpickled",))


def test_files_and_folders_land_where_asked(mlflow_store, tmp_path):
    tracker = Tracker(open_run().info.run_id)
    (tmp_path / "tree" / "deep").mkdir(parents=True)
    (tmp_path / "tree" / "deep" / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    tracker.log_folder(tmp_path / "tree", "figures")
    tracker.log_file(tmp_path / "b.txt", "notes")
    tracker.log_file(tmp_path / "b.txt")
    client = MlflowClient()
    assert [a.path for a in client.list_artifacts(tracker.run_id)] == ["b.txt", "figures", "notes"]
    assert [a.path for a in client.list_artifacts(tracker.run_id, "figures/deep")] == [
        "figures/deep/a.txt"
    ]
    assert [a.path for a in client.list_artifacts(tracker.run_id, "notes")] == ["notes/b.txt"]


def test_logged_tensors_and_arrays_come_back_as_data_and_nothing_is_left_behind(
    mlflow_store, tmp_path, temp_leftovers
):
    tracker = Tracker(open_run().info.run_id)
    tracker.log_state_dict(torch.nn.Linear(2, 1), "models/state.pt")
    tracker.log_array(torch.arange(3), "arrays/a.npy")
    state = tracker.load_state_dict("models/state.pt")
    assert sorted(state) == ["bias", "weight"] and state["weight"].shape == (1, 2)
    assert tracker.load_array("arrays/a.npy").tolist() == [0, 1, 2]
    assert list(temp_leftovers.iterdir()) == []
    bad = tmp_path / "bad.pt"
    torch.save({"weight": _Payload()}, bad)
    tracker.log_file(bad, "models")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        tracker.load_state_dict("models/bad.pt")


def test_a_launched_run_points_to_the_run_that_did_the_work(mlflow_store):
    launched = open_run(tags={"mlflow.source.name": "file:///project", "other": "x"}).info.run_id
    client = MlflowClient()
    client.log_param(launched, "storage", "postgresql://me:secret@db/optuna")
    ensure_experiment("mnist-roar_test")
    worker = Tracker(open_run("mnist-roar_test").info.run_id)
    with mlflow.start_run(run_id=worker.run_id):
        worker.take_over(launched)
    work = client.get_run(worker.run_id).data
    assert work.tags["mlflow.source.name"] == "file:///project" and "other" not in work.tags
    assert "secret" not in work.params["storage"]
    pointer = client.get_run(launched).data.tags
    assert pointer[MOVED_TO_TAG] == worker.run_id
    assert pointer[RUN_NAME_TAG] == "-> mnist-roar_test"
    assert pointer[NOTE_TAG] == (
        f"`mlflow run` started this run in Default; the work ran as run `{worker.run_id}` of "
        "the experiment `mnist-roar_test`. Pass `--experiment-name mnist-roar_test` to "
        "`mlflow run` to start there directly."
    )


def test_a_resumed_run_logs_only_the_prefixed_params_it_lacks(mlflow_store):
    run_id = open_run().info.run_id
    Tracker(run_id).log_params({"seed": 1}, prefix="config.")
    ResumedTracker(run_id).log_params({"seed": 2, "lr": 0.5}, prefix="config.")
    assert MlflowClient().get_run(run_id).data.params == {"config.seed": "1", "config.lr": "0.5"}


def test_a_figure_is_logged_cropped_at_150_dpi(mlflow_store, tmp_path):
    matplotlib.use("Agg")
    figure, axis = plt.subplots(figsize=(2, 1))
    axis.plot([0, 1], [1, 0])
    tracker = Tracker(open_run().info.run_id)
    tracker.log_figure(figure, "figs/curve")
    expected = io.BytesIO()
    figure.savefig(expected, format="png", bbox_inches="tight", dpi=150)
    plt.close(figure)
    local = MlflowClient().download_artifacts(tracker.run_id, "figs/curve.png", str(tmp_path))
    assert _png_size(Path(local).read_bytes()) == _png_size(expected.getvalue())
    assert _png_size(expected.getvalue())[0] != 2 * 150  # cropped: not the whole canvas


def _png_size(data: bytes) -> tuple[int, int]:
    """A PNG's width and height (its IHDR chunk)."""
    return struct.unpack(">II", data[16:24])
