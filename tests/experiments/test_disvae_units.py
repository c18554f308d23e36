"""disvae's rules on a recording tracker: seeds, names, logged keys, the best epoch, summaries.

No store and no real training: the model, the fit and the attribution are stand-ins that
record what they were handed, so that each rule (which seed a run gets, which epoch's
reconstruction is reported, each logged name) is pinned in milliseconds.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lfxai.config import ConfigError, build_config, load_profile
from lfxai.data.splits import Split
from lfxai.experiments import disvae
from lfxai.experiments.disvae import DisvaeConfig, TrialResult, VaeTrial
from lfxai.models.spec import ModelSpec
from lfxai.plugins import Splits
from lfxai.tracking import ENCODER_URI_TAG
from lfxai.training import FitResult


def _config(**overrides: str) -> DisvaeConfig:
    values = load_profile("mnist", "disvae", "smoke")
    return build_config(DisvaeConfig, values, {"device": "cpu", "seed": "7", **overrides})


@dataclass
class RecordingTracker:
    """Records every call an experiment makes on its run (a nested run is another one)."""

    run_id: str = "parent"
    run_tags: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple] = field(default_factory=list)
    children: list[RecordingTracker] = field(default_factory=list)
    uri: str = "models:/x/1"

    def tags(self) -> dict[str, Any]:
        return dict(self.run_tags)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.run_tags.update(tags)
        self.calls.append(("set_tags", dict(tags)))

    def log_params(self, params: dict[str, Any], prefix: str = "") -> None:
        self.calls.append(("log_params", dict(params), prefix))

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        self.calls.append(("log_metrics", dict(metrics), step))

    def log_figure(self, figure: Any, path: str) -> None:
        self.calls.append(("log_figure", figure, path))

    def log_array(self, array: Any, path: str) -> None:
        self.calls.append(("log_array", array, path))

    def log_table(self, frame: pd.DataFrame, path: str) -> None:
        self.calls.append(("log_table", frame, path))

    def register_encoder(self, model, example, name, test_loss, about, details, tags, aliases):
        self.calls.append(
            (
                "register_encoder",
                {
                    "model": model,
                    "example": example,
                    "name": name,
                    "test_loss": test_loss,
                    "about": about,
                    "details": details,
                    "tags": tags,
                    "aliases": aliases,
                },
            )
        )
        return self.uri

    @contextmanager
    def nested(self, name: str):
        child = RecordingTracker(run_id=f"run-{len(self.children)}-{name}")
        self.children.append(child)
        self.calls.append(("nested", name))
        yield child

    def of(self, kind: str) -> list[tuple]:
        return [call[1:] for call in self.calls if call[0] == kind]


class FakePlugin:
    """A data set's plugin that records the figures and factor scores asked of it."""

    name = "fake"
    title = "Fake"

    def __init__(self) -> None:
        self.figures: list[tuple] = []
        self.scored: list[tuple] = []

    def baseline(self, train: Split) -> torch.Tensor:
        return torch.full((1, 2, 2), 0.25) + 0 * train.x[0]

    def example_figure(self, examples, maps, labels, title) -> str:
        self.figures.append((examples, maps, labels, title))
        return f"figure-{len(self.figures)}"

    def factor_scores(self, encoder, splits, device) -> dict[str, float]:
        self.scored.append((encoder, splits, device))
        return {"mig": 0.125}


def _images(n: int, offset: float = 0.0) -> Split:
    x = torch.arange(n * 4, dtype=torch.float32).view(n, 1, 2, 2) / (4 * n) + offset
    return Split(x, torch.zeros(n))


def _splits(n_explain: int = 101) -> Splits:
    return Splits(_images(12), _images(5, 1.0), _images(n_explain, 2.0))


# --------------------------------------------------------------------------- settings


def test_the_smoke_profile_validates_and_boundary_values_are_accepted():
    config = _config()
    for ok in (
        {"beta_list": (0.0,)},  # beta 0 is a plain autoencoder's objective: allowed
        {"n_runs": 1},
        {"dim_latent": 2},
        {"n_train": None, "n_test": None},
    ):
        dataclasses.replace(config, **ok).validate()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"beta_list": ()}, r"^beta_list must not be empty; give betas >= 0, e.g. 1,5,10$"),
        ({"beta_list": (1.0, float("inf"))}, r"^beta_list entry inf is not a finite beta >= 0$"),
        ({"beta_list": (float("nan"),)}, r"^beta_list entry nan is not a finite beta >= 0$"),
        ({"beta_list": (-0.5,)}, r"^beta_list entry -0.5 is not a finite beta >= 0$"),
        (
            {"beta_list": (1.0, 5.0, 1.0)},
            r"^beta_list lists a beta more than once: \[1.0, 5.0, 1.0\]$",
        ),
        ({"loss_list": ()}, r"^loss_list must not be empty"),
        ({"loss_list": ("beta_vae", "beta_vae")}, r"loss_list"),
        ({"n_runs": 0}, r"^n_runs must be >= 1, got 0$"),
        (
            {"dim_latent": 1},
            r"^dim_latent must be >= 2 for disvae \(its metrics compare latent units\), got 1$",
        ),
        ({"n_train": 0}, r"^n_train must be positive, got 0$"),
        ({"n_test": -1}, r"^n_test must be positive, got -1$"),
        ({"n_explained": 0}, r"^n_explained must be positive, got 0$"),
        ({"attribution_batch_size": 0}, r"^attribution_batch_size must be positive, got 0$"),
    ],
)
def test_bad_settings_raise_a_message_naming_the_value(changes, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(_config(), **changes).validate()


def test_base_settings_are_still_validated():
    with pytest.raises(ConfigError):
        dataclasses.replace(_config(), n_epochs=0).validate()


# --------------------------------------------------------------------------- names


def test_a_trial_is_named_by_loss_beta_and_run_and_starts_at_run_0():
    assert VaeTrial("beta_tc_vae", 5.0, 3, 2).name == "beta_tc_vae-beta5-run2"
    assert VaeTrial("beta_vae", 0.5, 3).name == "beta_vae-beta0.5-run0"
    assert VaeTrial("beta_vae", 0.5, 3).run == 0


def test_registered_names_are_per_dataset_loss_and_latent_size():
    assert disvae.registered_vae_name("mnist", "beta_tc_vae", 3) == "lfxai-mnist-beta-tc-vae-d3"
    assert disvae.registered_vae_name("dsprites", "beta_vae", 6) == "lfxai-dsprites-beta-vae-d6"


def test_a_sweeps_trials_are_recognised_by_the_sweeps_experiment_tag():
    from lfxai.cli.sweep import EXPERIMENT

    assert disvae.SWEEP == EXPERIMENT
    assert disvae.MODEL == "burgess_vae" and disvae.FEATURE_METHOD == "GradientShap"


# --------------------------------------------------------------------------- splits


def test_the_explained_split_is_cut_to_n_explained(monkeypatch):
    seen = []
    splits = _splits(10)

    def load_splits(dataset, config, tracker):
        seen.append((dataset, config, tracker))
        return splits

    monkeypatch.setattr(disvae, "load_splits", load_splits)
    config, tracker = dataclasses.replace(_config(), n_explained=4), object()
    out = disvae.load_vae_splits("plugin", config, tracker)
    assert seen == [("plugin", config, tracker)]
    assert out.train is splits.train and out.test is splits.test
    assert torch.equal(out.explain.x, splits.explain.x[:4]) and len(out.explain) == 4
    exact = disvae.load_vae_splits("plugin", dataclasses.replace(config, n_explained=10), None)
    assert len(exact.explain) == 10  # all of it is fine
    with pytest.raises(
        ConfigError,
        match=r"^n_explained=11 exceeds the 10 examples of the explained split; "
        r"choose n_explained <= 10$",
    ):
        disvae.load_vae_splits("plugin", dataclasses.replace(config, n_explained=11), None)


# --------------------------------------------------------------------------- one trial

# Loss terms per epoch, as the model's recorder reports them: epoch 1 is the best.
TERMS = [
    {"train_loss": 9.0, "test_loss": 8.0, "test_reconstruction": 7.0, "test_kl": 1.0},
    {"train_loss": 6.0, "test_loss": 5.0, "test_reconstruction": 4.5, "test_kl": 0.5},
    {"train_loss": 5.0, "test_loss": 5.5, "test_reconstruction": 4.0, "test_kl": 1.5},
]


class FakeVAE(nn.Module):
    """A VAE whose recorder hands out ``TERMS`` one epoch at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        self.pops = iter(TERMS)
        self.recording = False

    @contextmanager
    def recording_terms(self):
        self.recording = True
        try:
            yield SimpleNamespace(pop=lambda: dict(next(self.pops)))
        finally:
            self.recording = False


@dataclass
class Stubs:
    """What the stand-ins were handed."""

    seeds: list[int] = field(default_factory=list)
    built: list[tuple] = field(default_factory=list)
    fits: list[dict[str, Any]] = field(default_factory=list)
    curves: list[tuple] = field(default_factory=list)
    closed: list[Any] = field(default_factory=list)
    methods: list[tuple] = field(default_factory=list)
    attributed: list[tuple] = field(default_factory=list)
    measured: list[np.ndarray] = field(default_factory=list)
    model: FakeVAE | None = None


def _stub_trial(monkeypatch, n_explain: int = 101, d: int = 2) -> Stubs:
    stubs = Stubs()
    monkeypatch.setattr(disvae, "seed_everything", stubs.seeds.append)

    def build_model(key, spec, **options):
        stubs.built.append((key, spec, options))
        stubs.model = FakeVAE()
        return stubs.model

    def tracked_fit(model, training, device, tracker, train, test, log_epoch):
        stubs.fits.append(
            {
                "model": model,
                "seed": training.seed,
                "n_epochs": training.n_epochs,
                "device": device,
                "tracker": tracker,
                "train": train,
                "test": test,
                "recording": model.recording,
            }
        )
        for epoch in range(len(TERMS)):
            log_epoch(epoch, {"loss": -1.0})
        return FitResult(best_epoch=1, best_test_loss=4.75)

    def loss_term_curves(history, title):
        stubs.curves.append((history, title))
        return "curves"

    def make_feature_method(name, encoder, seed):
        stubs.methods.append((name, encoder, seed))
        return "method"

    saliency = np.random.default_rng(0).random((n_explain, d, 1, 2, 2))

    def attribute(encoder, dim_latent, loader, device, method, baseline):
        stubs.attributed.append((encoder, dim_latent, loader, device, method, baseline))
        return saliency

    def saliency_metrics(values):
        stubs.measured.append(values)
        return {"pearson": 0.5, "entropy": 0.25}

    clock = iter([10.0, 12.5])
    monkeypatch.setattr(disvae, "build_model", build_model)
    monkeypatch.setattr(disvae, "tracked_fit", tracked_fit)
    monkeypatch.setattr(disvae, "loss_term_curves", loss_term_curves)
    monkeypatch.setattr(disvae, "close", stubs.closed.append)
    monkeypatch.setattr(disvae, "make_feature_method", make_feature_method)
    monkeypatch.setattr(disvae, "attribute_individual_dim", attribute)
    monkeypatch.setattr(disvae, "saliency_metrics", saliency_metrics)
    monkeypatch.setattr(disvae, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    return stubs


def test_a_trial_seeds_builds_trains_and_reports_the_best_epoch(monkeypatch):
    stubs = _stub_trial(monkeypatch)
    config, tracker, plugin, splits = _config(), RecordingTracker(), FakePlugin(), _splits()
    trial = VaeTrial("beta_tc_vae", 2.5, 2, run=3)
    epochs = []
    result = disvae._run_trial(  # noqa: SLF001
        plugin, config, tracker, trial, splits, on_epoch=lambda e, m: epochs.append((e, m))
    )

    # Each run has its own seed: the settings' seed plus the run.
    assert stubs.seeds == [10]
    assert [fit["seed"] for fit in stubs.fits] == [10]
    assert stubs.fits[0]["n_epochs"] == config.n_epochs
    assert stubs.fits[0]["device"] == torch.device("cpu")
    assert stubs.fits[0]["tracker"] is tracker  # fit's own metrics go to the trial's run
    assert stubs.fits[0]["train"] is splits.train and stubs.fits[0]["test"] is splits.test
    assert stubs.fits[0]["model"] is stubs.model and stubs.fits[0]["recording"]
    ((key, spec, options),) = stubs.built
    assert key == "burgess_vae"
    assert spec == ModelSpec(2, (1, 2, 2), name="beta_tc_vae-beta2.5-run3")
    assert options == {"loss": "beta_tc_vae", "beta": 2.5, "dataset_size": 12}

    assert tracker.of("set_tags")[0] == (
        {"lfxai.disvae.loss": "beta_tc_vae", "lfxai.disvae.beta": "2.5", "lfxai.disvae.run": 3},
    )
    assert tracker.of("log_params") == [
        (
            {
                "loss": "beta_tc_vae",
                "beta": "2.5",
                "dim_latent": 2,
                "run": 3,
                "trial_seed": 10,
                "dataset_size": 12,
            },
            "trial.",
        )
    ]

    # Every epoch's terms go to the run under fit/ (step = epoch) and to on_epoch.
    per_epoch = [(m, step) for m, step in tracker.of("log_metrics") if any("fit/" in k for k in m)]
    assert per_epoch == [({f"fit/{k}": v for k, v in t.items()}, e) for e, t in enumerate(TERMS)]
    assert epochs == list(enumerate(TERMS))
    ((history, title),) = stubs.curves
    assert history.to_dict("records") == [{"epoch": e, **t} for e, t in enumerate(TERMS)]
    assert title == "Fake beta_tc_vae (beta=2.5, d=2)"

    # The best epoch's (1) reconstruction, fit's own best test loss, not the last epoch's.
    assert result.metrics == {
        "pearson": 0.5,
        "entropy": 0.25,
        "test_loss": 4.75,
        "test_reconstruction": 4.5,
        "best_epoch": 1.0,
        "mig": 0.125,
    }
    assert tracker.of("log_metrics")[-1] == (result.metrics, 0)
    assert result.history.equals(history)
    np.testing.assert_array_equal(result.saliency, stubs.measured[0][:6])
    assert result.saliency.shape == (6, 2, 1, 2, 2)
    ((encoder, plugin_splits, device),) = plugin.scored
    assert encoder is stubs.model.encoder and not encoder.training
    assert plugin_splits is splits and device == "cpu"


def test_a_trial_without_on_epoch_still_logs_every_epoch(monkeypatch):
    _stub_trial(monkeypatch)
    tracker = RecordingTracker()
    metrics = disvae.train_and_measure(
        FakePlugin(), _config(), tracker, VaeTrial("beta_vae", 1.0, 2), _splits()
    )
    steps = [step for m, step in tracker.of("log_metrics") if "fit/test_loss" in m]
    assert steps == [0, 1, 2]
    assert metrics["test_reconstruction"] == 4.5 and metrics["best_epoch"] == 1.0


def test_train_and_measure_hands_on_epoch_every_epochs_terms(monkeypatch):
    _stub_trial(monkeypatch)
    seen = []
    disvae.train_and_measure(
        FakePlugin(),
        _config(),
        RecordingTracker(),
        VaeTrial("beta_vae", 1.0, 2),
        _splits(),
        on_epoch=lambda epoch, terms: seen.append((epoch, terms)),
    )
    assert seen == list(enumerate(TERMS))


def test_a_trial_explains_every_unit_with_the_settings_seed_and_logs_maps_and_codes(monkeypatch):
    stubs = _stub_trial(monkeypatch)
    config = dataclasses.replace(_config(), attribution_batch_size=16)
    tracker, plugin, splits = RecordingTracker(), FakePlugin(), _splits()
    disvae._run_trial(plugin, config, tracker, VaeTrial("beta_vae", 1.0, 2, 4), splits)  # noqa: SLF001

    # GradientShap's baselines are drawn with the settings' seed, whatever the run.
    ((name, encoder, seed),) = stubs.methods
    assert (name, seed) == ("GradientShap", 7)
    assert encoder is stubs.model.encoder and not encoder.training
    ((encoder2, d, loader, device, method, baseline),) = stubs.attributed
    assert encoder2 is encoder and d == 2 and method == "method"
    assert device == torch.device("cpu")
    assert loader.batch_size == 16 and len(loader.dataset) == 101
    torch.testing.assert_close(baseline, torch.full((1, 2, 2), 0.25))
    saliency = stubs.measured[0]
    assert saliency.shape == (101, 2, 1, 2, 2)

    timing = [m for m, _ in tracker.of("log_metrics") if "time/attribution_seconds" in m]
    assert timing == [
        {
            "time/attribution_seconds": 2.5,
            "throughput/unit_attribution_images_per_second": pytest.approx(101 / 2.5),
        }
    ]
    arrays = {path: array for array, path in tracker.of("log_array")}
    assert set(arrays) == {"codes/explained.npy", "saliency/units.npy"}
    with torch.no_grad():
        torch.testing.assert_close(arrays["codes/explained.npy"], encoder(splits.explain.x))
    np.testing.assert_array_equal(arrays["saliency/units.npy"], saliency[:100])

    ((examples, maps, labels, title),) = plugin.figures
    assert torch.equal(examples, splits.explain.x[:6])
    assert len(maps) == 2
    for j, unit in enumerate(maps):
        np.testing.assert_array_equal(unit, saliency[:6, j : j + 1])
    assert labels == ["unit 0", "unit 1"]
    assert title == "|f_j(x) x GradientShap_j(x)| per latent unit j"
    figures = [(figure, path) for figure, path in tracker.of("log_figure")]
    assert figures == [("curves", "loss_terms"), ("figure-1", "saliency_units")]
    assert stubs.closed == ["curves", "figure-1"]  # every figure logged is closed


def test_a_trial_registers_its_encoder_with_its_trial_and_tags_its_uri(monkeypatch):
    stubs = _stub_trial(monkeypatch)
    tracker = RecordingTracker(run_tags={"lfxai.profile": "paper"}, uri="models:/m/3")
    splits = _splits()
    trial = VaeTrial("beta_tc_vae", 5.0, 2, 1)
    disvae._run_trial(FakePlugin(), _config(), tracker, trial, splits)  # noqa: SLF001
    ((registered,),) = tracker.of("register_encoder")
    assert registered["model"] is stubs.model
    assert torch.equal(registered["example"], splits.explain.x[:2])
    assert registered["name"] == "lfxai-fake-beta-tc-vae-d2"
    assert registered["test_loss"] == 4.75
    assert registered["about"] == (
        "Encoder mean of the Fake Burgess VAE trained with beta_tc_vae and a 2-dimensional "
        "latent space: inputs (N, 1, 2, 2) to means (N, 2). Versions differ by beta and run "
        "(their tags); the alias `<profile>-beta<beta>` (e.g. `@paper-beta5`) is the newest "
        "of that profile and beta."
    )
    assert registered["details"] == "beta_tc_vae, beta=5, run 1"
    assert registered["tags"] == {
        "lfxai.loss": "beta_tc_vae",
        "lfxai.beta": "5",
        "lfxai.run": 1,
        "lfxai.dim_latent": 2,
    }
    assert registered["aliases"] == ("paper-beta5",)
    assert tracker.of("set_tags")[-1] == ({ENCODER_URI_TAG: "models:/m/3"},)


NAME = "lfxai-fake-beta-vae-d2"


@pytest.mark.parametrize(
    ("run_tags", "beta", "register", "name", "aliases"),
    [
        ({"lfxai.profile": "quick"}, 0.5, True, "lfxai-fake-beta-vae-d2", ("quick-beta0_5",)),
        ({}, 5.0, True, "lfxai-fake-beta-vae-d2", ()),  # no profile: no alias
        (
            {"lfxai.profile": "p", "lfxai.experiment": "sweep"},
            5.0,
            True,
            "lfxai-fake-beta-vae-d2",
            (),
        ),
        (
            {"lfxai.profile": "p", "lfxai.experiment": "disvae"},
            5.0,
            True,
            "lfxai-fake-beta-vae-d2",
            ("p-beta5",),
        ),
        ({"lfxai.profile": "p"}, 5.0, False, None, ("p-beta5",)),  # logged, not registered
    ],
)
def test_the_alias_names_profile_and_beta_and_a_sweep_gets_none(
    monkeypatch, run_tags, beta, register, name, aliases
):
    _stub_trial(monkeypatch)
    tracker = RecordingTracker(run_tags=dict(run_tags))
    config = dataclasses.replace(_config(), register_model=register)
    disvae._run_trial(FakePlugin(), config, tracker, VaeTrial("beta_vae", beta, 2), _splits())  # noqa: SLF001
    ((registered,),) = tracker.of("register_encoder")
    assert registered["name"] == name
    assert registered["aliases"] == aliases


# --------------------------------------------------------------------------- the study


def _metrics(trial: VaeTrial) -> dict[str, float]:
    """Distinct values per trial, so that a mixed-up row or group shows."""
    base = {"beta_vae": 0.0, "beta_tc_vae": 100.0}[trial.loss] + 10 * trial.beta + trial.run
    out = {name: base + i / 10 for i, name in enumerate(disvae.SALIENCY_METRICS)}
    return out | {"test_loss": base + 1, "test_reconstruction": base + 2, "mig": base + 3}


def test_the_study_runs_every_loss_beta_and_run_in_its_own_nested_run(monkeypatch):
    config = dataclasses.replace(
        _config(), loss_list=("beta_tc_vae", "beta_vae"), beta_list=(5.0, 1.0), n_runs=2
    )
    splits, plugin, tracker = _splits(8), FakePlugin(), RecordingTracker()
    seeds, trials, loaded, boxes, claims, closed = [], [], [], [], [], []
    monkeypatch.setattr(disvae, "seed_everything", seeds.append)
    monkeypatch.setattr(disvae, "load_vae_splits", lambda *args: loaded.append(args) or splits)

    def run_trial(dataset, cfg, child, trial, given):
        assert dataset is plugin and cfg is config and given is splits
        trials.append((trial, child.run_id))
        saliency = np.full((6, 2, 1, 2, 2), len(trials), dtype=float)
        return TrialResult(_metrics(trial), pd.DataFrame(), saliency)

    monkeypatch.setattr(disvae, "_run_trial", run_trial)
    monkeypatch.setattr(
        disvae,
        "metric_box_plots",
        lambda table, metrics, title: boxes.append((metrics, title)) or "boxes",
    )
    monkeypatch.setattr(disvae, "log_claims", lambda *args: claims.append(args))
    monkeypatch.setattr(disvae, "close", closed.append)
    summary = disvae.disvae(plugin, config, tracker)

    assert seeds == [7]
    assert loaded == [(plugin, config, tracker)]
    expected = [
        VaeTrial(loss, beta, config.dim_latent, run)
        for loss in ("beta_tc_vae", "beta_vae")
        for beta in (5.0, 1.0)
        for run in (0, 1)
    ]
    assert [trial for trial, _ in trials] == expected
    assert all(isinstance(trial.beta, float) for trial, _ in trials)
    assert tracker.of("nested") == [(t.name,) for t in expected]

    ((table, path),) = tracker.of("log_table")
    assert path == "disvae.csv"
    assert list(table.columns[:3]) == ["loss", "beta", "run"]
    assert table["run_id"].tolist() == [run_id for _, run_id in trials]
    assert table[["loss", "beta", "run"]].to_records(index=False).tolist() == [
        (t.loss, t.beta, t.run) for t in expected
    ]
    assert table["pearson"].tolist() == [_metrics(t)["pearson"] for t in expected]

    title = "Fake Burgess VAE (d=3)"
    assert boxes == [(list(disvae.SALIENCY_METRICS), title)]
    # Per loss, run 0's maps of every beta, in the settings' order.
    assert [figure[2:] for figure in plugin.figures] == [
        (
            ["beta 5 unit 0", "beta 5 unit 1", "beta 1 unit 0", "beta 1 unit 1"],
            f"{title}, beta_tc_vae, run 0",
        ),
        (
            ["beta 5 unit 0", "beta 5 unit 1", "beta 1 unit 0", "beta 1 unit 1"],
            f"{title}, beta_vae, run 0",
        ),
    ]
    first = plugin.figures[0]
    assert torch.equal(first[0], splits.explain.x[:6])
    # trials 1 (beta 5, run 0) and 3 (beta 1, run 0) of beta_tc_vae; each unit apart
    assert [float(m.flat[0]) for m in first[1]] == [1.0, 1.0, 3.0, 3.0]
    assert all(m.shape == (6, 1, 1, 2, 2) for m in first[1])
    assert [float(m.flat[0]) for m in plugin.figures[1][1]] == [5.0, 5.0, 7.0, 7.0]
    assert [path for _, path in tracker.of("log_figure")] == [
        "metric_box_plots",
        "saliency_units/beta_tc_vae",
        "saliency_units/beta_vae",
    ]
    assert closed == ["boxes", "figure-1", "figure-2"]

    assert tracker.of("log_metrics") == [(summary, 0)]
    assert len(claims) == 1 and claims[0][0] is tracker and claims[0][1] == "disvae"
    assert claims[0][2] is table and claims[0][3] == title
    # mean and std (over the 2 runs) of the saliency metrics and the test losses
    names = [*disvae.SALIENCY_METRICS, "test_loss", "test_reconstruction"]
    assert set(summary) == {
        f"{name}_{stat}/{loss}/beta{beta:g}"
        for name in names
        for stat in ("mean", "std")
        for loss in ("beta_tc_vae", "beta_vae")
        for beta in (5.0, 1.0)
    }
    assert summary["pearson_mean/beta_tc_vae/beta5"] == pytest.approx(150.5)
    assert summary["pearson_std/beta_tc_vae/beta5"] == pytest.approx(0.5)
    assert summary["test_loss_mean/beta_vae/beta1"] == pytest.approx(11.5)


def test_summary_is_the_mean_and_population_std_per_loss_and_beta_in_table_order():
    table = pd.DataFrame(
        {
            "loss": ["b", "b", "b", "a", "a"],
            "beta": [10.0, 10.0, 10.0, 0.5, 0.5],
            "pearson": [1.0, 2.0, 6.0, 4.0, 4.0],
            "other": [0.0, 0.0, 0.0, 0.0, 0.0],
        }
    )
    summary = disvae._summary(table, ["pearson"])  # noqa: SLF001
    assert list(summary) == [
        "pearson_mean/b/beta10",
        "pearson_std/b/beta10",
        "pearson_mean/a/beta0.5",
        "pearson_std/a/beta0.5",
    ]
    assert summary["pearson_mean/b/beta10"] == pytest.approx(3.0)
    assert summary["pearson_std/b/beta10"] == pytest.approx(np.sqrt(14 / 3))  # ddof 0
    assert summary["pearson_mean/a/beta0.5"] == 4.0 and summary["pearson_std/a/beta0.5"] == 0.0
    assert all(type(v) is float for v in summary.values())
