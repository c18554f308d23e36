"""Time series drawn with the importance of each time step."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: experiments run on servers and in containers

import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def series_importance(
    series: np.ndarray,
    maps: list[np.ndarray],
    methods: list[str],
    title: str | None = None,
    cmap: str = "viridis",
) -> Figure:
    """One column per series, one row per method: the series coloured by its importance.

    Each map is scaled to [0, 1] per series (ranks within a series are what the
    consistency checks use), and drawn as the colour of the series' points and as a shaded
    band under the curve, so the important stretches of a beat stand out.

    Args:
        series: ``(n, T)`` values.
        maps: per method, ``(n, T)`` importance of each time step.
        methods: one name per map.
        title: figure title.
        cmap: colour map of the importance.

    Returns:
        The figure.
    """
    n, length = series.shape
    steps = np.arange(length)
    fig, axes = plt.subplots(
        len(maps), n, figsize=(2.2 * n, 1.6 * len(maps)), squeeze=False, sharex=True
    )
    low = float(series.min())
    for r, (scores, method) in enumerate(zip(maps, methods, strict=True)):
        for c in range(n):
            ax = axes[r, c]
            s = scores[c] - scores[c].min()
            s = s / s.max() if s.max() > 0 else s
            ax.fill_between(steps, low, series[c], color="0.85", lw=0)
            ax.plot(steps, series[c], color="0.3", lw=0.8)
            ax.scatter(steps, series[c], c=s, cmap=cmap, s=5, vmin=0, vmax=1, zorder=3)
            ax.set_yticks([])
            if r == len(maps) - 1:
                ax.set_xlabel("time step", fontsize=7)
            ax.tick_params(labelsize=6)
        axes[r, 0].set_ylabel(method, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
