"""Consistency check of label-free feature importance (paper Section 4.1).

Train an autoencoder, explain the representations of the explained split with each feature
attribution method, replace the top-k% most important features of every example by the data
set's baseline (a black pixel, the mean training beat, a blurred image) and measure how far
the representation moves. A faithful method moves it more than a random ranking does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
import torch

from lfxai.config import check_choices, check_percentages, check_positive
from lfxai.data.masking import apply_mask, top_k_mask
from lfxai.experiments.common import (
    AutoencoderConfig,
    fit_or_reuse,
    load_splits,
    log_claims,
    log_example_maps,
    model_title,
    new_model,
)
from lfxai.experiments.registry import register
from lfxai.explanations.features import FEATURE_METHODS, attribute_auxiliary, make_feature_method
from lfxai.metrics.claims import point_key
from lfxai.metrics.consistency import encode, representation_shifts
from lfxai.plotting.curves import method_curves
from lfxai.plugins import DatasetPlugin
from lfxai.plugins.base import replacement_for
from lfxai.tracking import Tracker
from lfxai.training import get_device, seed_everything

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

    baseline = dataset.baseline(train)
    codes = encode(encoder, explain.x, device)
    tracker.log_array(codes, "codes/test.npy")  # lets a reloaded encoder be checked
    replacement = replacement_for(baseline, explain.x)
    rows, maps, evidence = [], [], {}
    for method in config.feature_methods:
        attr_method = make_feature_method(method, encoder, seed=config.seed)
        start = time.perf_counter()
        scores = attribute_auxiliary(
            encoder, explain.loader(config.attribution_batch_size), device, attr_method, baseline
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
        for pct in config.perturbation_percentages:
            masked = apply_mask(explain.x, top_k_mask(scores, pct / 100), replacement)
            shifts = representation_shifts(codes, encode(encoder, masked, device))
            evidence[point_key(method, pct)] = shifts.numpy()  # per example: tested claims
            shift = shifts.mean().item()
            rows.append({"method": method, "pct_perturbed": pct, "representation_shift": shift})

    table = pd.DataFrame(rows)
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
    title = model_title(dataset, config)
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
        tracker,
        dataset,
        explain.x[:N_EXAMPLES],
        maps,
        list(config.feature_methods),
        "saliency_examples",
        title=title,
    )
    summary = table.groupby("method")["representation_shift"].mean()
    final = {f"representation_shift_mean/{m}": float(v) for m, v in summary.items()}
    tracker.log_metrics(final)
    log_claims(tracker, "consistency_features", table, title, evidence)
    return final
