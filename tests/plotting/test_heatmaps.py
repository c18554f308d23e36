"""Correlation heatmaps: one panel per matrix, every cell annotated with mean and std."""

from __future__ import annotations

import numpy as np
from matplotlib import pyplot as plt

from lfxai.plotting.heatmaps import correlation_heatmaps


def test_one_annotated_panel_per_matrix() -> None:
    mean = np.array([[1.0, 0.25, -0.5], [0.25, 1.0, 0.1], [-0.5, 0.1, 1.0]])
    std = np.full((3, 3), 0.05)
    panels = {
        "features, Pearson": (mean, std),
        "examples, Spearman": (mean.T, std),
        "x": (mean, std),
    }
    figure = correlation_heatmaps(panels, ["A", "B", "C"], "T")
    try:
        drawn = [ax for ax in figure.axes if ax.images]  # colour bars have no image
        assert [ax.get_title() for ax in drawn] == list(panels)
        texts = [t.get_text() for t in drawn[0].texts]
        assert len(texts) == 9 and texts[2] == "-0.50\n±0.05"
        assert [t.get_text() for t in drawn[0].get_yticklabels()] == ["A", "B", "C"]
        assert drawn[0].images[0].get_clim() == (-1, 1)  # one scale for every panel
        assert sum(not ax.axison for ax in figure.axes) == 1  # the unused fourth slot
    finally:
        plt.close(figure)
