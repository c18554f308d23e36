"""Test examples beside their most and least important training examples."""

from __future__ import annotations

import numpy as np
import pytest

from lfxai.plotting.examples import top_bottom_examples


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
