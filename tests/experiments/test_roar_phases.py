"""ROAR's base model and importance phases on a recording tracker: what each logs, under which
key, and what the attribution is handed (no store, no training, a fake clock)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from lfxai.data.splits import Split
from lfxai.experiments import roar_test

TAG = "lfxai.roar_test."
# The phases are private functions of the experiment; these tests pin each one alone.
importance = roar_test._importance  # noqa: SLF001
base_model = roar_test._base_model  # noqa: SLF001


@dataclass
class Tracker:
    """Records what a phase logs; serves back what was logged."""

    calls: list[tuple] = field(default_factory=list)
    states: dict[str, dict] = field(default_factory=dict)

    def log_metrics(self, metrics, step=0):
        self.calls.append(("log_metrics", dict(metrics)))

    def log_array(self, array, path):
        self.calls.append(("log_array", np.asarray(array), path))

    def set_tags(self, tags):
        self.calls.append(("set_tags", dict(tags)))

    def log_state_dict(self, model, path):
        self.states[path] = {k: v.clone() for k, v in model.state_dict().items()}
        self.calls.append(("log_state_dict", path))

    def load_state_dict(self, path):
        return self.states[path]

    def of(self, kind: str) -> list[tuple]:
        return [call[1:] for call in self.calls if call[0] == kind]


class Dataset:
    """A plugin whose baseline is recognisable."""

    name = "fake"

    def baseline(self, split: Split) -> torch.Tensor:
        return torch.full_like(split.x[:1], 0.25)


def test_importance_attributes_the_training_set_with_the_dataset_s_baseline(monkeypatch):
    train = Split(torch.rand(6, 1, 2, 2), torch.arange(6))
    encoder = nn.Flatten()
    made, handed = [], []

    def make(method, model, seed):
        made.append((method, model, seed))
        return "attribution method"

    def attribute(model, loader, device, method, baseline):
        handed.append((model, torch.cat([b[0] for b in loader]), device, method, baseline))
        return np.arange(24.0).reshape(6, 1, 2, 2)

    clock = iter([10.0, 13.0])
    monkeypatch.setattr(roar_test, "make_feature_method", make)
    monkeypatch.setattr(roar_test, "attribute_auxiliary", attribute)
    monkeypatch.setattr(roar_test, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    config = SimpleNamespace(seed=7, attribution_batch_size=4)
    tracker = Tracker()
    device = torch.device("cpu")
    scores = importance(config, Dataset(), tracker, {}, "Saliency", encoder, train, device)

    assert made == [("Saliency", encoder, 7)]
    ((model, seen, on, method, baseline),) = handed
    assert model is encoder and on == device and method == "attribution method"
    assert torch.equal(seen, train.x)  # in order: scores[i] belongs to train.x[i]
    assert torch.equal(baseline, torch.full((1, 1, 2, 2), 0.25))
    assert torch.equal(scores, torch.arange(24.0).reshape(6, 1, 2, 2).double())
    assert tracker.of("log_metrics") == [
        ({"time/attribution_seconds/Saliency": 3.0, "throughput/Saliency_images_per_second": 2.0},)
    ]
    ((array, path),) = tracker.of("log_array")
    assert path == "attributions/Saliency.npy" and np.array_equal(array, scores.numpy())
    assert tracker.of("set_tags") == [({TAG + "attributions.Saliency": path},)]


def test_a_model_free_method_explains_the_identity(monkeypatch):
    made = []
    monkeypatch.setattr(roar_test, "make_feature_method", lambda m, model, seed: made.append(model))
    monkeypatch.setattr(roar_test, "attribute_auxiliary", lambda *args: np.zeros((2, 1)))
    train = Split(torch.rand(2, 1), torch.arange(2))
    config = SimpleNamespace(seed=0, attribution_batch_size=2)
    importance(config, Dataset(), Tracker(), {}, "Random", None, train, torch.device("cpu"))
    assert isinstance(made[0], nn.Identity)


def test_a_resumed_importance_is_reloaded_not_recomputed(monkeypatch):
    monkeypatch.setattr(roar_test, "attribute_auxiliary", lambda *args: 1 / 0)
    tracker = Tracker()
    tracker.load_array = lambda path: np.full((2, 1), 3.0) if path == "attributions/A.npy" else None
    tags = {TAG + "attributions.A": "attributions/A.npy"}
    scores = importance(None, Dataset(), tracker, tags, "A", None, None, None)
    assert torch.equal(scores, torch.full((2, 1), 3.0, dtype=torch.float64)) and tracker.calls == []


def test_the_base_model_is_logged_once_trained_and_reloaded_on_resume(monkeypatch):
    logged = []
    monkeypatch.setattr(roar_test, "log_encoder", lambda *args: logged.append(args))
    torch.manual_seed(0)
    trained = nn.Linear(2, 1)
    splits = SimpleNamespace(test=Split(torch.rand(5, 2), torch.arange(5)))
    models = SimpleNamespace(dataset="the dataset")
    tracker = Tracker()
    model, loss = base_model("config", models, tracker, {}, splits, (trained, 0.125))
    assert model is trained and loss == 0.125
    assert tracker.of("log_metrics") == [({"roar/base_test_loss": 0.125},)]
    assert tracker.of("log_state_dict") == [(roar_test.BASE_WEIGHTS,)]
    ((_, dataset, config, encoder, example, encoder_loss),) = logged
    assert (dataset, config, encoder, encoder_loss) == ("the dataset", "config", trained, 0.125)
    assert torch.equal(example, splits.test.x[:2])
    assert tracker.of("set_tags") == [({TAG + "base_test_loss": "0.125"},)]

    made = []

    def factory(name):
        made.append(nn.Linear(2, 1))
        return made[-1]

    tags = {TAG + "base_test_loss": "0.125"}
    model, loss = base_model("config", factory, tracker, tags, splits, None)
    assert model is made[0] and not model.training and loss == 0.125
    assert torch.equal(model.weight, trained.weight) and torch.equal(model.bias, trained.bias)
