"""Correlation matrices drawn as annotated heatmaps."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: experiments run on servers and in containers

import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def correlation_heatmaps(
    panels: dict[str, tuple[np.ndarray, np.ndarray]], labels: list[str], title: str = ""
) -> Figure:
    """One heatmap per panel, each cell annotated ``mean ± std``.

    Args:
        panels: panel title -> ``(mean, std)``, each ``(T, T)`` (e.g. over runs).
        labels: the ``T`` row / column labels.
        title: figure title.

    Returns:
        The figure (panels side by side, two per row).
    """
    n = len(panels)
    cols = min(n, 2)
    rows = (n + cols - 1) // cols
    size = 0.9 * len(labels) + 1.5
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size), squeeze=False)
    for ax, (name, (mean, std)) in zip(axes.flat, panels.items(), strict=False):
        image = ax.imshow(mean, vmin=-1, vmax=1, cmap="coolwarm")
        for (i, j), value in np.ndenumerate(mean):
            ax.text(j, i, f"{value:.2f}\n±{std[i, j]:.2f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_title(name, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
