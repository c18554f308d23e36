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


def test_the_grid_its_size_fonts_and_colour_map() -> None:
    """Two panels side by side, each (0.9 T + 1.5) inches square, a colour bar beside each,
    cells annotated in small centred text, labels rotated under the panel; no title asked,
    none drawn."""
    mean, std = np.array([[1.0, 0.5], [0.5, 1.0]]), np.zeros((2, 2))
    figure = correlation_heatmaps({"a": (mean, std), "b": (-mean, std)}, ["X", "Y"])
    try:
        size = 0.9 * 2 + 1.5
        np.testing.assert_allclose(figure.get_size_inches(), (2 * size, size))
        drawn = [ax for ax in figure.axes if ax.images]
        assert len(drawn) == 2 and len(figure.axes) == 4  # a colour bar per panel
        for ax, sign in zip(drawn, (1, -1), strict=True):
            image = ax.images[0]
            assert image.get_cmap().name == "coolwarm"
            assert image.get_clim() == (-1, 1)  # also for "b", whose largest value is 0.5
            np.testing.assert_array_equal(image.get_array(), sign * mean)
            cell = ax.texts[1]  # row 0, column 1
            assert cell.get_position() == (1, 0) and cell.get_text() == f"{sign * 0.5:.2f}\n±0.00"
            assert (cell.get_ha(), cell.get_va(), cell.get_fontsize()) == ("center", "center", 7)
            ticks = ax.get_xticklabels()
            assert [t.get_text() for t in ticks] == ["X", "Y"]
            assert {(t.get_rotation(), t.get_ha(), t.get_fontsize()) for t in ticks} == {
                (45.0, "right", 8)
            }
            assert {t.get_fontsize() for t in ax.get_yticklabels()} == {8}
            assert ax.title.get_fontsize() == 9
            # Its own colour bar: just right of it, level with it, a narrow strip (fraction 0.046).
            bar, panel = image.colorbar.ax.get_position(), ax.get_position()
            assert bar.x0 > panel.x1 and bar.x0 - panel.x1 < 0.1 * panel.width
            assert panel.y0 < (bar.y0 + bar.y1) / 2 < panel.y1
            assert bar.width < 0.1 * panel.width
        assert figure.get_suptitle() == "" and not figure.texts
    finally:
        plt.close(figure)


def test_one_panel_fills_a_one_column_grid() -> None:
    figure = correlation_heatmaps({"only": (np.eye(3), np.eye(3))}, ["A", "B", "C"], "T")
    try:
        np.testing.assert_allclose(figure.get_size_inches(), (0.9 * 3 + 1.5,) * 2)
        assert len(figure.axes) == 2 and figure.axes[0].get_title() == "only"
        assert figure.axes[0].texts[4].get_text() == "1.00\n±1.00"
        assert figure.get_suptitle() == "T"
    finally:
        plt.close(figure)
