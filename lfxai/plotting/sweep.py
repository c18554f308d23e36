"""A sweep's trade-off: saliency correlation against reconstruction, front highlighted."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: experiments run on servers and in containers

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

MARKERS = ("o", "s", "^", "D", "v", "P")
LABELS = {
    "pearson": "mean Pearson correlation between units' saliency maps",
    "test_reconstruction": "test reconstruction loss (Bernoulli NLL per image)",
}


def pareto_figure(
    table: pd.DataFrame,
    x: str,
    y: str,
    front: str = "pareto",
    color: str = "beta",
    style: str = "loss",
    title: str | None = None,
) -> Figure:
    """Every trial as a point, the trials on the front joined by a step line and circled.

    Args:
        table: one row per completed trial with columns ``x``, ``y``, ``front`` (bool),
            ``color`` and ``style``.
        x: the first objective (minimised), on the horizontal axis.
        y: the second objective (minimised), on the vertical axis.
        front: the column saying whether a trial is on the Pareto front.
        color: the column that colours the points (log scale).
        style: the column that picks the points' markers.
        title: figure title.
    """
    fig, ax = plt.subplots(figsize=(6, 4.5))
    values = table[color].astype(float)
    norm = LogNorm(vmin=values.min(), vmax=max(values.max(), values.min() * 1.001))
    scatter = None
    for i, (kind, part) in enumerate(table.groupby(style, sort=True)):
        scatter = ax.scatter(
            part[x],
            part[y],
            c=part[color].astype(float),
            cmap="viridis",
            norm=norm,
            marker=MARKERS[i % len(MARKERS)],
            s=36,
            edgecolors="none",
            label=str(kind),
        )
    best = table[table[front].astype(bool)].sort_values(x)
    if len(best):
        ax.step(best[x], best[y], where="post", color="crimson", lw=1.2, label="Pareto front")
        ax.scatter(best[x], best[y], s=110, facecolors="none", edgecolors="crimson", lw=1.2)
    if scatter is not None:
        fig.colorbar(scatter, ax=ax, label=color)
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel(LABELS.get(y, y))
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        legend = ax.legend(fontsize=8)
        for handle, label in zip(legend.legend_handles, labels, strict=False):
            if handle is not None and label != "Pareto front":  # a marker names a loss
                handle.set_color("gray")
    if not np.isfinite(table[[x, y]].to_numpy(dtype=float)).any():
        ax.text(0.5, 0.5, "no finite values", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig
