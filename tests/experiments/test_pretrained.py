"""`pretrained=true`: the registered encoder of the same settings, loaded strictly, or an error."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

import lfxai.experiments  # noqa: F401  (fills the registry)
from lfxai.config import ConfigError, build_config, load_profile
from lfxai.experiments.common import encoder_name, reuse_encoder
from lfxai.experiments.registry import get_experiment
from lfxai.models.images import EncoderMnist
from lfxai.models.registry import ModelSpec, build_model
from lfxai.models.stored import STATE_FILE
from lfxai.plugins import get_dataset
from lfxai.tracking import tracked_run


def _config():
    schema = get_experiment("mnist", "consistency_features").schema
    values = load_profile("mnist", "consistency_features", "smoke")
    return build_config(schema, values, {"pretrained": "true"})


RUN_TAGS = {"lfxai.profile": "smoke", "lfxai.experiment": "consistency_features"}
ALIAS = "consistency_features-smoke"  # what this experiment's pretrained=true reuses


def _register(name: str, alias: str = ALIAS, seed: int = 0) -> tuple[str, nn.Module]:
    """Logs a (random) MNIST autoencoder's encoder as ``name`` with ``alias``."""
    torch.manual_seed(seed)
    trained = build_model("mnist_ae", ModelSpec(4, (1, 28, 28), "denoising")).eval()
    with tracked_run("register") as tracker:
        uri = tracker.log_encoder_model(trained, torch.rand(2, 1, 28, 28), name)
        tracker.client.set_registered_model_alias(name, alias, uri.rsplit("/", 1)[1])
    return uri, trained


def test_reuse_loads_the_profile_s_registered_encoder_strictly(mlflow_store) -> None:
    plugin, config = get_dataset("mnist"), _config()
    name = encoder_name(plugin, config)
    assert name == "lfxai-mnist-denoising-ae-d4"  # the name is the same as before the hook
    with tracked_run("missing") as tracker:
        tracker.set_tags(RUN_TAGS)
        with pytest.raises(ConfigError, match=rf"no registered encoder {name}@{ALIAS}.*"):
            reuse_encoder(tracker, plugin, config, EncoderMnist(4))
    uri, trained = _register(name)
    # A newer version another experiment (pretext) registered under the same name takes
    # the profile's alias, not this experiment's: it is not what pretrained=true reuses.
    _register(name, alias="smoke", seed=1)
    with tracked_run("reuse") as tracker:
        tracker.set_tags(RUN_TAGS)
        fresh = EncoderMnist(4).eval()
        assert reuse_encoder(tracker, plugin, config, fresh) == uri
        assert tracker.tags()["lfxai.pretrained"] == uri
        x = torch.rand(3, 1, 28, 28)
        with torch.no_grad():
            torch.testing.assert_close(fresh(x), trained.encoder(x), rtol=0, atol=0)
        # Another architecture under the same name: refused, naming what does not fit.
        with pytest.raises(ConfigError, match=r"does not fit Sequential: missing keys"):
            reuse_encoder(tracker, plugin, config, nn.Sequential(nn.Linear(2, 2)))


class _Marker:
    """Unpickling it writes a file: what a hostile state file in the store would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "ran"))


def test_reuse_refuses_a_tampered_or_pickled_version(mlflow_store, tmp_path) -> None:
    plugin, config = get_dataset("mnist"), _config()
    name = encoder_name(plugin, config)
    uri, _ = _register(name)
    (state,) = Path(mlflow_store.removeprefix("sqlite:///")).parent.rglob(STATE_FILE)
    marker = tmp_path / "marker"
    torch.save({"encoder_cnn.0.weight": _Marker(marker)}, state)
    with tracked_run("tampered") as tracker:
        tracker.set_tags(RUN_TAGS)
        with pytest.raises(ConfigError, match=rf"pretrained=true: {uri}: .*refused unread"):
            reuse_encoder(tracker, plugin, config, EncoderMnist(4))
    assert not marker.exists()
    # A version logged the old way (a pickled module) under the same alias: never unpickled.
    with tracked_run("pickled"):
        mlflow.pytorch.log_model(
            EncoderMnist(4), name="encoder", serialization_format="pickle",
            registered_model_name=name,
        )  # fmt: skip
    MlflowClient().set_registered_model_alias(name, ALIAS, "2")
    with tracked_run("reuse") as tracker:
        tracker.set_tags(RUN_TAGS)
        with pytest.raises(ConfigError, match=r"/2 has no .*rerun the .* pretrained=false"):
            reuse_encoder(tracker, plugin, config, EncoderMnist(4))
