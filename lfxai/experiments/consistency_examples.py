"""Consistency check of label-free example importance (paper Section 4.1).

Train an autoencoder with checkpoints, score every (test, train) pair of a class-balanced
subset with each example importance method, and measure how often a test example's most
(least) important train examples share its label (a digit, normal vs abnormal beat). The
labels are never seen in training: a faithful method ranks same-class examples first (top
rates high, bottom rates low). Gradient methods differentiate the model's own training loss.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lfxai.config import (
    ConfigError,
    check_choices,
    check_percentages,
    check_positive,
)
from lfxai.data.splits import Split
from lfxai.devices import get_device, seed_everything
from lfxai.experiments.common import (
    AutoencoderConfig,
    fit_or_reuse,
    load_splits,
    model_title,
    new_model,
    scratch_dir,
)
from lfxai.experiments.example_explainers import ExampleExplainerSettings, build_explainer
from lfxai.experiments.registry import register
from lfxai.experiments.verdicts import log_claims
from lfxai.explanations.examples import EXAMPLE_METHODS, ExampleBasedExplainer
from lfxai.metrics.claims import point_key
from lfxai.metrics.consistency import similarity_per_example
from lfxai.plotting.curves import method_curves
from lfxai.plugins import DatasetPlugin
from lfxai.tracking import Tracker


@dataclass(frozen=True)
class ConsistencyExamplesConfig(ExampleExplainerSettings, AutoencoderConfig):
    """Settings of ``consistency_examples`` (values in ``configs/<dataset>.yaml``).

    The example explainers' options are the composed :class:`ExampleExplainerSettings`.
    """

    checkpoint_every: int
    n_train_explained: int
    n_test_explained: int
    example_methods: tuple[str, ...]
    similarity_percentages: tuple[float, ...]
    pretrained: bool  # reuse the registered encoder of these settings instead of training

    def validate(self) -> None:
        AutoencoderConfig.validate(self)
        ExampleExplainerSettings.validate(self)
        check_choices("example_methods", self.example_methods, EXAMPLE_METHODS)
        check_percentages("similarity_percentages", self.similarity_percentages)
        check_positive(self, "n_train_explained", "n_test_explained")
        needs_model = sorted({"InfluenceFunctions", "TracIn"} & set(self.example_methods))
        if self.pretrained and needs_model:
            raise ConfigError(
                f"pretrained=true reuses only the registered encoder, but {needs_model} need "
                "the whole trained model (its loss, its checkpoints); valid example_methods "
                "with pretrained=true: ['DKNN', 'SimplEx']"
            )
        if "TracIn" in self.example_methods and not 0 < self.checkpoint_every <= self.n_epochs:
            # checked here, not after training: TracIn runs after the costlier explainers
            raise ConfigError(
                f"TracIn needs a checkpoint saved while training: checkpoint_every="
                f"{self.checkpoint_every} with n_epochs={self.n_epochs} saves none; valid "
                f"checkpoint_every: 1..{self.n_epochs}"
            )


def balanced_subset(labels: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``size`` examples with (as nearly as possible) equal counts per class.

    Args:
        labels: ``(N,)`` integer labels.
        size: number of indices to draw, without replacement.
        generator: seeded generator, so the subset is reproducible.

    Returns:
        ``(size,)`` indices, shuffled.
    """
    classes = torch.unique(labels)
    if size > len(labels):
        raise ConfigError(f"cannot draw {size} examples from {len(labels)}")
    per_class = [size // len(classes) + (i < size % len(classes)) for i in range(len(classes))]
    chosen = []
    for cls, count in zip(classes, per_class, strict=True):  # one draw per class, not per example
        members = torch.nonzero(labels == cls).flatten()
        if count > len(members):
            raise ConfigError(f"class {int(cls)} has only {len(members)} examples, {count} needed")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:count]])
    indices = torch.cat(chosen)
    return indices[torch.randperm(len(indices), generator=generator)]


@register("consistency_examples", ConsistencyExamplesConfig)
def consistency_examples(
    dataset: DatasetPlugin, config: ConsistencyExamplesConfig, tracker: Tracker
) -> dict[str, float]:
    """Similarity rates of the top and bottom k% train examples, per example method."""
    generator = seed_everything(config.seed)
    device = get_device(config.device)
    splits = load_splits(dataset, config, tracker)
    train, test = splits.train, splits.explain
    if config.n_test_explained > len(test):
        raise ConfigError(
            f"n_test_explained={config.n_test_explained} but the test split has {len(test)} "
            "examples"
        )
    model = new_model(dataset, config, splits, name=f"{config.pretext}_ae")
    checkpoints = scratch_dir()
    try:
        fit_or_reuse(
            model,
            dataset,
            config,
            tracker,
            train,
            splits.test,
            test.x[:2],
            checkpoint_dir=checkpoints,  # every config.checkpoint_every epochs (its training)
        )
        for path in model.checkpoints_files:
            tracker.log_file(path, "checkpoints")
        model.to(device).eval()

        train_idx = balanced_subset(train.y, config.n_train_explained, generator)
        test_idx = torch.randperm(len(test.y), generator=generator)[: config.n_test_explained]
        explained_train = Split(train.x[train_idx], train.y[train_idx])
        explained_test = Split(test.x[test_idx], test.y[test_idx])
        tracker.log_array(train_idx, "subsets/train_idx.npy")
        tracker.log_array(test_idx, "subsets/test_idx.npy")
        scores = example_scores(
            lambda method: build_explainer(method, model, config, train, config.seed),
            config.example_methods,
            explained_train,
            explained_test,
            config.batch_size,
            device,
            tracker,
        )
    finally:
        shutil.rmtree(checkpoints, ignore_errors=True)

    table, evidence = similarity_table(
        scores, explained_test.y, explained_train.y, config.similarity_percentages
    )
    title = model_title(dataset, config)
    final = log_similarity_rates(tracker, table, title)
    log_claims(tracker, "consistency_examples", table, title, evidence)
    return final


def example_scores(
    make_explainer: Callable[[str], ExampleBasedExplainer],
    methods: Sequence[str],
    explained_train: Split,
    explained_test: Split,
    batch_size: int,
    device: torch.device | str,
    tracker: Tracker,
) -> dict[str, torch.Tensor]:
    """Example importance ``(n_test, n_train)`` of every pair, per method; each logged as
    ``example_importance/<method>.npy`` with its time ``time/explainer_seconds/<method>``.

    Args:
        make_explainer: the explainer of a method's name (bound to the explained model, with
            its options).
        methods: the methods' names.
        explained_train, explained_test: the examples scored against each other.
        batch_size: examples per loader batch (the explainers re-batch internally).
        device: the model's device.
        tracker: the run to log to.
    """
    scores = {}
    for method in methods:
        explainer = make_explainer(method)
        start = time.perf_counter()
        scores[method] = explainer.attribute_loader(
            device,
            explained_train.loader(batch_size),
            explained_test.loader(batch_size),
        )
        seconds = time.perf_counter() - start
        tracker.log_metrics({f"time/explainer_seconds/{method}": seconds})
        tracker.log_array(scores[method], f"example_importance/{method}.npy")
    return scores


def similarity_table(
    scores: dict[str, torch.Tensor],
    test_labels: torch.Tensor,
    train_labels: torch.Tensor,
    percentages: Sequence[float],
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """How often the top and bottom k% train examples share the test example's label.

    Args:
        scores: per method, importance ``(n_test, n_train)``.
        test_labels, train_labels: ``(n_test,)`` and ``(n_train,)`` class labels.
        percentages: k, in (0, 100].

    Returns:
        The table (``method``, ``type`` top / bottom, ``pct_examples``, ``similarity_rate``
        averaged over the test examples) and the claims' evidence: ``<method>@<k>`` ->
        ``(2, n_test)``, the top and bottom rate of each test example.
    """
    rows, evidence = [], {}
    pcts = list(percentages)
    for method, importance in scores.items():
        rates = similarity_per_example(importance, test_labels, train_labels, pcts)
        for i, pct in enumerate(pcts):  # per test example: tested claims
            evidence[point_key(method, pct)] = torch.stack(
                [rates["top"][i], rates["bottom"][i]]
            ).numpy()
        for kind, values in rates.items():
            for pct, per_example in zip(pcts, values, strict=True):
                rows.append(
                    {
                        "method": method,
                        "type": kind,
                        "pct_examples": pct,
                        "similarity_rate": per_example.mean().item(),
                    }
                )
    return pd.DataFrame(rows), evidence


def log_similarity_rates(tracker: Tracker, table: pd.DataFrame, title: str) -> dict[str, float]:
    """Logs the curves ``similarity_rate/<method>/{top,bottom}`` (step: % of the train
    examples), ``consistency_examples.csv`` and its plot.

    Returns:
        ``similarity_rate_top_min_pct/<method>``: the top rate at the smallest k (also logged).
    """
    tracker.log_metric_rows(
        [
            (f"similarity_rate/{r.method}/{r.type}", r.similarity_rate, int(round(r.pct_examples)))
            for r in table.itertuples()
        ]
    )
    tracker.log_table(table, "consistency_examples.csv")
    tracker.log_figure(
        method_curves(
            table,
            "pct_examples",
            "similarity_rate",
            style="type",
            xlabel="% most (solid) / least (dashed) important train examples",
            ylabel="similarity rate",
            title=title,
        ),
        "consistency_examples",
    )
    top = table[table.type == "top"]
    smallest = top[top.pct_examples == top.pct_examples.min()]
    final = {
        f"similarity_rate_top_min_pct/{r.method}": float(r.similarity_rate)
        for r in smallest.itertuples()
    }
    tracker.log_metrics(final)
    return final
