"""Consistency check of label-free feature importance (paper Section 4.1).

Train an autoencoder, explain the representations of the explained split with each feature
attribution method, replace the top-k% most important features of every example by the data
set's baseline (a black pixel, the mean training beat, a blurred image) and measure how far
the representation moves. A faithful method moves it more than a random ranking does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from lfxai.config import check_choices, check_percentages, check_positive
from lfxai.data.masking import apply_mask, top_k_mask
from lfxai.data.splits import Split
from lfxai.devices import get_device, seed_everything
from lfxai.experiments.common import (
    AutoencoderConfig,
    fit_or_reuse,
    load_splits,
    model_title,
    new_model,
)
from lfxai.experiments.registry import register
from lfxai.experiments.verdicts import log_claims, log_example_maps
from lfxai.explanations.features import FEATURE_METHODS, attribute_auxiliary, make_feature_method
from lfxai.metrics.claims import point_key
from lfxai.metrics.consistency import encode, representation_shifts
from lfxai.plotting.curves import method_curves
from lfxai.plugins import DatasetPlugin
from lfxai.plugins.base import replacement_for
from lfxai.tracking import Tracker

N_EXAMPLES = 6  # explained examples shown with their saliency maps


@dataclass(frozen=True)
class ConsistencyFeaturesConfig(AutoencoderConfig):
    """Settings of ``consistency_features`` (values in ``configs/<dataset>.yaml``)."""

    feature_methods: tuple[str, ...]
    perturbation_percentages: tuple[float, ...]
    attribution_batch_size: int
    pretrained: bool  # reuse the registered encoder of these settings instead of training

    def validate(self) -> None:
        """Raises :class:`ConfigError` naming the bad value and the valid choices."""
        super().validate()
        check_choices("feature_methods", self.feature_methods, FEATURE_METHODS)
        check_percentages("perturbation_percentages", self.perturbation_percentages)
        check_positive(self, "attribution_batch_size")


@register("consistency_features", ConsistencyFeaturesConfig)
def consistency_features(
    dataset: DatasetPlugin, config: ConsistencyFeaturesConfig, tracker: Tracker
) -> dict[str, float]:
    """Representation shift vs % of features perturbed, per feature attribution method."""
    seed_everything(config.seed)
    device = get_device(config.device)
    splits = load_splits(dataset, config, tracker)
    train, test, explain = splits.train, splits.test, splits.explain

    model = new_model(dataset, config, splits, name=f"{config.pretext}_ae")
    fit_or_reuse(model, dataset, config, tracker, train, test, explain.x[:2])
    encoder = model.encoder.to(device).eval()

    title = model_title(dataset, config)
    results = feature_shifts(
        encoder,
        explain,
        dataset.baseline(train),
        config.feature_methods,
        config.perturbation_percentages,
        config.attribution_batch_size,
        config.seed,
        device,
        tracker,
    )
    log_feature_shifts(tracker, dataset, results, explain.x[:N_EXAMPLES], title)
    table, evidence = results.table, results.evidence
    summary = table.groupby("method")["representation_shift"].mean()
    final = {f"representation_shift_mean/{m}": float(v) for m, v in summary.items()}
    tracker.log_metrics(final)
    log_claims(tracker, "consistency_features", table, title, evidence)
    return final


@dataclass(frozen=True)
class FeatureShifts:
    """What :func:`feature_shifts` measured.

    Attributes:
        table: one row per method and percentage: ``method``, ``pct_perturbed``,
            ``representation_shift`` (mean over the examples).
        maps: per method, the importance of the first :data:`N_EXAMPLES` examples.
        methods: the methods, in the order of ``maps``.
        evidence: ``<method>@<k>`` -> per-example shift ``(n,)`` (the claims' sample).
    """

    table: pd.DataFrame
    maps: list[np.ndarray]
    methods: list[str]
    evidence: dict[str, np.ndarray]


def feature_shifts(
    encoder: nn.Module,
    explain: Split,
    baseline: torch.Tensor | nn.Module,
    methods: Sequence[str],
    percentages: Sequence[float],
    batch_size: int,
    seed: int,
    device: torch.device | str,
    tracker: Tracker,
) -> FeatureShifts:
    """Label-free importance of every feature per method, and the codes' shift under it.

    The shift: how far the codes move when the top k% features of ``explain`` are replaced
    by the baseline.

    Logs ``codes/test.npy`` (the unperturbed codes), ``attributions/<method>.npy`` and each
    method's time and throughput.

    Args:
        encoder: ``(N, ...) -> (N, d)``, on ``device``, in eval mode.
        explain: the explained examples (their inputs ``(N, ...)`` a tensor).
        baseline: the data set's replacement of a perturbed feature (tensor or module).
        methods: names in :data:`FEATURE_METHODS`.
        percentages: k, in (0, 100].
        batch_size: examples per attribution batch.
        seed: seed of the Random method.
        device: where to compute.
        tracker: the run to log to.
    """
    inputs = explain.x
    codes = encode(encoder, inputs, device)
    tracker.log_array(codes, "codes/test.npy")  # lets a reloaded encoder be checked
    replacement = replacement_for(baseline, inputs)
    rows, maps, evidence = [], [], {}
    for method in methods:
        attr_method = make_feature_method(method, encoder, seed=seed)
        start = time.perf_counter()
        scores = attribute_auxiliary(
            encoder, explain.loader(batch_size), device, attr_method, baseline
        )
        seconds = time.perf_counter() - start
        tracker.log_array(scores, f"attributions/{method}.npy")
        tracker.log_metrics(
            {
                f"time/attribution_seconds/{method}": seconds,
                f"throughput/{method}_images_per_second": len(scores) / seconds,
            }
        )
        scores = torch.from_numpy(scores)
        maps.append(scores[:N_EXAMPLES].numpy())
        for pct in percentages:
            masked = apply_mask(inputs, top_k_mask(scores, pct / 100), replacement)
            shifts = representation_shifts(codes, encode(encoder, masked, device))
            evidence[point_key(method, pct)] = shifts.numpy()  # per example: tested claims
            shift = shifts.mean().item()
            rows.append({"method": method, "pct_perturbed": pct, "representation_shift": shift})
    return FeatureShifts(pd.DataFrame(rows), maps, list(methods), evidence)


def log_feature_shifts(
    tracker: Tracker,
    dataset: DatasetPlugin,
    results: FeatureShifts,
    examples: torch.Tensor,
    title: str,
) -> None:
    """Logs the representation shift's curves, table, plot and saliency maps.

    The curves ``representation_shift/<method>`` (step: % perturbed), the table
    ``consistency_features.csv``, its plot and the saliency maps of ``examples`` (the first
    :data:`N_EXAMPLES` explained examples).
    """
    table = results.table
    tracker.log_metric_rows(
        [
            (
                f"representation_shift/{r.method}",
                r.representation_shift,
                int(round(r.pct_perturbed)),
            )
            for r in table.itertuples()
        ]
    )
    tracker.log_table(table, "consistency_features.csv")
    tracker.log_figure(
        method_curves(
            table,
            "pct_perturbed",
            "representation_shift",
            xlabel=f"% {dataset.feature_unit} perturbed",
            ylabel="representation shift",
            title=title,
        ),
        "consistency_features",
    )
    log_example_maps(
        tracker, dataset, examples, results.maps, results.methods, "saliency_examples", title
    )
