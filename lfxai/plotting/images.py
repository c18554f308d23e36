"""Colour images with their importance maps, one row per method."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: experiments run on servers and in containers

import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def rgb_importance(
    images: np.ndarray,
    maps: list[np.ndarray],
    methods: list[str],
    title: str | None = None,
    cmap: str = "viridis",
) -> Figure:
    """RGB images (first row) and, per method, each image's importance map.

    A map's pixel is the sum of the absolute importance of its three channels, scaled to the
    image's own maximum, so every map uses the full colour range.

    Args:
        images: ``(n, 3, H, W)`` in [0, 1].
        maps: per method, ``(n, 3, H, W)`` importance.
        methods: the methods' names, in the order of ``maps``.
        title: figure title.
        cmap: the maps' colour map.
    """
    n = len(images)
    rows = 1 + len(maps)
    fig, axes = plt.subplots(rows, n, figsize=(1.4 * n, 1.4 * rows), squeeze=False)
    for c in range(n):
        axes[0, c].imshow(np.clip(np.transpose(images[c], (1, 2, 0)), 0, 1))
    for r, scores in enumerate(maps, start=1):
        pixels = np.abs(scores).sum(axis=1)  # (n, H, W)
        peak = pixels.reshape(n, -1).max(axis=1)
        pixels = pixels / np.where(peak > 0, peak, 1)[:, None, None]
        for c in range(n):
            axes[r, c].imshow(pixels[c], cmap=cmap, vmin=0, vmax=1)
    for r, label in enumerate(["image", *methods]):
        axes[r, 0].set_ylabel(label, fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
