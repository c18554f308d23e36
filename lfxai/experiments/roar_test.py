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

The trainings themselves (the base model's and the retrainings', several at a time, each in a
nested run) are :mod:`lfxai.experiments.roar_retraining`'s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
import torch

from lfxai.config import check_choices, check_percentages, check_positive
from lfxai.data.splits import Split
from lfxai.devices import get_device, seed_everything
from lfxai.experiments.common import load_splits, log_encoder, model_title
from lfxai.experiments.registry import register
from lfxai.experiments.roar_retraining import (
    TAG,
    InterruptionHook,
    ModelFactory,
    Retrainer,
    RetrainingConfig,
    Task,
    k_label,
    previous_retrainings,
)
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

N_EXAMPLES = 6  # training examples shown with their importance maps
INITIAL_WEIGHTS = "weights/initial.pt"
BASE_WEIGHTS = "weights/base.pt"


@dataclass(frozen=True)
class RoarTestConfig(RetrainingConfig):
    """Settings of ``roar_test`` (values in ``configs/<dataset>.yaml``); the trainings' own
    are :class:`RetrainingConfig`'s."""

    feature_methods: tuple[str, ...]
    remove_percentages: tuple[float, ...]
    attribution_batch_size: int

    def validate(self) -> None:
        """Raises :class:`ConfigError` naming the bad value and the valid choices."""
        super().validate()
        check_choices("feature_methods", self.feature_methods, FEATURE_METHODS)
        # Distinct whole percents: each is the MLflow step of its point on the curves.
        check_percentages("remove_percentages", self.remove_percentages)
        check_positive(self, "attribution_batch_size")


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
    models = ModelFactory(dataset, config, splits)
    initial = _initial_weights(models, tracker, tags)
    tracker.log_metrics({"time/setup_seconds": time.perf_counter() - start})

    training = config.training()  # the base model's and every retraining's
    done, unfinished = previous_retrainings(tracker)
    removed_value = replacement_for(dataset.baseline(train), train.x)
    hook = InterruptionHook.from_env()
    retrain = Retrainer(config, training, models, tracker, initial, splits, removed_value, hook)

    def todo(methods: list[str]) -> list[Task]:
        return [
            Task(method, pct, unfinished.get((method, k_label(pct))))
            for method in methods
            for pct in config.remove_percentages
            if (method, k_label(pct)) not in done
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

    base_job = retrain.base_job(tags)
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
            outcome = outcomes.get((method, k_label(pct)))
            run_id, loss = done[method, k_label(pct)] if outcome is None else outcome[:2]
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
def _initial_weights(
    models: ModelFactory, tracker: Tracker, tags: dict[str, str]
) -> dict[str, torch.Tensor]:
    """The untrained weights every model starts from: logged once, reloaded on resume."""
    if TAG + "initial_weights" in tags:
        return tracker.load_state_dict(INITIAL_WEIGHTS)
    model = models("roar_test_initial")
    tracker.log_state_dict(model, INITIAL_WEIGHTS)
    tracker.set_tags({TAG + "initial_weights": INITIAL_WEIGHTS})
    # Clones: a state_dict shares storage with the module's parameters.
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _base_model(
    config: RoarTestConfig,
    models: ModelFactory,
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


def _step(pct: float) -> int:
    return int(round(pct))
