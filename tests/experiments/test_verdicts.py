"""What every experiment logs at its end: the claims headed by the run's profile and epochs,
and the example maps titled as the caller asks."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import torch

from lfxai.experiments.verdicts import log_claims, log_example_maps
from lfxai.plugins import get_dataset
from lfxai.tracking import StoreReader, Tracker
from tests.report.conftest import feature_evidence, feature_table


def test_the_claims_are_headed_by_the_runs_profile_and_epochs(mlflow_store) -> None:
    run_id = mlflow.start_run(tags={"lfxai.profile": "quick"}).info.run_id
    tracker = Tracker(run_id)
    tracker.log_params({"config.n_epochs": "3"})
    tracker.log_metrics({"fit/epochs": 2.0})
    table = feature_table([1.0, 1.5, 2.0], [0.5, 1.0, 2.0])
    log_claims(tracker, "consistency_features", table, "MNIST AE", feature_evidence(6, 0.5))
    mlflow.end_run()
    heading = "MNIST AE · quick profile · 3 epochs, stopped early after 2"
    reader = StoreReader()
    report = json.loads(reader.read_text(run_id, "claims.json"))
    assert (report["experiment"], report["title"]) == ("consistency_features", heading)
    assert heading in reader.read_text(run_id, "claims.md").splitlines()[0]
    run = reader.run(run_id)
    assert heading in run.tags["mlflow.note.content"]  # the run's description
    assert run.metrics["claims/all_hold"] == 1.0


def test_a_claim_on_figures_that_are_not_numbers_is_logged_inconclusive(mlflow_store) -> None:
    run_id = mlflow.start_run().info.run_id
    diverged = feature_table([np.nan] * 3, [0.5, 1.0, 2.0])  # e.g. a model that diverged
    log_claims(Tracker(run_id), "consistency_features", diverged, "MNIST AE")
    mlflow.end_run()
    (claim,) = json.loads(StoreReader().read_text(run_id, "claims.json"))["claims"]
    assert claim["verdict"] == "inconclusive"
    assert np.isnan(claim["figures"][0]["Saliency"])


def test_a_run_without_a_profile_tag_says_so_in_the_heading(mlflow_store) -> None:
    run_id = mlflow.start_run().info.run_id
    tracker = Tracker(run_id)
    table = feature_table([1.0, 1.5, 2.0], [0.5, 1.0, 2.0])
    log_claims(tracker, "consistency_features", table, "MNIST AE")
    mlflow.end_run()
    title = json.loads(StoreReader().read_text(run_id, "claims.json"))["title"]
    assert title == "MNIST AE · ? profile · epochs not logged"


class _Figures:
    """The tracker's one call here: the figures logged, by path."""

    def __init__(self) -> None:
        self.figures: dict[str, object] = {}

    def log_figure(self, figure, path: str) -> None:
        self.figures[path] = figure


def test_example_maps_are_titled_as_asked_and_untitled_by_default() -> None:
    tracker, mnist = _Figures(), get_dataset("mnist")
    inputs, maps = torch.rand(2, 1, 28, 28), [np.random.default_rng(0).random((2, 1, 28, 28))]
    log_example_maps(tracker, mnist, inputs, maps, ["Saliency"], "titled", title="a title")
    log_example_maps(tracker, mnist, inputs, maps, ["Saliency"], "untitled")
    assert tracker.figures["titled"].texts[0].get_text() == "a title"
    assert all(t.get_text() == "" for t in tracker.figures["untitled"].texts)


class _Recorder:
    """A stand-in tracker: a smoke-profile run of 2 epochs that records what is logged."""

    def __init__(self) -> None:
        self.arrays: dict[str, dict[str, np.ndarray]] = {}
        self.texts: dict[str, str] = {}
        self.logged: dict[str, float] = {}
        self.description = ""

    def params(self) -> dict[str, str]:
        return {"config.n_epochs": "2"}

    def metrics(self) -> dict[str, float]:
        return {"fit/epochs": 2.0}

    def tags(self) -> dict[str, str]:
        return {"lfxai.profile": "smoke"}

    def log_arrays(self, arrays: dict[str, np.ndarray], name: str) -> None:
        self.arrays[name] = arrays

    def log_text(self, text: str, name: str) -> None:
        self.texts[name] = text

    def log_metrics(self, metrics: dict[str, float]) -> None:
        self.logged |= metrics

    def append_description(self, text: str) -> None:
        self.description += text


def test_the_evidence_and_verdicts_are_logged_as_files_metrics_and_description() -> None:
    tracker = _Recorder()
    evidence = feature_evidence(6, 0.5)
    table = feature_table([1.0, 1.5, 2.0], [0.5, 1.0, 2.0])
    claims = log_claims(tracker, "consistency_features", table, "MNIST AE", evidence)
    (saved,) = tracker.arrays.values()
    assert list(tracker.arrays) == ["claims_evidence.npz"] and set(saved) == set(evidence)
    for key, values in evidence.items():
        np.testing.assert_array_equal(saved[key], values)
    title = "MNIST AE · smoke profile · 2 epochs"
    report = {
        "experiment": "consistency_features",
        "title": title,
        "claims": [c.to_dict() for c in claims],
    }
    assert tracker.texts["claims.json"] == json.dumps(report, indent=2, allow_nan=True)
    assert tracker.texts["claims.md"].splitlines()[0].endswith(title)
    assert tracker.description == tracker.texts["claims.md"]
    assert tracker.logged["claims/all_hold"] == 1.0


def test_without_evidence_no_evidence_file_is_logged() -> None:
    tracker = _Recorder()
    table = feature_table([1.0, 1.5, 2.0], [0.5, 1.0, 2.0])
    log_claims(tracker, "consistency_features", table, "MNIST AE")
    assert tracker.arrays == {} and set(tracker.texts) == {"claims.json", "claims.md"}
