"""Figures of the disVAE study: loss terms per epoch and metric box plots per beta and loss."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: experiments run on servers and in containers

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

MODES = ("train", "test")


def loss_term_curves(history: pd.DataFrame, title: str | None = None) -> Figure:
    """One panel per loss term (``loss``, ``reconstruction``, ``kl``, ...), train and test.

    Args:
        history: one row per epoch: column ``epoch`` and ``<mode>_<term>`` columns
            (``train_reconstruction``, ``test_kl``, ...).
        title: figure title.
    """
    terms = []
    for column in history.columns:
        mode, _, term = column.partition("_")
        if mode in MODES and term and term not in terms:
            terms.append(term)
    fig, axes = plt.subplots(1, len(terms), figsize=(2.8 * len(terms), 2.8), squeeze=False)
    for ax, term in zip(axes[0], terms, strict=True):
        for mode in MODES:
            if f"{mode}_{term}" in history:
                ax.plot(history["epoch"], history[f"{mode}_{term}"], marker="o", ms=3, label=mode)
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def metric_box_plots(table: pd.DataFrame, metrics: list[str], title: str | None = None) -> Figure:
    """One panel per metric: a box per (beta, loss) over the runs, losses side by side.

    Args:
        table: one row per model: columns ``loss``, ``beta`` and the metrics.
        metrics: the columns to draw.
        title: figure title.
    """
    betas = sorted(table["beta"].unique())
    losses = list(dict.fromkeys(table["loss"]))
    width = 0.8 / len(losses)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, loss in enumerate(losses):
            part = table[table["loss"] == loss]
            values = [part.loc[part["beta"] == b, metric].dropna().to_numpy() for b in betas]
            positions = np.arange(len(betas)) + (i - (len(losses) - 1) / 2) * width
            boxes = ax.boxplot(values, positions=positions, widths=width * 0.9, patch_artist=True)
            for patch in boxes["boxes"]:
                patch.set_facecolor(colours[i % len(colours)])
                patch.set_alpha(0.6)
            ax.plot([], [], "s", color=colours[i % len(colours)], label=loss)
        ax.set_xticks(np.arange(len(betas)), [f"{b:g}" for b in betas])
        ax.set_xlabel("beta")
        ax.set_title(metric, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def close(figure: Figure) -> None:
    """Releases a logged figure (pyplot keeps every figure it made open until closed)."""
    plt.close(figure)
