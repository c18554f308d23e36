"""A registered encoder whose state file was replaced by a pickle that runs code: a
``pretrained=true`` run refuses it, ends FAILED with a one-line error, and the code never runs."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from lfxai.models.registry import ModelSpec, build_model
from lfxai.models.stored import STATE_FILE
from lfxai.tracking import Tracker
from tests.helpers import EXPERIMENT, make_store, mlflow_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.data]

MODEL = "lfxai-mnist-denoising-ae-d4"  # what a smoke consistency_features run reuses


class Payload:
    """Unpickled, writes ``marker`` and returns the state it replaced, so that a loader that
    unpickles goes on as if nothing happened (the run would FINISH)."""

    def __init__(self, marker: Path, original: Path) -> None:
        self.marker, self.original = marker, original

    def __reduce__(self):
        code = (
            f"__import__('pathlib').Path({str(self.marker)!r}).write_text('ran') and "
            f"__import__('torch').load({str(self.original)!r})"
        )
        return (eval, (code,))


def test_pretrained_run_refuses_a_tampered_encoder(tmp_path, data_dir) -> None:
    (tmp_path / "store").mkdir()
    store = make_store(tmp_path / "store")
    mlflow.set_tracking_uri(store)
    try:
        model = build_model("mnist_ae", ModelSpec(4, (1, 28, 28), "denoising"))
        experiment = MlflowClient().get_experiment_by_name(EXPERIMENT).experiment_id
        with mlflow.start_run(experiment_id=experiment) as run:
            tracker = Tracker(run.info.run_id)
            uri = tracker.log_encoder_model(model.eval(), torch.rand(2, 1, 28, 28), MODEL)
        version = uri.rsplit("/", 1)[1]  # the alias pretrained=true of consistency_features reads
        MlflowClient().set_registered_model_alias(MODEL, "consistency_features-smoke", version)
    finally:
        mlflow.set_tracking_uri(None)
    (state,) = (tmp_path / "store").rglob(STATE_FILE)
    original, marker = tmp_path / "original.pt", tmp_path / "marker"
    original.write_bytes(state.read_bytes())
    torch.save(Payload(marker, original), state)

    params = {"name": "consistency_features", "profile": "smoke", "data_dir": str(data_dir)}
    result = mlflow_run("mnist", {**params, "pretrained": "true"}, store)
    assert result.returncode != 0
    assert not marker.exists()
    ours = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert ours == [
        f"error: pretrained=true: {uri}: {STATE_FILE} is not a plain tensor state, refused "
        "unread (UnpicklingError: Unsupported global: GLOBAL eval was not an allowed global "
        "by default)"
    ]
    assert "Traceback" not in result.stderr
    client = MlflowClient(tracking_uri=store)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("mnist-consistency_features").experiment_id]
    )
    assert run.info.status == "FAILED"
    assert run.data.tags["lfxai.error"] == f"ConfigError: {ours[0].removeprefix('error: ')}"
    assert "lfxai.pretrained" not in run.data.tags
