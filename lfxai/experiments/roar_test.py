"""ROAR (RemOve And Retrain) with label-free feature importance.

Train an identity-pretext autoencoder, rank the features of every TRAINING example with a
label-free attribution method, remove each example's top-k% features (replace them by the data
set's baseline: 0 for MNIST pixels), retrain a fresh autoencoder from the SAME initial weights
on the masked examples and measure its loss on the unmasked test set. Removing informative
features should hurt more than removing random ones. Every retraining is a nested MLflow
run; an interrupted run resumes where it stopped.

Differences from the reference script, on purpose: importance is computed with an unshuffled
loader (the reference explained a shuffled loader, so its masks were paired with the wrong
images) and ``k%`` of 784 pixels is rounded (the reference truncated: 156 vs 157 at 20%).

References:
    Hooker et al., "A Benchmark for Interpretability Methods in Deep Neural Networks",
    NeurIPS 2019. Crabbé & van der Schaar, "Label-Free Explainability for Unsupervised
    Models", ICML 2022.

Length (~590 lines): one experiment with its resume, its reuse of identical retrainings and
its retrainings run several at a time, which share the run's state (tags, nested runs).
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

import pandas as pd
import torch

from lfxai.concurrency import CpuWorkers
from lfxai.config import (
    ConfigError,
    check_choices,
    check_percentages,
    check_positive,
)
from lfxai.data.masking import apply_mask, top_k_mask
from lfxai.data.splits import Split
from lfxai.devices import get_device, seed_everything
from lfxai.experiments.common import (
    AutoencoderConfig,
    load_splits,
    log_encoder,
    model_title,
    new_model,
    registered_name,
    split_digest,
    tracked_fit,
)
from lfxai.experiments.registry import register
from lfxai.experiments.verdicts import log_claims, log_example_maps
from lfxai.explanations.features import (
    FEATURE_METHODS,
    MODEL_FREE_METHODS,
    attribute_auxiliary,
    make_feature_method,
)
from lfxai.models.autoencoder import TrainableModel
from lfxai.plotting.curves import method_curves
from lfxai.plugins import DatasetPlugin, Splits
from lfxai.plugins.base import replacement_for
from lfxai.tracking import Tracker
from lfxai.training import EpochCallback, TrainingSettings

N_EXAMPLES = 6  # training examples shown with their importance maps
TAG = "lfxai.roar_test."  # prefix of the tags that record progress (read back on resume)
INITIAL_WEIGHTS = "weights/initial.pt"
BASE_WEIGHTS = "weights/base.pt"
# For testing resume only: raise before the (N+1)-th retraining of this process. An
# environment variable rather than a setting, because settings are logged as params and a
# resumed run must log the same values as the interrupted one.
FAIL_AFTER_ENV = "LFXAI_FAIL_AFTER_RETRAININGS"
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class RoarTestConfig(AutoencoderConfig):
    """Settings of ``roar_test`` (values in ``configs/<dataset>.yaml``).

    ``log_retrained_models`` logs each retrained encoder as an MLflow model in its nested
    run; ``register_retrained`` also registers it (needs the former).
    ``retraining_workers`` retrainings run at once, sharing torch's CPU threads (not a
    paper setting: on 2 CPU cores two at once are 1.34x faster; each retraining's numbers
    depend only on its thread count, through float rounding).
    """

    feature_methods: tuple[str, ...]
    remove_percentages: tuple[float, ...]
    attribution_batch_size: int
    log_retrained_models: bool
    register_retrained: bool
    retraining_workers: int

    def validate(self) -> None:
        super().validate()
        check_choices("feature_methods", self.feature_methods, FEATURE_METHODS)
        # Distinct whole percents: each is the MLflow step of its point on the curves.
        check_percentages("remove_percentages", self.remove_percentages)
        check_positive(self, "attribution_batch_size")
        check_positive(self, "retraining_workers")
        if self.register_retrained and not self.log_retrained_models:
            raise ConfigError("register_retrained=true needs log_retrained_models=true")


@register("roar_test", RoarTestConfig, resumable=True)
def roar_test(dataset: DatasetPlugin, config: RoarTestConfig, tracker: Tracker) -> dict[str, float]:
    """Test loss vs % of training features removed, per feature attribution method.

    Resumable: when ``tracker`` is a reopened run, the initial weights, the base model and
    the importance scores are reloaded from its artifacts, and FINISHED nested runs are
    skipped (their test loss reused); unfinished ones are reopened and retrained.

    Args:
        dataset: the data set's plugin (splits, model, baseline, figures).
        config: the resolved settings.
        tracker: the parent run; each retraining becomes a nested run under it.

    Returns:
        Mean test loss over the removal percentages per method and, when Random is among
        the methods, each other method's mean excess test loss over Random.
    """
    start = time.perf_counter()
    seed_everything(config.seed)
    device = get_device(config.device)
    splits = load_splits(dataset, config, tracker)
    train = splits.train
    tags = tracker.tags()  # empty for a fresh run; progress markers when resuming
    models = _ModelFactory(dataset, config, splits)
    initial = _initial_weights(models, tracker, tags)
    tracker.log_metrics({"time/setup_seconds": time.perf_counter() - start})

    training = config.training()  # the base model's and every retraining's
    done, unfinished = _previous_retrainings(tracker)
    removed_value = replacement_for(dataset.baseline(train), train.x)
    hook = _InterruptionHook.from_env()
    retrain = _Retrainer(config, training, models, tracker, initial, splits, removed_value, hook)

    def todo(methods: list[str]) -> list[_Task]:
        return [
            _Task(method, pct, unfinished.get((method, _k(pct))))
            for method in methods
            for pct in config.remove_percentages
            if (method, _k(pct)) not in done
        ]

    # A model-free method's scores (Random's) need no trained model: its retrainings train
    # beside the base model (the base model is one of the workers' jobs, so that its
    # numbers do not depend on what else runs); then every other method's importance (all
    # threads), then their retrainings, several at a time.
    free = [m for m in config.feature_methods if m in MODEL_FREE_METHODS]
    scores = {m: _importance(config, dataset, tracker, tags, m, None, train, device) for m in free}

    def base_model(trained: tuple[TrainableModel, float] | None) -> tuple[TrainableModel, float]:
        with retrain.workers.exclusive():  # its encoder's export must not overlap a training
            return _base_model(config, models, tracker, tags, splits, trained)

    base_job = _base_training(config, training, models, tracker, tags, initial, splits, retrain)
    tick = time.perf_counter()
    # The base model is logged as soon as it is trained, while Random's retrainings go on.
    outcomes, logged = retrain.all(todo(free), scores, beside=base_job, then=base_model)
    seconds = time.perf_counter() - tick  # of the phases that retrain (the first: and the base)
    base, base_loss = base_model(None) if logged is None else logged
    encoder = base.encoder.to(device).eval()
    others = [m for m in config.feature_methods if m not in free]
    for method in others:
        scores[method] = _importance(config, dataset, tracker, tags, method, encoder, train, device)
    tick = time.perf_counter()
    outcomes |= retrain.all(todo(others), scores)[0]
    if outcomes:  # a resumed run that skipped them all must not overwrite the times
        seconds += time.perf_counter() - tick
        tracker.log_metrics({"time/retraining_wall_seconds": seconds})
    maps = [scores[method][:N_EXAMPLES].numpy() for method in config.feature_methods]
    del scores  # 188 MB per method in the paper profile

    rows = []
    for method in config.feature_methods:
        key = f"roar/test_loss/{method}"
        rows.append({"method": method, "pct_removed": 0.0, "test_loss": base_loss, "run_id": ""})
        tracker.log_new_points(key, [(0, base_loss)])
        for pct in config.remove_percentages:
            outcome = outcomes.get((method, _k(pct)))
            run_id, loss = done[method, _k(pct)] if outcome is None else outcome[:2]
            rows.append({"method": method, "pct_removed": pct, "test_loss": loss, "run_id": run_id})
            tracker.log_new_points(key, [(_step(pct), loss)])
        mine = [o.seconds for (m, _), o in outcomes.items() if m == method]
        if mine:  # each retraining's own time, summed (they may have overlapped)
            tracker.log_metrics({f"time/retraining_seconds/{method}": sum(mine)})

    table = pd.DataFrame(rows)
    tracker.log_table(table, "roar_test.csv")
    loss_name = type(base.loss_f).__name__.removesuffix("Loss").upper()
    tracker.log_figure(
        method_curves(
            table,
            "pct_removed",
            "test_loss",
            xlabel=f"% training {dataset.feature_unit} removed",
            ylabel=f"test reconstruction loss ({loss_name})",
            title=f"ROAR, {model_title(dataset, config)}",
        ),
        "roar_test",
    )
    log_example_maps(
        tracker,
        dataset,
        train.x[:N_EXAMPLES],
        maps,
        list(config.feature_methods),
        "importance_examples",
    )
    summary = _summary(table)
    tracker.log_metrics(summary)
    log_claims(tracker, "roar_test", table, f"ROAR, {model_title(dataset, config)}")
    return summary


# -- phases ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _ModelFactory:
    """Fresh instances of the data set's model for these settings (all with one shape)."""

    dataset: DatasetPlugin
    config: RoarTestConfig
    splits: Splits

    def __call__(self, name: str) -> TrainableModel:
        return new_model(self.dataset, self.config, self.splits, name)


def _initial_weights(
    models: _ModelFactory, tracker: Tracker, tags: dict[str, str]
) -> dict[str, torch.Tensor]:
    """The untrained weights every model starts from: logged once, reloaded on resume."""
    if TAG + "initial_weights" in tags:
        return tracker.load_state_dict(INITIAL_WEIGHTS)
    model = models("roar_test_initial")
    tracker.log_state_dict(model, INITIAL_WEIGHTS)
    tracker.set_tags({TAG + "initial_weights": INITIAL_WEIGHTS})
    # Clones: a state_dict shares storage with the module's parameters.
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _base_training(
    config: RoarTestConfig,
    training: TrainingSettings,
    models: _ModelFactory,
    tracker: Tracker,
    tags: dict[str, str],
    initial: dict[str, torch.Tensor],
    splits: Splits,
    retrain: _Retrainer,
) -> Callable[[], tuple[TrainableModel, float]] | None:
    """The job that trains the base model (``None`` on a resume that has it)."""
    if TAG + "base_test_loss" in tags:  # set last, so its presence means "all done"
        return None
    model = models("roar_test_base")

    def job() -> tuple[TrainableModel, float]:
        model.load_state_dict(initial)
        # `fit/*` as in every experiment: the base model is this run's trained model.
        device, log_epoch = get_device(config.device), retrain.epoch_logger(tracker)
        result = tracked_fit(
            model, training, device, tracker, splits.train, splits.test, log_epoch=log_epoch
        )
        # fit() restores the best epoch and evaluates in eval mode: its best loss is the
        # test loss.
        return model, result.best_test_loss

    return job


def _base_model(
    config: RoarTestConfig,
    models: _ModelFactory,
    tracker: Tracker,
    tags: dict[str, str],
    splits: Splits,
    trained: tuple[TrainableModel, float] | None,
) -> tuple[TrainableModel, float]:
    """The base model, logged once trained (or, on resume, reloaded); its loss is the 0% point."""
    if trained is None:
        model = models("roar_test_base")
        model.load_state_dict(tracker.load_state_dict(BASE_WEIGHTS))
        return model.eval(), float(tags[TAG + "base_test_loss"])
    model, loss = trained
    tracker.log_metrics({"roar/base_test_loss": loss})
    tracker.log_state_dict(model, BASE_WEIGHTS)
    log_encoder(tracker, models.dataset, config, model, splits.test.x[:2], loss)
    tracker.set_tags({TAG + "base_test_loss": repr(loss)})
    return model, loss


def _importance(
    config: RoarTestConfig,
    dataset: DatasetPlugin,
    tracker: Tracker,
    tags: dict[str, str],
    method: str,
    encoder: torch.nn.Module | None,
    train: Split,
    device: torch.device,
) -> torch.Tensor:
    """Label-free importance ``(N, ...)`` of every training feature (reloaded on resume).

    ``encoder`` is None for a method in ``MODEL_FREE_METHODS``, which explains no model.
    """
    path = f"attributions/{method}.npy"
    if TAG + f"attributions.{method}" in tags:
        return torch.from_numpy(tracker.load_array(path))
    encoder = torch.nn.Identity() if encoder is None else encoder
    attr_method = make_feature_method(method, encoder, seed=config.seed)
    baseline = dataset.baseline(train)
    start = time.perf_counter()
    # Unshuffled loader: scores[i] must belong to train.x[i].
    scores = attribute_auxiliary(
        encoder, train.loader(config.attribution_batch_size), device, attr_method, baseline
    )
    seconds = time.perf_counter() - start
    tracker.log_metrics(
        {
            f"time/attribution_seconds/{method}": seconds,
            f"throughput/{method}_images_per_second": len(scores) / seconds,
        }
    )
    tracker.log_array(scores, path)
    tracker.set_tags({TAG + f"attributions.{method}": path})
    return torch.from_numpy(scores)


@dataclass(frozen=True)
class _Task:
    """A retraining to run: its method, percentage and an unfinished run to reopen, if any."""

    method: str
    pct: float
    run_id: str | None = None


class _Outcome(NamedTuple):
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
class _Retrainer:
    """Runs the retrainings, ``config.retraining_workers`` at a time; holds what they share.

    A retraining whose masked training set is bit-identical to one this process already
    trains (k = 100 % for every method; on MNIST, GradientShap's and IntegratedGradients'
    masks past ~50 %, which only add background pixels already at the baseline) would repeat
    the same computation: same data, same initial weights, same seed. Its nested run reuses
    that retraining's model and test loss instead, tagged with the run that trained it; the
    reuses run last, once every training is done.
    """

    config: RoarTestConfig
    training: TrainingSettings
    models: _ModelFactory
    parent: Tracker
    initial: dict[str, torch.Tensor]
    splits: Splits
    removed_value: torch.Tensor  # what a removed feature becomes (the data set's baseline)
    interrupt: _InterruptionHook
    trained: dict[str, _Retrained] = field(default_factory=dict)  # by training-set digest

    def __post_init__(self) -> None:
        self.workers = CpuWorkers(self.config.retraining_workers)
        self.digests: set[str] = set()  # of the training sets this process trains

    def all(
        self,
        tasks: list[_Task],
        scores: dict[str, torch.Tensor],
        beside: Callable[[], T] | None = None,
        then: Callable[[T], R] | None = None,
    ) -> tuple[dict[tuple[str, str], _Outcome], R | None]:
        """Every task's outcome by (method, k), and what ``then`` made of ``beside``'s result.

        ``scores`` holds each method's importance. ``beside`` (the base model's training)
        starts first and runs beside the retrainings, as one of the workers' jobs; ``then``
        (its logging) runs in this thread as soon as it has ended.
        """
        reuses: list[_Task] = []

        def trainings() -> Iterator[Callable[[], _Outcome]]:
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
        return {(t.method, _k(t.pct)): o for t, o in zip(order, outcomes, strict=True)}, side

    def epoch_logger(self, tracker: Tracker) -> EpochCallback:
        """Logs an epoch's ``fit/*`` losses; where a stop reaches a running training."""

        def log_epoch(epoch: int, losses: dict[str, float]) -> None:
            tracker.log_metrics({f"fit/{k}": v for k, v in losses.items()}, step=epoch)
            self.workers.stop_point()

        return log_epoch

    def _masked(self, task: _Task, scores: torch.Tensor) -> _Masked:
        """The training set without each image's top pct% features (by ``scores``)."""
        train = self.splits.train
        mask = top_k_mask(scores, task.pct / 100)
        split = Split(apply_mask(train.x, mask, self.removed_value), train.y)
        return _Masked(split, int(mask[0].sum()), _digest(split.x))

    def _model(self, task: _Task) -> TrainableModel:
        return self.models(f"roar_{task.method}_{task.pct:g}")

    @contextmanager
    def _nested(self, task: _Task, masked: _Masked) -> Iterator[Tracker]:
        """The retraining's nested run, with its tags, params and inputs logged."""
        method, k = task.method, _k(task.pct)
        with self.parent.nested(f"{method}-{k}", run_id=task.run_id) as child:
            child.set_tags({TAG + "method": method, TAG + "k": k})
            self.interrupt.check()  # inside the nested run, so that it ends FAILED
            child.log_params({"method": method, "k": k, "n_pixels_removed": masked.n_removed})
            self._log_inputs(child, masked.split, method, task.pct)
            yield child

    def _train(self, task: _Task, masked: _Masked, model: TrainableModel) -> _Outcome:
        """One nested run: retrain ``model`` from the initial weights on ``masked``."""
        start = time.perf_counter()
        with self._nested(task, masked) as child:
            model.load_state_dict(self.initial)
            device, test = get_device(self.config.device), self.splits.test
            log_epoch = self.epoch_logger(child)
            result = tracked_fit(
                model, self.training, device, child, masked.split, test, log_epoch=log_epoch
            )
            loss = result.best_test_loss
            weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            self.trained[masked.digest] = _Retrained(child.run_id, loss, weights)
            self._log_result(child, task, model, loss)
        return _Outcome(child.run_id, loss, time.perf_counter() - start)

    def _reuse(self, task: _Task, masked: _Masked, model: TrainableModel) -> _Outcome:
        """One nested run standing in for an identical retraining of this process."""
        start, earlier = time.perf_counter(), self.trained[masked.digest]
        with self._nested(task, masked) as child:
            model.load_state_dict(earlier.weights)
            child.set_tags({TAG + "same_training_data_as": earlier.run_id})
            self._log_result(child, task, model, earlier.loss)
        return _Outcome(child.run_id, earlier.loss, time.perf_counter() - start)

    def _log_result(self, child: Tracker, task: _Task, model: TrainableModel, loss: float) -> None:
        """The test loss and, if asked, the retrained encoder (registered if asked)."""
        child.log_metrics({"roar/test_loss": loss})
        if self.config.log_retrained_models:
            name = None
            if self.config.register_retrained:
                key = f"roar-test-ae-{task.method}-{_k(task.pct)}".lower()
                name = registered_name(self.models.dataset.name, key)
            with self.workers.exclusive():  # an export must not overlap a training
                child.log_encoder_model(model, self.splits.test.x[:2], registered_model_name=name)

    def _log_inputs(self, child: Tracker, masked: Split, method: str, pct: float) -> None:
        """The retraining's data: the masked training split and the (unmasked) test split."""
        dataset, config = self.models.dataset, self.config
        test = self.splits.test
        source = next(iter(dataset.provisioned_files(config.data_dir))).parent
        train_digest = split_digest(dataset, config, f"train-{method}-{_k(pct)}", len(masked))
        name = f"{dataset.name}-{config.split}-train-without-top{_k(pct)}-{method}"
        child.log_dataset(name, masked.x, masked.y, source, train_digest, context="train")
        test_digest = split_digest(dataset, config, "test", len(test))
        name = f"{dataset.name}-{config.split}-test"
        child.log_dataset(name, test.x, test.y, source, test_digest, context="test")


def _previous_retrainings(
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


def _summary(table: pd.DataFrame) -> dict[str, float]:
    """Mean test loss over k > 0 per method and, with Random, the mean excess over Random."""
    removed = table[table.pct_removed > 0]
    pivot = removed.pivot(index="pct_removed", columns="method", values="test_loss")
    out = {f"roar/test_loss_mean/{m}": float(v) for m, v in pivot.mean().items()}
    if "Random" in pivot:
        for method in pivot.columns.drop("Random"):
            excess = (pivot[method] - pivot["Random"]).mean()
            out[f"roar/excess_over_random/{method}"] = float(excess)
    return out


# -- small helpers -----------------------------------------------------------------------
class _InterruptionHook:
    """Raises after ``limit`` retrainings of this process (``LFXAI_FAIL_AFTER_RETRAININGS``)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.count = 0
        self._lock = threading.Lock()  # retrainings start on several threads

    @classmethod
    def from_env(cls) -> _InterruptionHook:
        raw = os.environ.get(FAIL_AFTER_ENV, "").strip()
        return cls(int(raw) if raw else None)

    def check(self) -> None:
        with self._lock:
            if self.limit is not None and self.count >= self.limit:
                raise RuntimeError(f"simulated interruption after {self.count} retrainings")
            self.count += 1


def _digest(x: torch.Tensor) -> str:
    """SHA-256 of a tensor's bytes (dtype and shape are fixed within a run)."""
    return hashlib.sha256(x.detach().cpu().contiguous().numpy().data).hexdigest()


def _k(pct: float) -> str:
    """A percentage as it appears in run names, params and tags: ``10``, not ``10.0``."""
    return f"{pct:g}"


def _step(pct: float) -> int:
    return int(round(pct))
