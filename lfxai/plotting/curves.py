"""Curves of a metric against a percentage, one line per method."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: experiments run on servers and in containers

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def method_curves(
    frame: pd.DataFrame,
    x: str,
    y: str,
    hue: str = "method",
    xlabel: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    style: str | None = None,
) -> Figure:
    """One line (with markers) per value of ``hue``; ``style`` splits lines by line style.

    Args:
        frame: long table with columns ``x``, ``y``, ``hue`` (and ``style``).
        x: column on the horizontal axis (e.g. percentage of features perturbed).
        y: column on the vertical axis.
        hue: column naming the method.
        xlabel: the horizontal axis's label (default: ``x``).
        ylabel: the vertical axis's label (default: ``y``).
        title: figure title.
        style: optional column drawn as solid / dashed lines (e.g. top / bottom).

    Returns:
        The figure.
    """
    fig, ax = plt.subplots(figsize=(5.5, 4))
    styles = ["-", "--", ":", "-."]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    hues = list(dict.fromkeys(frame[hue]))  # one colour per method, whatever its line style
    groups = [hue] + ([style] if style else [])
    for keys, part in frame.groupby(groups, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        label = " / ".join(str(k) for k in keys)
        line = "-" if not style else styles[list(frame[style].unique()).index(keys[1]) % 4]
        colour = colours[hues.index(keys[0]) % len(colours)]
        part = part.sort_values(x)
        ax.plot(part[x], part[y], line, color=colour, marker="o", markersize=4, label=label)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def image_grid(
    images: np.ndarray, row_labels: list[str], title: str | None = None, cmap: str = "viridis"
) -> Figure:
    """A grid of 2-D maps, one row per label (e.g. saliency maps per method).

    Args:
        images: ``(rows, cols, H, W)``.
        row_labels: one label per row.
        title: figure title.
        cmap: colour map.
    """
    rows, cols = images.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.4 * rows), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(images[r, c], cmap=cmap)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(row_labels[r], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
