"""A fake trial backend for the sweep's tests: no VAE, values that depend on the trial."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from lfxai.config import BaseConfig
from lfxai.sweep.workers import TrialBackend

REPO = Path(__file__).resolve().parents[2]
FAKE_PROFILE = {
    "seed": 1,
    "device": "cpu",
    "data_dir": "data",
    "batch_size": 10,
    "n_epochs": 3,
    "dim_latent": 3,
    "optimizer": "adam",
    "lr": 1.0e-3,
    "weight_decay": 0.0,
    "lr_schedule": "constant",
    "split": "standard",
}


@dataclass(frozen=True)
class FakeConfig(BaseConfig):
    """Stands for ``DisvaeConfig``: the base settings plus a split."""

    split: str


@dataclass(frozen=True)
class FakeTrial:
    loss: str
    beta: float
    dim_latent: int


def fake_values(trial: FakeTrial) -> dict[str, float]:
    """Pearson grows with beta (the paper's claim holds); reconstruction falls with it."""
    pearson = 0.1 + 0.02 * trial.beta + 0.001 * trial.dim_latent
    return {
        "pearson": pearson,
        "spearman": pearson / 2,
        "test_reconstruction": 100.0 / (1.0 + trial.beta) + trial.dim_latent,
        "test_loss": 120.0,
        "active_units": float(trial.dim_latent),
    }


class FakeTrain:
    """``train_and_measure``: logs per-epoch metrics, calls ``on_epoch``, returns metrics.

    Attributes:
        calls: the trials it trained.
        fail_on: trial betas that raise (a trial that fails).
        raise_at: ``(call index, exception)``: raised at the first epoch of that call.
        block: set: every call waits (at its first epoch) until it is cleared.
    """

    def __init__(self) -> None:
        self.calls: list[FakeTrial] = []
        self.raise_at: tuple[int, BaseException] | None = None
        self.fail_all = False
        self.at_first_epoch: Callable[[], None] | None = None  # e.g. send a signal
        self.lock = threading.Lock()

    def __call__(self, plugin, config, tracker, trial, splits, on_epoch=None):
        with self.lock:
            index = len(self.calls)
            self.calls.append(trial)
        final = fake_values(trial)
        tracker.log_params({"loss": trial.loss, "beta": trial.beta, "dim_latent": trial.dim_latent})
        for epoch in range(config.n_epochs):
            if self.raise_at is not None and self.raise_at[0] == index:
                raise self.raise_at[1]
            if epoch == 0 and index == 0 and self.at_first_epoch is not None:
                self.at_first_epoch()
            if self.fail_all:
                raise ValueError("the fake trial fails")
            # later epochs approach the final value; high beta stays high (pruned first)
            metrics = {
                "test_loss": final["test_loss"] + config.n_epochs - epoch,
                "test_reconstruction": final["test_reconstruction"],
                "pearson": final["pearson"] * (1 + 0.1 * (config.n_epochs - epoch)),
            }
            tracker.log_metrics({f"epoch/{k}": v for k, v in metrics.items()}, step=epoch)
            if on_epoch is not None:
                on_epoch(epoch, metrics)
        tracker.log_metrics(final)
        return final


def fake_backend(train: FakeTrain | None = None) -> TrialBackend:
    return TrialBackend(
        schema=FakeConfig,
        losses=("beta_vae", "beta_tc_vae"),
        train=train or FakeTrain(),
        load_splits=lambda plugin, config, tracker: None,
        make_trial=FakeTrial,
    )


def write_configs(folder: Path) -> Path:
    """A configs/ folder with the repo's sweep.yaml and an mnist.yaml whose ``disvae``
    section has the fake schema's settings."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sweep.yaml").write_text((REPO / "configs" / "sweep.yaml").read_text())
    document = {"disvae": {"paper": FAKE_PROFILE, "quick": {}, "smoke": {"n_epochs": 2}}}
    (folder / "mnist.yaml").write_text(yaml.safe_dump(document))
    return folder
