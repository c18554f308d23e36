"""One look for every figure of the report: sizes, fonts, grid and colours in one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib

matplotlib.use("Agg")  # headless: reports are built on servers and in containers

from matplotlib import pyplot as plt  # noqa: E402

# The colour-blind-safe Okabe-Ito palette; fonts a size that survives a scaled-down PNG.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
REPORT_STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
}


@contextmanager
def report_style() -> Iterator[None]:
    """Inside, every figure drawn uses :data:`REPORT_STYLE`."""
    with plt.rc_context(REPORT_STYLE):
        yield
