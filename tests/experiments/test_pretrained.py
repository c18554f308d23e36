"""`pretrained=true`: the registered encoder of the same settings, loaded strictly, or an error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lfxai.experiments  # noqa: F401  (fills the registry)
from lfxai.config import ConfigError, build_config, load_profile
from lfxai.experiments.common import encoder_name, reuse_encoder
from lfxai.experiments.registry import get_experiment
from lfxai.models.images import EncoderMnist
from lfxai.plugins import get_dataset
from lfxai.tracking import tracked_run


def _config():
    schema = get_experiment("mnist", "consistency_features").schema
    values = load_profile("mnist", "consistency_features", "smoke")
    return build_config(schema, values, {"pretrained": "true"})


def test_reuse_loads_the_profile_s_registered_encoder_strictly(mlflow_store) -> None:
    plugin, config = get_dataset("mnist"), _config()
    name = encoder_name(plugin, config)
    assert name == "lfxai-mnist-denoising-ae-d4"  # the name is the same as before the hook
    with tracked_run("missing") as tracker:
        tracker.set_tags({"lfxai.profile": "smoke"})
        with pytest.raises(ConfigError, match=rf"no registered encoder {name}@smoke.*"):
            reuse_encoder(tracker, plugin, config, EncoderMnist(4))
    torch.manual_seed(0)
    trained = EncoderMnist(4).eval()
    with tracked_run("register") as tracker:
        uri = tracker.log_model(trained, "encoder", torch.zeros(1, 1, 28, 28), name)
        tracker.client.set_registered_model_alias(name, "smoke", uri.rsplit("/", 1)[1])
    with tracked_run("reuse") as tracker:
        tracker.set_tags({"lfxai.profile": "smoke"})
        fresh = EncoderMnist(4).eval()
        assert reuse_encoder(tracker, plugin, config, fresh) == uri
        assert tracker.tags()["lfxai.pretrained"] == uri
        x = torch.rand(3, 1, 28, 28)
        with torch.no_grad():
            torch.testing.assert_close(fresh(x), trained(x), rtol=0, atol=0)
        # Another architecture under the same name: refused, naming what does not fit.
        with pytest.raises(ConfigError, match=r"does not fit Sequential: missing keys"):
            reuse_encoder(tracker, plugin, config, nn.Sequential(nn.Linear(2, 2)))
