"""Test examples beside their most and least important training examples."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import pyplot as plt

from lfxai.plotting.examples import draw_example, top_bottom_examples


@pytest.mark.parametrize(
    ("shape", "kind"),
    [((1, 28, 28), "image"), ((3, 32, 32), "image"), ((140, 1), "line")],
)
def test_one_row_per_test_example_one_column_per_ranked_example(shape, kind) -> None:
    rng = np.random.default_rng(0)
    test, labels = rng.random((3, *shape)), np.array([4, 1, 4])
    columns = [
        (f"DKNN {r}", rng.random((3, *shape)), np.array([4, 1, 0])) for r in ("top", "bottom")
    ]
    figure = top_bottom_examples(test, labels, columns, "title")
    axes = np.array(figure.axes).reshape(3, 3)
    assert [ax.get_xlabel() for ax in axes[-1]] == ["test", "DKNN top", "DKNN bottom"]
    assert [ax.get_title() for ax in axes[1]] == ["1", "1", "1"]  # each panel's label
    drawn = [bool(ax.images) if kind == "image" else bool(ax.lines) for ax in axes.flat]
    assert all(drawn)
    assert figure.get_suptitle() == "title"
    np.testing.assert_allclose(figure.get_size_inches(), (1.3 * 3, 1.3 * 3))
    assert {ax.title.get_fontsize() for ax in figure.axes} == {7}
    assert {ax.xaxis.label.get_fontsize() for ax in axes[-1]} == {7}
    (suptitle,) = figure.texts
    assert suptitle.get_fontsize() == 9


def test_one_test_example_with_one_column_is_still_a_grid() -> None:
    test, column = np.zeros((1, 1, 4, 4)), ("SimplEx top", np.ones((1, 1, 4, 4)), np.array([2]))
    figure = top_bottom_examples(test, np.array([2]), [column])
    assert [ax.get_xlabel() for ax in figure.axes] == ["test", "SimplEx top"]
    assert figure.get_suptitle() == "" and not figure.texts
    plt.close(figure)


def test_an_example_is_drawn_as_it_looks() -> None:
    """A grey image, an RGB image clipped to [0, 1] in (H, W, C) order, anything else (a
    series, a 2-D array even with 1 or 3 rows) a dark curve over its values."""
    rng = np.random.default_rng(1)
    grey, rgb = rng.random((1, 5, 4)), rng.random((3, 5, 4)) * 2 - 0.5  # some outside [0, 1]
    figure, axes = plt.subplots(1, 5)
    try:
        series = rng.random((6, 1))
        for ax, example in zip(axes, [grey, rgb, series, grey[0, :1], rgb[:, 0]], strict=True):
            draw_example(ax, example)
            assert ax.get_xticks().size == ax.get_yticks().size == 0
        np.testing.assert_array_equal(axes[0].images[0].get_array(), grey[0])
        assert axes[0].images[0].get_cmap().name == "gray"
        shown = np.clip(np.transpose(rgb, (1, 2, 0)), 0, 1)
        np.testing.assert_array_equal(axes[1].images[0].get_array(), shown)
        for ax, values in zip(axes[2:], [series, grey[0, :1], rgb[:, 0]], strict=True):
            (line,) = ax.get_lines()
            assert not ax.images and (line.get_color(), line.get_linewidth()) == ("0.2", 0.8)
            assert line.get_ydata().tolist() == values.reshape(-1).tolist()
    finally:
        plt.close(figure)
