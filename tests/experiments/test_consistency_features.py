"""consistency_features' measurement on a tiny encoder, checked against its building blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lfxai.config import ConfigError, build_config, load_profile
from lfxai.data.masking import apply_mask, top_k_mask
from lfxai.data.splits import Split
from lfxai.experiments import consistency_features
from lfxai.experiments.consistency_features import (
    N_EXAMPLES,
    ConsistencyFeaturesConfig,
    feature_shifts,
    log_feature_shifts,
)
from lfxai.explanations.features import attribute_auxiliary, make_feature_method
from lfxai.plugins import get_dataset
from tests.helpers import spy_named


class _Halved(nn.Module):
    """A baseline module (as CIFAR-10's blur): a perturbed feature takes half its value."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x


class _Recorder:
    """The tracker calls of :func:`feature_shifts` and :func:`log_feature_shifts`, in memory."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.metrics: dict[str, float] = {}
        self.rows: list[tuple[str, float, int]] = []
        self.tables: dict[str, object] = {}
        self.figures: list[str] = []

    def log_array(self, array, path: str) -> None:
        self.arrays[path] = np.asarray(array)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        self.metrics |= metrics

    def log_metric_rows(self, rows) -> None:
        self.rows += list(rows)

    def log_table(self, table, path: str) -> None:
        self.tables[path] = table

    def log_figure(self, figure, name: str) -> None:
        self.figures.append(name)


def _encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()


def test_each_method_s_top_k_features_take_the_baseline_s_values_and_shift_the_codes() -> None:
    encoder, tracker = _encoder(), _Recorder()
    explain = Split(torch.rand(10, 1, 4, 4), torch.arange(10))
    methods, pcts = ("Random", "IntegratedGradients"), (25.0, 100.0)
    results = feature_shifts(encoder, explain, _Halved(), methods, pcts, 4, 5, "cpu", tracker)
    codes = encoder(explain.x).detach()
    np.testing.assert_allclose(tracker.arrays["codes/test.npy"], codes.numpy(), rtol=1e-6)
    assert results.methods == list(methods) and list(results.table.columns) == [
        "method",
        "pct_perturbed",
        "representation_shift",
    ]
    for method, maps in zip(methods, results.maps, strict=True):
        # The method's own scores: the run's seed (Random), the baseline module (IG).
        expected = attribute_auxiliary(
            encoder,
            explain.loader(4),
            "cpu",
            make_feature_method(method, encoder, seed=5),
            _Halved(),
            progress=False,
        )
        scores = tracker.arrays[f"attributions/{method}.npy"]
        np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(maps, scores[:N_EXAMPLES])
        seconds = tracker.metrics[f"time/attribution_seconds/{method}"]
        assert 0 < seconds < 60
        throughput = tracker.metrics[f"throughput/{method}_images_per_second"]
        assert throughput == pytest.approx(10 / seconds)
        for pct in pcts:
            mask = top_k_mask(torch.from_numpy(scores), pct / 100)
            masked = apply_mask(explain.x, mask, 0.5 * explain.x)
            shifts = ((encoder(masked) - codes) ** 2).sum(dim=1).detach().numpy()
            np.testing.assert_allclose(results.evidence[f"{method}@{pct:g}"], shifts, rtol=1e-5)
            row = results.table[
                (results.table.method == method) & (results.table.pct_perturbed == pct)
            ]
            assert row.representation_shift.item() == pytest.approx(shifts.mean(), rel=1e-5)
    other = make_feature_method("Random", encoder, seed=6)  # another seed ranks otherwise
    assert not np.allclose(
        attribute_auxiliary(encoder, explain.loader(4), "cpu", other, progress=False),
        tracker.arrays["attributions/Random.npy"],
    )


def test_the_curves_table_and_figure_are_logged_under_the_data_set_s_feature_unit(
    monkeypatch,
) -> None:
    curves = spy_named(monkeypatch, consistency_features, "method_curves")
    maps = spy_named(monkeypatch, consistency_features, "log_example_maps")
    tracker, explain = _Recorder(), Split(torch.rand(8, 1, 4, 4), torch.arange(8))
    results = feature_shifts(
        _encoder(), explain, _Halved(), ["Random"], [50.0], 4, 0, "cpu", tracker
    )
    log_feature_shifts(tracker, get_dataset("mnist"), results, explain.x[:N_EXAMPLES], "a title")
    shift = results.table.representation_shift.item()
    assert tracker.rows == [("representation_shift/Random", shift, 50)]
    assert tracker.tables["consistency_features.csv"] is results.table
    (call,) = curves
    assert (call["x"], call["y"], call["xlabel"], call["ylabel"], call["title"]) == (
        "pct_perturbed",
        "representation_shift",
        "% pixels perturbed",
        "representation shift",
        "a title",
    )
    assert call["frame"] is results.table and "consistency_features" in tracker.figures
    (call,) = maps
    assert call["path"] == "saliency_examples" and call["title"] == "a title"
    assert call["maps"] is results.maps and call["methods"] == ["Random"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"feature_methods": "Saliency,Shap"},
            r"^unknown feature_methods entry 'Shap'; valid choices: \[.*'Saliency'\]$",
        ),
        ({"perturbation_percentages": "10,0"}, r"^perturbation_percentages entry 0.0 is outside"),
        ({"attribution_batch_size": "0"}, r"^attribution_batch_size must be positive, got 0$"),
    ],
)
def test_bad_settings_name_the_value_and_the_choices(overrides, message) -> None:
    values = load_profile("mnist", "consistency_features", "smoke")
    with pytest.raises(ConfigError, match=message):
        build_config(ConsistencyFeaturesConfig, values, overrides)
