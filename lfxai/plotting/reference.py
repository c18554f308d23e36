"""Our values beside published ones: one row per quantity, a marker per source."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: reports are built on servers and in containers

import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

OURS = "ours"


def reference_comparison(
    rows: list[tuple[str, dict[str, tuple[float, float | None]]]],
    xlabel: str,
    title: str = "",
    spreads: list[tuple[float, float] | None] | None = None,
) -> Figure:
    """Per quantity (a row), each source's mean with a ``± std`` bar, ours in black.

    Args:
        rows: ``(label, {source: (mean, std or None)})``; the source ``ours`` is ours.
        xlabel: the values' unit.
        title: figure title.
        spreads: per row, the published spread ``(low, high)`` drawn as a band (or None).
    """
    sources = list(dict.fromkeys(s for _, values in rows for s in values if s != OURS))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(6.4, 0.42 * len(rows) + 1.3))
    offsets = np.linspace(-0.25, 0.25, len(sources) + 1) if sources else np.zeros(1)
    for i, (_, values) in enumerate(rows):
        y = len(rows) - 1 - i
        if spreads and spreads[i] is not None:
            low, high = spreads[i]
            ax.fill_betweenx([y - 0.35, y + 0.35], low, high, color="0.85", lw=0)
        for j, source in enumerate([*sources, OURS]):
            if source not in values:
                continue
            mean, std = values[source]
            colour = "black" if source == OURS else colours[j % len(colours)]
            marker = "D" if source == OURS else "o"
            ax.errorbar(
                mean, y + offsets[j], xerr=std or 0.0, fmt=marker, color=colour, ms=4, capsize=2
            )
    for j, source in enumerate([*sources, OURS]):
        colour = "black" if source == OURS else colours[j % len(colours)]
        ax.plot([], [], "D" if source == OURS else "o", color=colour, label=source)
    ax.fill_between([], [], color="0.85", label="published spread")
    ax.set_yticks(range(len(rows)), [label for label, _ in reversed(rows)])
    ax.set_xlabel(xlabel)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
