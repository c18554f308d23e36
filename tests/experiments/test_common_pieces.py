"""The shared experiment pieces on a recording tracker: what each logs, names and reuses.

No store and no training: a stand-in tracker records every call, so each rule (a metric's
name, a tag, a digest's inputs, which registered version is reused) is pinned in milliseconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

import lfxai.experiments  # noqa: F401  (fills the registry)
from lfxai.config import ConfigError, build_config, load_profile
from lfxai.data.provision import Provisioned, data_digest
from lfxai.data.splits import Split
from lfxai.experiments import common
from lfxai.experiments.registry import get_experiment
from lfxai.models.images import EncoderMnist
from lfxai.plugins import Splits, get_dataset
from lfxai.tracking import DATA_DIGEST_TAG, ENCODER_URI_TAG, EncoderRefused, encoder_description
from lfxai.training import FitResult


@dataclass
class RecordingTracker:
    """Records what an experiment piece logs; answers alias lookups from ``versions``."""

    run_tags: dict[str, str] = field(default_factory=dict)
    versions: dict[tuple[str, str], str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: list[tuple[dict[str, float], int]] = field(default_factory=list)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    registered: list[dict[str, Any]] = field(default_factory=list)

    def tags(self) -> dict[str, str]:
        return dict(self.run_tags)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.run_tags.update({k: str(v) for k, v in tags.items()})

    def log_params(self, params: dict[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        self.metrics.append((dict(metrics), step))

    def log_dataset(self, name, x, y, source, digest, context) -> None:
        self.datasets.append(
            {"name": name, "n": (len(x), len(y)), "source": source, "digest": digest}
            | {"context": context}
        )

    def model_version_by_alias(self, name: str, alias: str) -> Any:
        version = self.versions.get((name, alias))
        return None if version is None else SimpleNamespace(version=version)

    def register_encoder(self, model, example, name, test_loss, about, details, tags) -> str:
        self.registered.append(
            {"name": name, "test_loss": test_loss, "about": about, "details": details, "tags": tags}
            | {"model": model, "example": example}
        )
        return f"models:/{name}/7" if name else "runs:/abc/encoder"


class FakePlugin:
    """A data set whose files are ``files`` (path -> sha256) and whose splits are given."""

    name = "fake"
    title = "Fake"

    def __init__(self, folder: Path, splits: Splits, repaired: list[str] | None = None) -> None:
        self.folder = folder
        self.splits = splits
        self.repaired = repaired or []
        self.files = {folder / "a.bin": "1" * 64, folder / "b.bin": "2" * 64}
        self.loaded: list[tuple] = []
        self.files_asked: list[str] = []

    def provision(self, data_dir: str) -> Provisioned:
        return Provisioned(self.folder, "present", list(self.repaired))

    def load(self, data_dir, split, seed, n_train, n_test) -> Splits:
        self.loaded.append((data_dir, split, seed, n_train, n_test))
        return self.splits

    def provisioned_files(self, data_dir) -> dict[Path, str]:
        self.files_asked.append(data_dir)
        return self.files

    def model_label(self, pretext: str) -> str:
        return f"{pretext} AE"


def _split(n: int, offset: int = 0) -> Split:
    return Split(torch.arange(offset, offset + n, dtype=torch.float32)[:, None], torch.zeros(n))


def _config(experiment: str = "consistency_features", **overrides: str):
    schema = get_experiment("mnist", experiment).schema
    values = load_profile("mnist", experiment, "smoke")
    return build_config(schema, values, {"seed": "3", **overrides})


def _splits(explain_is_test: bool = True) -> Splits:
    test = _split(4, 100)
    return Splits(_split(6), test, test if explain_is_test else _split(3, 200))


# --------------------------------------------------------------------------- data inputs


def test_load_splits_logs_sizes_device_source_and_only_real_repairs(tmp_path) -> None:
    plugin, config = FakePlugin(tmp_path, _splits()), _config()
    tracker = RecordingTracker()
    splits = common.load_splits(plugin, config, tracker)
    assert splits is plugin.splits
    assert plugin.loaded == [(config.data_dir, config.split, 3, config.n_train, config.n_test)]
    assert tracker.params == {
        "n_train_used": 6,
        "n_test_used": 4,
        "device_used": torch.device("cpu"),
    }
    assert tracker.run_tags["lfxai.data_source"] == "present"
    assert "lfxai.data_repaired" not in tracker.run_tags  # nothing repaired: no tag
    repaired = FakePlugin(tmp_path, _splits(), repaired=["a.bin: bad", "b.bin: bad"])
    tracker = RecordingTracker()
    common.load_splits(repaired, config, tracker)
    assert tracker.run_tags["lfxai.data_repaired"] == "a.bin: bad\nb.bin: bad"


def test_load_splits_without_a_tracker_logs_nothing_and_still_provisions(tmp_path) -> None:
    plugin = FakePlugin(tmp_path, _splits())
    calls = []
    plugin.provision = lambda data_dir: calls.append(data_dir) or Provisioned(tmp_path, "x", [])
    assert common.load_splits(plugin, _config(), None) is plugin.splits
    assert calls == [_config().data_dir]


def test_a_split_s_digest_is_its_files_and_how_it_was_drawn(tmp_path) -> None:
    plugin, config = FakePlugin(tmp_path, _splits()), _config()
    digest = common.split_digest(plugin, config, "train", 6)
    selection = f"dataset=fake;split={config.split};seed=3;train=6"
    assert digest == data_digest(["1" * 64, "2" * 64], selection)
    assert plugin.files_asked == [config.data_dir]
    others = {
        common.split_digest(plugin, config, "test", 6),
        common.split_digest(plugin, config, "train", 5),
        common.split_digest(plugin, _config(seed="4"), "train", 6),
    }
    assert digest not in others and len(others) == 3


@pytest.mark.parametrize("explain_is_test", [True, False])
def test_each_role_is_logged_as_an_input_and_the_train_digest_tagged(
    tmp_path, explain_is_test
) -> None:
    plugin, config = FakePlugin(tmp_path, _splits(explain_is_test)), _config()
    tracker = RecordingTracker()
    common.log_data_inputs(tracker, plugin, config, plugin.splits)
    roles = ["train", "test"] if explain_is_test else ["train", "test", "explain"]
    sizes = {"train": 6, "test": 4, "explain": 3}
    assert tracker.datasets == [
        {
            "name": f"fake-{config.split}-{role}",
            "n": (sizes[role], sizes[role]),
            "source": tmp_path,  # the provisioned files' folder
            "digest": common.split_digest(plugin, config, role, sizes[role]),
            "context": role,
        }
        for role in roles
    ]
    assert tracker.run_tags == {DATA_DIGEST_TAG: common.split_digest(plugin, config, "train", 6)}
    assert set(plugin.files_asked) == {config.data_dir}


# --------------------------------------------------------------------------- training


def _fake_fit(calls: list[dict[str, Any]], result: FitResult):
    def fit(model, train, test, device, training, checkpoint_dir=None, on_epoch=None):
        calls.append({"train": train, "test": test, "device": device, "dir": checkpoint_dir})
        calls[-1] |= {"model": model, "training": training}
        for epoch, (a, b) in enumerate(zip(result.train_loss, result.test_loss, strict=True)):
            on_epoch(epoch, {"train_loss": a, "test_loss": b})
        return result

    return fit


def test_tracked_fit_logs_each_epoch_at_its_step_and_the_best_under_the_prefix(
    tmp_path, monkeypatch
) -> None:
    result = FitResult([3.0, 2.0, 2.5], [1.5, 1.0, 1.25], best_epoch=1, best_test_loss=1.0)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(common, "fit", _fake_fit(calls, result))
    tracker, train, test = RecordingTracker(), _split(6), _split(4)
    device = torch.device("cpu")
    begun = time.perf_counter()
    model, training = nn.Linear(1, 1), _config().training()
    out = common.tracked_fit(model, training, device, tracker, train, test, "ae", tmp_path)
    elapsed = time.perf_counter() - begun
    assert out is result
    assert calls == [
        {"train": train, "test": test, "device": device, "dir": tmp_path}
        | {"model": model, "training": training}
    ]
    per_epoch, (final, step) = tracker.metrics[:3], tracker.metrics[3]
    assert per_epoch == [
        ({"ae/train_loss": 3.0, "ae/test_loss": 1.5}, 0),
        ({"ae/train_loss": 2.0, "ae/test_loss": 1.0}, 1),
        ({"ae/train_loss": 2.5, "ae/test_loss": 1.25}, 2),
    ]
    assert step == 0 and len(tracker.metrics) == 4
    seconds = final.pop("time/ae_seconds")
    assert 0 <= seconds <= elapsed  # the fit's own duration, within the call's
    assert final == {
        "ae/best_test_loss": 1.0,
        "ae/best_epoch": 1,
        "ae/epochs": 3,
        "time/ae_seconds_per_epoch": pytest.approx(seconds / 3),
    }


def test_tracked_fit_uses_the_given_epoch_logger_and_survives_zero_epochs(monkeypatch) -> None:
    monkeypatch.setattr(common, "fit", _fake_fit([], FitResult([], [])))
    tracker, seen = RecordingTracker(), []
    common.tracked_fit(
        nn.Linear(1, 1),
        _config().training(),
        torch.device("cpu"),
        tracker,
        _split(2),
        _split(2),
        log_epoch=lambda epoch, losses: seen.append(epoch),
    )
    ((final, _),) = tracker.metrics
    assert final["fit/epochs"] == 0 and final["fit/best_epoch"] == -1
    assert final["time/fit_seconds_per_epoch"] == final["time/fit_seconds"]  # not a division by 0


def test_fit_or_reuse_trains_and_logs_the_encoder_with_the_best_test_loss(
    tmp_path, monkeypatch
) -> None:
    result = FitResult([2.0], [0.75], best_epoch=0, best_test_loss=0.75)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(common, "fit", _fake_fit(calls, result))
    plugin, config = get_dataset("mnist"), _config()
    model = plugin.build_model(4, (1, 28, 28), "denoising", "mnist_ae")
    tracker, train, test, example = RecordingTracker(), _split(2), _split(2), torch.rand(3, 1)
    out = common.fit_or_reuse(model, plugin, config, tracker, train, test, example, tmp_path)
    assert out is result and calls[0]["dir"] == tmp_path
    assert calls[0]["device"] == torch.device("cpu")
    assert (calls[0]["model"], calls[0]["train"], calls[0]["test"]) == (model, train, test)
    assert calls[0]["training"] == config.training()
    (registered,) = tracker.registered
    assert registered["test_loss"] == 0.75
    assert registered["model"] is model and registered["example"] is example
    assert registered["name"] == ("lfxai-mnist-denoising-ae-d4" if config.register_model else None)


def test_fit_or_reuse_with_pretrained_reuses_and_trains_nothing(monkeypatch) -> None:
    monkeypatch.setattr(common, "fit", lambda *a, **k: pytest.fail("trained"))
    reused = []
    monkeypatch.setattr(common, "reuse_encoder", lambda *a: reused.append(a) or "models:/x/1")
    plugin, config = get_dataset("mnist"), _config(pretrained="true")
    model = plugin.build_model(4, (1, 28, 28), "denoising", "mnist_ae")
    tracker = RecordingTracker()
    assert common.fit_or_reuse(model, plugin, config, tracker, _split(2), _split(2), None) is None
    assert reused == [(tracker, plugin, config, model.encoder)] and tracker.registered == []


class _WithoutPretrained:
    """A config of an experiment that has no ``pretrained`` setting (e.g. the sweep's)."""

    def __init__(self, config) -> None:
        self.config = config

    def __getattr__(self, name: str):
        if name == "pretrained":
            raise AttributeError(name)
        return getattr(self.config, name)


def test_a_config_without_a_pretrained_setting_trains(monkeypatch) -> None:
    result = FitResult([2.0], [0.5], best_epoch=0, best_test_loss=0.5)
    monkeypatch.setattr(common, "fit", _fake_fit([], result))
    monkeypatch.setattr(common, "reuse_encoder", lambda *a: pytest.fail("reused"))
    plugin = get_dataset("mnist")
    model = plugin.build_model(4, (1, 28, 28), "denoising", "mnist_ae")
    config = _WithoutPretrained(_config())
    tracker = RecordingTracker()
    example = torch.rand(2, 1, 28, 28)
    fitted = common.fit_or_reuse(model, plugin, config, tracker, _split(2), _split(2), example)
    assert fitted is result
    assert len(tracker.registered) == 1


# --------------------------------------------------------------------------- reuse


def _reuse(tracker: RecordingTracker, monkeypatch, experiment: str = "consistency_features"):
    """Runs reuse_encoder with the store's loader replaced; returns (uri, loaded uris)."""
    loaded: list[str] = []
    state = EncoderMnist(4).state_dict()

    def load(uri: str) -> nn.Module:
        loaded.append(uri)
        encoder = EncoderMnist(4)
        encoder.load_state_dict(state)
        return encoder

    monkeypatch.setattr(common, "load_encoder", load)
    fresh = EncoderMnist(4)
    uri = common.reuse_encoder(tracker, get_dataset("mnist"), _config(experiment), fresh)
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    return uri, loaded


NAME = "lfxai-mnist-denoising-ae-d4"


def test_shared_training_experiments_reuse_the_newer_of_their_two_versions(monkeypatch) -> None:
    run = {"lfxai.experiment": "consistency_examples", "lfxai.profile": "quick"}
    versions = {
        (NAME, "consistency_features-quick"): "12",  # compared as numbers: 12 > 9
        (NAME, "consistency_examples-quick"): "9",
        (NAME, "quick"): "30",  # the profile's alias: pretext's or a sweep's, never reused
        (NAME, "consistency_features-paper"): "40",  # another profile
    }
    tracker = RecordingTracker(dict(run), versions)
    uri, loaded = _reuse(tracker, monkeypatch, "consistency_examples")
    assert uri == loaded[0] == f"models:/{NAME}/12"
    assert tracker.run_tags["lfxai.pretrained"] == tracker.run_tags[ENCODER_URI_TAG] == uri


def test_other_experiments_reuse_only_their_own_alias(monkeypatch) -> None:
    versions = {(NAME, "pretext-paper"): "2", (NAME, "consistency_features-paper"): "5"}
    tracker = RecordingTracker({"lfxai.experiment": "pretext"}, versions)  # no profile: paper
    uri, _ = _reuse(tracker, monkeypatch)
    assert uri == f"models:/{NAME}/2"


def test_a_missing_encoder_names_every_alias_looked_for_and_how_to_make_one(monkeypatch) -> None:
    tracker = RecordingTracker({"lfxai.experiment": "consistency_features", "lfxai.profile": "s"})
    with pytest.raises(ConfigError) as error:
        _reuse(tracker, monkeypatch)
    assert str(error.value) == (
        f"pretrained=true: no registered encoder {NAME}@consistency_features-s or "
        f"{NAME}@consistency_examples-s; run consistency_features or consistency_examples once "
        "with pretrained=false (and register_model=true) to register one"
    )
    assert "lfxai.pretrained" not in tracker.run_tags


def test_a_refused_or_misfitting_version_is_a_config_error_and_tags_nothing(monkeypatch) -> None:
    run = {"lfxai.experiment": "pretext", "lfxai.profile": "paper"}
    tracker = RecordingTracker(dict(run), {(NAME, "pretext-paper"): "1"})

    def refuse(uri: str) -> nn.Module:
        raise EncoderRefused(f"{uri} holds a pickle")

    monkeypatch.setattr(common, "load_encoder", refuse)
    plugin, config = get_dataset("mnist"), _config()
    with pytest.raises(ConfigError, match=rf"^pretrained=true: models:/{NAME}/1 holds a pickle$"):
        common.reuse_encoder(tracker, plugin, config, EncoderMnist(4))
    monkeypatch.setattr(common, "load_encoder", lambda uri: nn.Linear(2, 2))
    fits = rf"^pretrained=true: the state from models:/{NAME}/1 does not fit EncoderMnist: missing"
    with pytest.raises(ConfigError, match=fits):
        common.reuse_encoder(tracker, plugin, config, EncoderMnist(4))
    assert tracker.run_tags == run


# --------------------------------------------------------------------------- names


def test_names_and_titles_carry_data_set_pretext_and_latent_size() -> None:
    mnist, ecg = get_dataset("mnist"), get_dataset("ecg5000")
    config = _config(dim_latent="5")
    assert common.encoder_name(mnist, config) == "lfxai-mnist-denoising-ae-d5"
    assert common.model_title(mnist, config) == "MNIST denoising AE (d=5)"
    schema = get_experiment("ecg5000", "consistency_features").schema
    values = load_profile("ecg5000", "consistency_features", "smoke")
    ecg_config = build_config(schema, values, {"dim_latent": "3"})
    assert common.encoder_name(ecg, ecg_config) == f"lfxai-ecg5000-{_label(ecg, ecg_config)}-d3"


def _label(plugin, config) -> str:
    return plugin.model_label(config.pretext).lower().replace(" ", "-").replace("_", "-")


def test_the_logged_encoder_is_described_and_tagged_with_its_settings(tmp_path) -> None:
    plugin = get_dataset("mnist")
    config = _config(dim_latent="5", register_model="true")
    tracker = RecordingTracker()
    uri = common.log_encoder(
        tracker, plugin, config, nn.Linear(1, 1), torch.zeros(2, 1, 28, 28), 0.5
    )
    assert uri == "models:/lfxai-mnist-denoising-ae-d5/7" == tracker.run_tags[ENCODER_URI_TAG]
    (registered,) = tracker.registered
    assert registered["tags"] == {"lfxai.pretext": "denoising", "lfxai.dim_latent": 5}
    assert registered["details"] == (
        f"trained on mnist split '{config.split}', n_epochs={config.n_epochs}, seed=3"
    )
    what = "the MNIST denoising AE"
    name = "lfxai-mnist-denoising-ae-d5"
    assert registered["about"] == encoder_description(name, "1, 28, 28", 5, what)
    unregistered = _config(register_model="false")
    tracker = RecordingTracker()
    uri = common.log_encoder(tracker, plugin, unregistered, nn.Linear(1, 1), torch.zeros(2, 3), 1)
    assert uri == "runs:/abc/encoder" and tracker.registered[0]["name"] is None
    about = encoder_description("<name>", "3", unregistered.dim_latent, what)
    assert tracker.registered[0]["about"] == about


def test_new_models_get_the_settings_latent_size_input_shape_and_pretext() -> None:
    plugin, config = get_dataset("mnist"), _config(dim_latent="3")
    splits = Splits(Split(torch.zeros(2, 1, 28, 28), torch.zeros(2)), _split(1), _split(1))
    model = common.new_model(plugin, config, splits, "mnist_ae")
    with torch.no_grad():
        assert model.encoder(torch.zeros(2, 1, 28, 28)).shape == (2, 3)
    built = []
    stand_in = SimpleNamespace(build_model=lambda *args: built.append(args) or "model")
    assert common.new_model(stand_in, config, splits, "mnist_ae") == "model"
    assert built == [(3, (1, 28, 28), config.pretext, "mnist_ae")]


def test_scratch_folders_are_new_private_and_prefixed() -> None:
    first, second = common.scratch_dir(), common.scratch_dir()
    try:
        assert first != second and first.is_dir() and second.is_dir()
        assert first.name.startswith("lfxai-")
        assert first.stat().st_mode & 0o077 == 0  # mkdtemp: only the owner may read it
    finally:
        first.rmdir()
        second.rmdir()


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        (
            "pretext",
            "bogus",
            "unknown pretext entry 'bogus'; valid choices: "
            "['denoising', 'inpainting', 'reconstruction']",
        ),
        ("n_train", "0", "n_train must be positive, got 0"),
        ("n_test", "-1", "n_test must be positive, got -1"),
    ],
)
def test_a_bad_autoencoder_setting_is_named_with_its_value(setting, value, message) -> None:
    with pytest.raises(ConfigError) as refused:
        _config(**{setting: value})
    assert str(refused.value) == message
