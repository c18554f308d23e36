"""ROAR's trainings: the base model and every retraining, all from the same initial weights.

:class:`Retrainer` runs them ``retraining_workers`` at a time (:class:`CpuWorkers`), each
retraining in a nested run of the experiment's run with its masked training set logged as its
input; a retraining whose training set is bit-identical to one already trained reuses that
one's model and loss. What a resume needs is read back from the nested runs
(:func:`previous_retrainings`). :mod:`lfxai.experiments.roar_test` computes the importance
scores these retrainings remove features by, and the curves.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

import torch

from lfxai.concurrency import CpuWorkers
from lfxai.config import ConfigError, check_positive
from lfxai.data.masking import apply_mask, top_k_mask
from lfxai.data.splits import Split
from lfxai.devices import get_device
from lfxai.experiments.common import (
    AutoencoderConfig,
    new_model,
    registered_name,
    split_digest,
    tracked_fit,
)
from lfxai.models.autoencoder import TrainableModel
from lfxai.plugins import DatasetPlugin, Splits
from lfxai.tracking import Tracker
from lfxai.training import TrainingSettings

TAG = "lfxai.roar_test."  # prefix of the tags that record progress (read back on resume)
# For testing resume only: raise before the (N+1)-th retraining of this process. An
# environment variable rather than a setting, because settings are logged as params and a
# resumed run must log the same values as the interrupted one.
FAIL_AFTER_ENV = "LFXAI_FAIL_AFTER_RETRAININGS"
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class RetrainingConfig(AutoencoderConfig):
    """The settings of ROAR's trainings (``roar_test``'s others choose the importance).

    ``log_retrained_models`` logs each retrained encoder as an MLflow model in its nested
    run; ``register_retrained`` also registers it (needs the former).
    ``retraining_workers`` retrainings run at once, sharing torch's CPU threads (not a
    paper setting: on 2 CPU cores two at once are 1.34x faster; each retraining's numbers
    depend only on its thread count, through float rounding).
    """

    log_retrained_models: bool
    register_retrained: bool
    retraining_workers: int

    def validate(self) -> None:
        """Raises :class:`ConfigError` naming the bad value and the valid choices."""
        super().validate()
        check_positive(self, "retraining_workers")
        if self.register_retrained and not self.log_retrained_models:
            raise ConfigError("register_retrained=true needs log_retrained_models=true")


@dataclass(frozen=True)
class ModelFactory:
    """Fresh instances of the data set's model for these settings (all with one shape)."""

    dataset: DatasetPlugin
    config: RetrainingConfig
    splits: Splits

    def __call__(self, name: str) -> TrainableModel:
        """A new, untrained model named ``name``."""
        return new_model(self.dataset, self.config, self.splits, name)


@dataclass(frozen=True)
class Task:
    """A retraining to run: its method, percentage and an unfinished run to reopen, if any."""

    method: str
    pct: float
    run_id: str | None = None


class Outcome(NamedTuple):
    """A retraining's nested run, its test loss and how long it took (seconds)."""

    run_id: str
    loss: float
    seconds: float


@dataclass(frozen=True)
class _Masked:
    """A retraining's training set, how many features each example lost, its digest."""

    split: Split
    n_removed: int
    digest: str


@dataclass(frozen=True)
class _Retrained:
    """A retraining of this process, kept to stand in for one on identical training data."""

    run_id: str
    loss: float
    weights: dict[str, torch.Tensor]  # the retrained model's, to log it again


@dataclass
class Retrainer:
    """Trains the base model and the retrainings, ``config.retraining_workers`` at a time.

    A retraining whose masked training set is bit-identical to one this process already
    trains (k = 100 % for every method; on MNIST, GradientShap's and IntegratedGradients'
    masks past ~50 %, which only add background pixels already at the baseline) would repeat
    the same computation: same data, same initial weights, same seed. Its nested run reuses
    that retraining's model and test loss instead, tagged with the run that trained it; the
    reuses run last, once every training is done.
    """

    config: RetrainingConfig
    training: TrainingSettings
    models: ModelFactory
    parent: Tracker
    initial: dict[str, torch.Tensor]
    splits: Splits
    removed_value: torch.Tensor  # what a removed feature becomes (the data set's baseline)
    interrupt: InterruptionHook
    trained: dict[str, _Retrained] = field(default_factory=dict)  # by training-set digest

    def __post_init__(self) -> None:
        self.workers = CpuWorkers(self.config.retraining_workers)
        self.digests: set[str] = set()  # of the training sets this process trains

    def base_job(self, tags: dict[str, str]) -> Callable[[], tuple[TrainableModel, float]] | None:
        """The job that trains the base model (``None`` on a resume that has it)."""
        if TAG + "base_test_loss" in tags:  # set last, so its presence means "all done"
            return None
        model = self.models("roar_test_base")

        def job() -> tuple[TrainableModel, float]:
            # `fit/*` in the run itself, as in every experiment: its trained model.
            return model, self._fit(model, self.parent, self.splits.train)

        return job

    def all(
        self,
        tasks: list[Task],
        scores: dict[str, torch.Tensor],
        beside: Callable[[], T] | None = None,
        then: Callable[[T], R] | None = None,
    ) -> tuple[dict[tuple[str, str], Outcome], R | None]:
        """Every task's outcome by (method, k), and what ``then`` made of ``beside``'s result.

        ``scores`` holds each method's importance. ``beside`` (the base model's training)
        starts first and runs beside the retrainings, as one of the workers' jobs; ``then``
        (its logging) runs in this thread as soon as it has ended.
        """
        reuses: list[Task] = []

        def trainings() -> Iterator[Callable[[], Outcome]]:
            # Drawn one at a time as a worker frees up, in order, so that a training set
            # exists only while it is trained and a duplicate is known before it starts.
            for task in tasks:
                masked = self._masked(task, scores[task.method])
                if masked.digest in self.digests:
                    reuses.append(task)  # its training set is made again when it runs
                    continue
                self.digests.add(masked.digest)
                yield functools.partial(self._train, task, masked, self._model(task))

        first = [] if beside is None else [beside]
        made: list[R] = []

        def on_result(i: int, result: object) -> None:
            if first and i == 0 and then is not None:
                made.append(then(result))  # type: ignore[arg-type]

        results = self.workers.run(itertools.chain(first, trainings()), on_result)
        side, outcomes = (made[0] if made else None), results[len(first) :]
        for task in reuses:
            masked = self._masked(task, scores[task.method])
            outcomes.append(self._reuse(task, masked, self._model(task)))
        order = [t for t in tasks if t not in reuses] + reuses
        return {(t.method, k_label(t.pct)): o for t, o in zip(order, outcomes, strict=True)}, side

    def _fit(self, model: TrainableModel, tracker: Tracker, train: Split) -> float:
        """Trains ``model`` from the initial weights on ``train``; returns its test loss.

        Each epoch's ``fit/*`` losses go to ``tracker``; the end of an epoch is where a stop
        reaches the training (:meth:`CpuWorkers.stop_point`).
        """
        model.load_state_dict(self.initial)

        def log_epoch(epoch: int, losses: dict[str, float]) -> None:
            tracker.log_metrics({f"fit/{k}": v for k, v in losses.items()}, step=epoch)
            self.workers.stop_point()

        device, test = get_device(self.config.device), self.splits.test
        result = tracked_fit(
            model, self.training, device, tracker, train, test, log_epoch=log_epoch
        )
        # fit() restores the best epoch and evaluates in eval mode: its best loss is the
        # test loss.
        return result.best_test_loss

    def _masked(self, task: Task, scores: torch.Tensor) -> _Masked:
        """The training set without each image's top pct% features (by ``scores``)."""
        train = self.splits.train
        mask = top_k_mask(scores, task.pct / 100)
        split = Split(apply_mask(train.x, mask, self.removed_value), train.y)
        return _Masked(split, int(mask[0].sum()), _digest(split.x))

    def _model(self, task: Task) -> TrainableModel:
        return self.models(f"roar_{task.method}_{task.pct:g}")

    @contextmanager
    def _nested(self, task: Task, masked: _Masked) -> Iterator[Tracker]:
        """The retraining's nested run, with its tags, params and inputs logged."""
        method, k = task.method, k_label(task.pct)
        with self.parent.nested(f"{method}-{k}", run_id=task.run_id) as child:
            child.set_tags({TAG + "method": method, TAG + "k": k})
            self.interrupt.check()  # inside the nested run, so that it ends FAILED
            child.log_params({"method": method, "k": k, "n_pixels_removed": masked.n_removed})
            self._log_inputs(child, masked.split, method, task.pct)
            yield child

    def _train(self, task: Task, masked: _Masked, model: TrainableModel) -> Outcome:
        """One nested run: retrain ``model`` from the initial weights on ``masked``."""
        start = time.perf_counter()
        with self._nested(task, masked) as child:
            loss = self._fit(model, child, masked.split)
            weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            self.trained[masked.digest] = _Retrained(child.run_id, loss, weights)
            self._log_result(child, task, model, loss)
        return Outcome(child.run_id, loss, time.perf_counter() - start)

    def _reuse(self, task: Task, masked: _Masked, model: TrainableModel) -> Outcome:
        """One nested run standing in for an identical retraining of this process."""
        start, earlier = time.perf_counter(), self.trained[masked.digest]
        with self._nested(task, masked) as child:
            model.load_state_dict(earlier.weights)
            child.set_tags({TAG + "same_training_data_as": earlier.run_id})
            self._log_result(child, task, model, earlier.loss)
        return Outcome(child.run_id, earlier.loss, time.perf_counter() - start)

    def _log_result(self, child: Tracker, task: Task, model: TrainableModel, loss: float) -> None:
        """The test loss and, if asked, the retrained encoder (registered if asked)."""
        child.log_metrics({"roar/test_loss": loss})
        if self.config.log_retrained_models:
            name = None
            if self.config.register_retrained:
                key = f"roar-test-ae-{task.method}-{k_label(task.pct)}".lower()
                name = registered_name(self.models.dataset.name, key)
            with self.workers.exclusive():  # an export must not overlap a training
                child.log_encoder_model(model, self.splits.test.x[:2], registered_model_name=name)

    def _log_inputs(self, child: Tracker, masked: Split, method: str, pct: float) -> None:
        """The retraining's data: the masked training split and the (unmasked) test split."""
        dataset, config = self.models.dataset, self.config
        test = self.splits.test
        source = next(iter(dataset.provisioned_files(config.data_dir))).parent
        train_digest = split_digest(dataset, config, f"train-{method}-{k_label(pct)}", len(masked))
        name = f"{dataset.name}-{config.split}-train-without-top{k_label(pct)}-{method}"
        child.log_dataset(name, masked.x, masked.y, source, train_digest, context="train")
        test_digest = split_digest(dataset, config, "test", len(test))
        name = f"{dataset.name}-{config.split}-test"
        child.log_dataset(name, test.x, test.y, source, test_digest, context="test")


def previous_retrainings(
    tracker: Tracker,
) -> tuple[dict[tuple[str, str], tuple[str, float]], dict[tuple[str, str], str]]:
    """Nested runs of an earlier attempt, keyed by (method, k).

    Returns:
        ``{(method, k): (run_id, test_loss)}`` of FINISHED runs (skipped, loss reused) and
        ``{(method, k): run_id}`` of the others (reopened and retrained).
    """
    done: dict[tuple[str, str], tuple[str, float]] = {}
    unfinished: dict[tuple[str, str], str] = {}
    for run in tracker.child_runs():
        tags = run.data.tags
        if TAG + "method" not in tags or TAG + "k" not in tags:
            continue
        key = (tags[TAG + "method"], tags[TAG + "k"])
        loss = run.data.metrics.get("roar/test_loss")
        if run.info.status == "FINISHED" and loss is not None:
            done[key] = (run.info.run_id, float(loss))
        else:
            unfinished[key] = run.info.run_id
    return done, unfinished


class InterruptionHook:
    """Raises after ``limit`` retrainings of this process (``LFXAI_FAIL_AFTER_RETRAININGS``)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.count = 0
        self._lock = threading.Lock()  # retrainings start on several threads

    @classmethod
    def from_env(cls) -> InterruptionHook:
        """The hook ``LFXAI_FAIL_AFTER_RETRAININGS`` asks for (none: never raises)."""
        raw = os.environ.get(FAIL_AFTER_ENV, "").strip()
        return cls(int(raw) if raw else None)

    def check(self) -> None:
        """Called as each retraining starts: raises once ``limit`` have started."""
        with self._lock:
            if self.limit is not None and self.count >= self.limit:
                raise RuntimeError(f"simulated interruption after {self.count} retrainings")
            self.count += 1


def _digest(x: torch.Tensor) -> str:
    """SHA-256 of a tensor's bytes (dtype and shape are fixed within a run)."""
    return hashlib.sha256(x.detach().cpu().contiguous().numpy().data).hexdigest()


def k_label(pct: float) -> str:
    """A percentage as it appears in run names, params and tags: ``10``, not ``10.0``."""
    return f"{pct:g}"
