"""Test examples beside their most and least important training examples, per method."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: experiments run on servers and in containers

import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def draw_example(ax: Axes, example: np.ndarray) -> None:
    """Draws one example as it looks.

    A one- or three-channel image ``(C, H, W)`` as an image, anything else (a series
    ``(T, 1)``) as a curve over its flattened values.
    """
    ax.set_xticks([])
    ax.set_yticks([])
    if example.ndim == 3 and example.shape[0] == 1:
        ax.imshow(example[0], cmap="gray")
    elif example.ndim == 3 and example.shape[0] == 3:
        ax.imshow(np.clip(np.transpose(example, (1, 2, 0)), 0, 1))
    else:
        ax.plot(example.reshape(-1), color="0.2", lw=0.8)


def top_bottom_examples(
    test: np.ndarray,
    test_labels: np.ndarray,
    columns: list[tuple[str, np.ndarray, np.ndarray]],
    title: str | None = None,
) -> Figure:
    """One row per test example: the example, then one column per (method, rank) shown.

    Each panel is titled with its example's label, so a column whose labels match the
    test example's shows a method that ranks same-class examples first.

    Args:
        test: ``(n, ...)`` test examples.
        test_labels: ``(n,)`` their labels.
        columns: ``(heading, examples (n, ...), labels (n,))`` per column, e.g. the most
            important training example of each test example under one method.
        title: figure title.
    """
    n, cols = len(test), 1 + len(columns)
    fig, axes = plt.subplots(n, cols, figsize=(1.3 * cols, 1.3 * n), squeeze=False)
    headings = ["test", *(heading for heading, _, _ in columns)]
    for r in range(n):
        panels = [(test[r], test_labels[r]), *((x[r], y[r]) for _, x, y in columns)]
        for c, (example, label) in enumerate(panels):
            draw_example(axes[r, c], example)
            axes[r, c].set_title(f"{label}", fontsize=7, pad=2)
    for c, heading in enumerate(headings):
        axes[-1, c].set_xlabel(heading, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
