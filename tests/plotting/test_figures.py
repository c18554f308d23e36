"""Figures: one line per method in x order, one panel per map, importance scaled per series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from lfxai.plotting.curves import image_grid, method_curves
from lfxai.plotting.series import series_importance


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_method_curves_draw_one_sorted_line_per_method():
    frame = pd.DataFrame(
        {"method": ["B", "A", "B", "A"], "pct": [50, 10, 10, 50], "shift": [4.0, 1.0, 3.0, 2.0]}
    )
    figure = method_curves(frame, "pct", "shift", xlabel="% perturbed", title="T")
    assert isinstance(figure, Figure)
    (axis,) = figure.axes
    lines = {line.get_label(): line for line in axis.get_lines()}
    assert list(lines) == ["B", "A"]  # in the order the methods come (the caller's order)
    assert lines["B"].get_xdata().tolist() == [10, 50]  # sorted by x
    assert lines["B"].get_ydata().tolist() == [3.0, 4.0]
    assert lines["A"].get_ydata().tolist() == [1.0, 2.0]
    assert (axis.get_xlabel(), axis.get_ylabel(), axis.get_title()) == ("% perturbed", "shift", "T")


def test_method_curves_split_styles_by_a_second_column():
    frame = pd.DataFrame(
        {
            "method": ["A"] * 4,
            "side": ["top", "top", "bottom", "bottom"],
            "k": [1, 2, 1, 2],
            "rate": [0.9, 0.8, 0.1, 0.2],
        }
    )
    (axis,) = method_curves(frame, "k", "rate", style="side").axes
    styles = {line.get_label(): line.get_linestyle() for line in axis.get_lines()}
    assert styles == {"A / top": "-", "A / bottom": "--"}


def test_method_curves_cycle_four_line_styles():
    sides = ["a", "b", "c", "d", "e"]
    frame = pd.DataFrame({"method": "A", "side": sides, "k": 1, "rate": range(5)})
    (axis,) = method_curves(frame, "k", "rate", style="side").axes
    styles = [line.get_linestyle() for line in axis.get_lines()]
    assert styles == ["-", "--", ":", "-.", "-"]


def test_image_grid_has_one_panel_per_map_and_row_labels():
    images = np.arange(2 * 3 * 4 * 4, dtype=float).reshape(2, 3, 4, 4)
    figure = image_grid(images, ["image", "IG"], title="maps")
    assert len(figure.axes) == 6
    assert [figure.axes[r * 3].get_ylabel() for r in range(2)] == ["image", "IG"]
    np.testing.assert_array_equal(figure.axes[4].images[0].get_array(), images[1, 1])
    assert figure.get_suptitle() == "maps"


def test_method_curves_give_a_method_one_colour_whatever_its_style_and_mark_points():
    frame = pd.DataFrame(
        {
            "method": ["A", "A", "B", "B"],
            "side": ["top", "bottom", "top", "bottom"],
            "k": 1,
            "rate": [0.9, 0.1, 0.8, 0.2],
        }
    )
    figure = method_curves(frame, "k", "rate", style="side")
    (axis,) = figure.axes
    lines = {line.get_label(): line for line in axis.get_lines()}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    assert lines["A / top"].get_color() == lines["A / bottom"].get_color() == cycle[0]
    assert lines["B / top"].get_color() == lines["B / bottom"].get_color() == cycle[1]
    assert {(line.get_marker(), line.get_markersize()) for line in lines.values()} == {("o", 4)}
    assert [text.get_fontsize() for text in axis.get_legend().get_texts()] == [8] * 4
    assert all(line.get_alpha() == 0.3 for line in axis.get_xgridlines())
    assert list(figure.get_size_inches()) == pytest.approx([5.5, 4])
    assert axis.get_title() == "" and axis.get_xlabel() == "k"


def test_image_grid_of_one_map_uses_the_colour_map_and_sizes_per_panel():
    figure = image_grid(np.ones((1, 1, 2, 2)), ["only"], cmap="gray")
    (axis,) = figure.axes
    assert axis.images[0].get_cmap().name == "gray"
    assert axis.get_ylabel() == "only" and axis.yaxis.label.get_fontsize() == 8
    assert list(figure.get_size_inches()) == pytest.approx([1.4, 1.4])
    assert figure.get_suptitle() == ""
    wide = image_grid(np.ones((2, 3, 2, 2)), ["a", "b"])
    assert list(wide.get_size_inches()) == pytest.approx([4.2, 2.8])
    assert wide.axes[0].images[0].get_cmap().name == "viridis"


def test_series_importance_scales_each_map_to_zero_one():
    series = np.array([[0.0, 1.0, 0.0], [2.0, 2.0, 1.0]])
    maps = [np.array([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0]])]
    figure = series_importance(series, maps, ["IG"], title="beats")
    assert len(figure.axes) == 2 and figure.axes[0].get_ylabel() == "IG"
    colours = [axis.collections[-1].get_array().tolist() for axis in figure.axes]
    assert colours == [[0.0, 1.0, 0.5], [0.0, 0.0, 0.0]]  # a constant map stays 0, no NaN
    narrow = [np.array([[0.0, 0.5, 0.25], [0.1, 0.2, 0.1]])]  # ranges below 1: scaled up too
    figure = series_importance(series, narrow, ["IG"])
    colours = [axis.collections[-1].get_array() for axis in figure.axes]
    np.testing.assert_allclose(colours, [[0.0, 1.0, 0.5], [0.0, 1.0, 0.0]])
    with pytest.raises(ValueError):
        series_importance(series, maps, ["IG", "extra"])  # one name per map


def test_series_importance_draws_a_band_a_line_and_coloured_points_per_series():
    """Two methods x two beats: the figure's size, shared time axis, each panel's grey band
    from the lowest value up to the beat, its dark line and its points coloured on [0, 1]."""
    series = np.array([[0.0, 1.0, 0.5, 2.0], [-1.0, 0.0, 1.0, 0.0]])
    maps = [np.arange(8.0).reshape(2, 4), np.ones((2, 4))]
    figure = series_importance(series, maps, ["IG", "Random"], title="beats", cmap="magma")
    np.testing.assert_allclose(figure.get_size_inches(), (2.2 * 2, 1.6 * 2))
    axes = np.array(figure.axes).reshape(2, 2)
    assert axes[0, 0].get_shared_x_axes().joined(axes[0, 0], axes[1, 1])
    for r, c in np.ndindex(2, 2):
        ax = axes[r, c]
        band, points = ax.collections  # in drawing order
        (line,) = ax.get_lines()
        # The band: from the lowest value of all beats (-1) up to this beat, grey, no edge.
        vertices = band.get_paths()[0].vertices
        assert vertices[:, 1].min() == -1.0 and vertices[:, 1].max() == series[c].max()
        np.testing.assert_allclose(band.get_facecolor()[0][:3], [0.85] * 3)
        assert band.get_linewidth()[0] == 0
        assert line.get_xdata().tolist() == [0, 1, 2, 3]
        assert line.get_ydata().tolist() == series[c].tolist()
        assert (line.get_color(), line.get_linewidth()) == ("0.3", 0.8)
        np.testing.assert_array_equal(points.get_offsets(), np.c_[np.arange(4), series[c]])
        assert points.get_cmap().name == "magma" and points.get_clim() == (0, 1)
        assert points.get_sizes().tolist() == [5] and points.get_zorder() == 3
        assert ax.get_yticks().size == 0
        assert ax.get_xlabel() == ("time step" if r == 1 else "")
        assert ax.xaxis.get_major_ticks()[0].label1.get_fontsize() == 6
    assert axes[1, 0].xaxis.label.get_fontsize() == 7
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["IG", "Random"]
    assert axes[0, 0].yaxis.label.get_fontsize() == 8
    (suptitle,) = figure.texts
    assert (suptitle.get_text(), suptitle.get_fontsize()) == ("beats", 9)
