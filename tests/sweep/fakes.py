"""A fake trial backend for the sweep's tests: no VAE, values that depend on the trial.

The backend travels to the sweep's worker processes (pickled), so everything here is plain
data: a worker's :class:`FakeTrain` records its own calls.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import optuna
import yaml

from lfxai.config import BaseConfig
from lfxai.plugins import get_dataset
from lfxai.sweep.backend import Sample
from lfxai.sweep.objective import SweepObjective
from lfxai.sweep.settings import resolve_sweep
from lfxai.tracking import Tracker

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


def fake_values(trial: Sample) -> dict[str, float]:
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
        calls: the samples this process trained.
        raise_at: ``(call index, exception)``: raised at the first epoch of that call.
        fail_all: every call raises.
        ctrl_c_when_all_train: a folder: at its first epoch each worker process marks
            itself there and waits; the invocation's own process, once ``n_workers`` have
            marked, sends itself SIGINT (a Ctrl-C while every worker trains).
    """

    def __init__(self) -> None:
        self.calls: list[Sample] = []
        self.raise_at: tuple[int, BaseException] | None = None
        self.fail_all = False
        self.ctrl_c_when_all_train: Path | None = None
        self.n_workers = 1
        self.home = os.getpid()  # the invocation's process (workers are others)

    def __call__(self, plugin, config, tracker, trial, splits, on_epoch=None):
        index = len(self.calls)
        self.calls.append(trial)
        final = fake_values(trial)
        tracker.log_params({"loss": trial.loss, "beta": trial.beta, "dim_latent": trial.dim_latent})
        for epoch in range(config.n_epochs):
            if self.raise_at is not None and self.raise_at[0] == index:
                raise self.raise_at[1]
            if epoch == 0 and index == 0 and self.ctrl_c_when_all_train is not None:
                self._ctrl_c_when_all_train(self.ctrl_c_when_all_train)
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

    def _ctrl_c_when_all_train(self, folder: Path) -> None:
        (folder / str(os.getpid())).touch()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # ended by the stop signal
            if os.getpid() == self.home and len(list(folder.iterdir())) >= self.n_workers:
                os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends
            time.sleep(0.05)
        raise AssertionError("no stop signal came")


class FakeBackend:
    """A :class:`~lfxai.sweep.backend.TrialBackend` without data or models."""

    schema = FakeConfig
    losses = ("beta_vae", "beta_tc_vae")

    def __init__(self, train: FakeTrain | None = None) -> None:
        self.trainer = train or FakeTrain()

    def load_splits(self, dataset, config, tracker):
        return None

    def train(self, dataset, config, tracker, sample, splits, on_epoch):
        return self.trainer(dataset, config, tracker, sample, splits, on_epoch)


def fake_backend(train: FakeTrain | None = None) -> FakeBackend:
    return FakeBackend(train)


def write_configs(folder: Path) -> Path:
    """A configs/ folder with the repo's sweep.yaml and an mnist.yaml whose ``disvae``
    section has the fake schema's settings."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sweep.yaml").write_text((REPO / "configs" / "sweep.yaml").read_text())
    document = {"disvae": {"paper": FAKE_PROFILE, "quick": {}, "smoke": {"n_epochs": 2}}}
    (folder / "mnist.yaml").write_text(yaml.safe_dump(document))
    return folder


def in_process_objective(train: FakeTrain | None = None, **overrides: str):
    """An objective of the smoke profile under a fresh parent run, an in-memory study and
    the fake training (for tests in this process, inside ``sweep_env``)."""
    backend = fake_backend(train)
    settings = resolve_sweep("mnist", "smoke", {"n_trials": "2", **overrides}, backend)
    config = settings.config
    parent = Tracker(mlflow.start_run(run_name="sweep").info.run_id)
    objective = SweepObjective(config, get_dataset("mnist"), settings.base, parent, None, backend)
    study = optuna.create_study(directions=config.directions, study_name="s")
    return objective, study, backend.trainer
