"""rgb_importance: colour images on the first row, one row of importance maps per method."""

from __future__ import annotations

import numpy as np
from matplotlib import pyplot as plt

from lfxai.plotting.images import rgb_importance


def _panels(figure) -> np.ndarray:
    """The figure's axes as a (rows, cols) grid, in the order subplots made them."""
    axes = figure.axes
    rows = max(ax.get_subplotspec().rowspan.stop for ax in axes)
    return np.array(axes, dtype=object).reshape(rows, -1)


def test_the_first_row_shows_each_image_channels_last_and_clipped_to_0_1():
    images = np.zeros((2, 3, 4, 5))
    images[0, 0] = 2.0  # red above 1: clipped
    images[1, 2] = -1.0  # blue below 0: clipped
    images[1, 1, 0, 0] = 0.5
    panels = _panels(rgb_importance(images, [], []))
    assert panels.shape == (1, 2)
    first, second = (ax.images[0].get_array() for ax in panels[0])
    assert first.shape == second.shape == (4, 5, 3)
    np.testing.assert_array_equal(first[..., 0], np.ones((4, 5)))
    np.testing.assert_array_equal(first[..., 1:], np.zeros((4, 5, 2)))
    assert second[0, 0, 1] == 0.5 and second[..., 2].min() == 0.0
    plt.close("all")


def test_a_map_sums_the_absolute_channels_scaled_to_its_own_image_maximum():
    images = np.full((2, 3, 2, 2), 0.5)
    scores = np.zeros((2, 3, 2, 2))
    scores[0, 0] = [[1.0, -2.0], [0.0, 0.5]]
    scores[0, 1] = [[-1.0, 0.0], [0.0, 0.5]]  # pixel (0, 0): |1| + |-1| = 2, the peak is 2
    scores[1, 2, 1, 1] = -0.25  # the second image's own peak: 1 on its map
    figure = rgb_importance(images, [scores, 4 * scores], ["A", "B"], title="T", cmap="magma")
    panels = _panels(figure)
    assert panels.shape == (3, 2)
    for row in (1, 2):  # scaled: 4 * scores gives the same map
        shown = panels[row, 0].images[0]
        np.testing.assert_allclose(shown.get_array(), [[1.0, 1.0], [0.0, 0.5]])
        assert shown.get_clim() == (0, 1) and shown.get_cmap().name == "magma"
        second = panels[row, 1].images[0].get_array()
        np.testing.assert_array_equal(second, [[0.0, 0.0], [0.0, 1.0]])
    assert [row[0].get_ylabel() for row in panels] == ["image", "A", "B"]
    assert all(ax.get_ylabel() == "" for ax in panels[:, 1])
    assert all(not ax.get_xticks().size and not ax.get_yticks().size for ax in panels.flat)
    assert figure.get_suptitle() == "T"
    plt.close("all")


def test_without_a_title_the_figure_has_none_and_sizes_follow_the_grid():
    figure = rgb_importance(np.zeros((3, 3, 2, 2)), [np.zeros((3, 3, 2, 2))], ["A"])
    assert figure.get_suptitle() == ""
    np.testing.assert_allclose(figure.get_size_inches(), [1.4 * 3, 1.4 * 2])
    assert _panels(figure)[1, 2].images[0].get_cmap().name == "viridis"
    plt.close("all")


def test_a_zero_map_stays_zero_and_every_map_keeps_the_0_1_colour_range():
    scores = np.zeros((2, 3, 2, 2))
    scores[1] = 1.0 + np.arange(4.0).reshape(2, 2)  # no pixel at 0: the range is still 0-1
    figure = rgb_importance(np.zeros((2, 3, 2, 2)), [scores], ["A"])
    panels = _panels(figure)
    zero, positive = (ax.images[0] for ax in panels[1])
    # The data under imshow's mask: a 0 / 0 would be a masked NaN, not a zero.
    np.testing.assert_array_equal(np.ma.getdata(zero.get_array()), np.zeros((2, 2)))
    np.testing.assert_allclose(positive.get_array(), [[0.25, 0.5], [0.75, 1.0]])
    assert zero.get_clim() == positive.get_clim() == (0, 1)
    assert [ax.yaxis.label.get_fontsize() for ax in panels[:, 0]] == [8, 8]
    plt.close("all")
